"""A password in LOGPIPE_INFLUX_URL is used, never shown: redact_url, and the places that show
or log the URL (settings, the clients' errors, the writer's retry warnings)."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest

from logpipe.config import Settings, load_settings, redact_url
from logpipe.errors import ConfigError, InfluxUnavailable
from logpipe.influx import InfluxClient
from logpipe.influxd import free_port
from logpipe.process.counters import Counters
from logpipe.process.sink import DeadLetters, _Writer

PASSWORD = "s3cret"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8086", "http://127.0.0.1:8086"),
        ("https://influx.example.com/prefix", "https://influx.example.com/prefix"),
        ("http://admin@127.0.0.1:8086", "http://admin@127.0.0.1:8086"),
        ("http://admin:s3cret@127.0.0.1:8086", "http://admin:***@127.0.0.1:8086"),
        ("http://admin:s3cret@[::1]:8086/influx", "http://admin:***@[::1]:8086/influx"),
        ("http://:s3cret@influx", "http://:***@influx"),
        ("http://admin:s3:c@ret@influx:1", "http://admin:***@influx:1"),  # unescaped : and @
        ("http://admin:s3cret@influx?x=@", "http://admin:***@influx?x=@"),
        (
            "http://influx:8086/query?db=x&u=admin&p=s3cret&token=s3cret&q",
            "http://influx:8086/query?db=x&u=admin&p=***&token=***&q",
        ),
        ("http://influx/?Password=s3cret#top", "http://influx/?Password=***#top"),
        ("influx:8086", "influx:8086"),
    ],
)
def test_redact_url_masks_the_password_and_secret_parameters_only(url, shown):
    assert redact_url(url) == shown


def _settings(url: str, **options: object) -> Settings:
    return load_settings(influx_url=url, **options)


def test_repr_and_str_of_settings_mask_the_url_password(tmp_path):
    settings = _settings(f"http://admin:{PASSWORD}@127.0.0.1:8086", state_dir=tmp_path)
    for text in (repr(settings), str(settings)):
        assert PASSWORD not in text and "http://admin:***@127.0.0.1:8086" in text


@pytest.mark.parametrize(
    "url",
    [
        "http://admin:12/s3cret@influx",  # read as port 12 and a path
        "http://admin:s3?cret@influx",
        "http://admin:s3#cret@influx",
        "http://influx:8086?p=s3cret",  # httpx drops a base URL's query
    ],
)
def test_a_url_whose_password_is_not_escaped_is_refused_without_showing_it(url):
    with pytest.raises(ConfigError, match="LOGPIPE_INFLUX_URL") as raised:
        _settings(url)
    assert "cret" not in str(raised.value) and "%2F" in str(raised.value)


def test_the_url_password_authenticates_but_stays_out_of_request_urls():
    seen: list[httpx.Request] = []

    def influx(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204, headers={"X-Influxdb-Version": "1.8.10"})

    settings = _settings("http://admin:s3%2Fcret@influx.test:8086")
    with InfluxClient(settings, transport=httpx.MockTransport(influx)) as client:
        assert client.ping() == "1.8.10"
    (request,) = seen
    assert str(request.url) == "http://influx.test:8086/ping"
    expected = base64.b64encode(b"admin:s3/cret").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


def test_an_unreachable_influxdb_is_named_without_its_password():
    port = free_port()  # nothing listens there
    settings = _settings(f"http://admin:{PASSWORD}@127.0.0.1:{port}", influx_timeout=2)
    with InfluxClient(settings) as client, pytest.raises(InfluxUnavailable) as raised:
        client.ping()
    message = str(raised.value)
    assert PASSWORD not in message
    assert message.startswith(f"InfluxDB at http://admin:***@127.0.0.1:{port} is unreachable")


class _StopRetrying(Exception):
    pass


def _no_more_retries(delay: float) -> None:
    raise _StopRetrying  # ends the writer after its first retry warning


def test_the_writer_warns_of_retries_without_the_password(tmp_path, caplog):
    port = free_port()
    settings = _settings(
        f"http://admin:{PASSWORD}@127.0.0.1:{port}", influx_timeout=2, state_dir=tmp_path
    )
    dead = DeadLetters(tmp_path / "dead.jsonl")
    writer = _Writer(settings, Counters(), dead, sleep=_no_more_retries)
    caplog.set_level(logging.WARNING, logger="logpipe.process.sink")
    writer.start()
    try:
        with pytest.raises(Exception, match="writing to InfluxDB failed"):
            writer.put((["requests,customer_id=c latency=0.1 1"], set()))
            writer.flush()
    finally:
        writer.stop()
        dead.close()
    (warning,) = [r.getMessage() for r in caplog.records if "retry 1" in r.getMessage()]
    assert PASSWORD not in warning and f"admin:***@127.0.0.1:{port}" in warning
