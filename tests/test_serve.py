"""The API against a real InfluxDB: every bad input is a 4xx that says what is wrong."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from fastapi import HTTPException

from logpipe.config import load_settings
from logpipe.influxd import free_port
from logpipe.serve import date_range
from logpipe.stats import live_from
from tests.conftest import running_api, write_lines

TODAY = date(2026, 10, 8)
NOW = datetime(2026, 10, 8, 0, 30, tzinfo=timezone.utc)  # yesterday may still change


def test_date_range_defaults_to_today():
    assert date_range("2026-10-01", None, today=TODAY) == (date(2026, 10, 1), TODAY)


@pytest.mark.parametrize(
    ("clock", "first_live_day"),
    [
        ("00:00", date(2026, 10, 7)),  # lines of yesterday may still be on their way
        ("00:59", date(2026, 10, 7)),
        ("01:00", TODAY),  # from then on yesterday changes only by a backfill
        ("23:59", TODAY),
    ],
)
def test_live_days_are_today_and_yesterday_only_just_after_midnight(clock, first_live_day):
    hour, minute = (int(part) for part in clock.split(":"))
    assert live_from(NOW.replace(hour=hour, minute=minute)) == first_live_day


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (None, None, "from_date is required"),
        ("2026-10-32", None, "not a real date"),
        ("yesterday", None, "YYYY-MM-DD"),
        ("2026-10-01T00:00", None, "YYYY-MM-DD"),
        ("2026-10-05", "2026-10-01", "before from_date"),
        ("2020-01-01", "2026-01-01", "at most 366 days"),
        ("1677-09-21", "1677-09-22", "InfluxDB stores days from 1677-09-22"),
        ("2262-04-10", "2262-04-11", "to 2262-04-10"),
    ],
)
def test_date_range_rejects(first, last, message):
    with pytest.raises(HTTPException) as raised:
        date_range(first, last, today=TODAY)
    assert raised.value.status_code == 422 and message in raised.value.detail


@pytest.fixture(scope="module")
def api(influxd, tmp_path_factory):
    """One API over three requests of 2026-10-06, for every test of the module (they only
    read)."""
    settings = load_settings(
        influx_url=influxd.url,
        influx_database="serve_tests",
        state_dir=tmp_path_factory.mktemp("serve"),
    )
    lines = ["200 0.1", "503 0.3", "404 0.2"]
    write_lines(
        settings, [f"2026-10-06 00:00:0{i} acme-corp.eu /x {s}" for i, s in enumerate(lines)]
    )
    with running_api(settings, now=lambda: NOW) as client:
        yield client


def test_stats_for_an_id_with_dots_and_dashes_and_the_from_alias(api):
    response = api.get("/customers/acme-corp.eu/stats", params={"from": "2026-10-06"})
    assert response.status_code == 200
    (day,) = response.json()["days"]
    assert day["date"] == "2026-10-06"
    assert (day["total_requests"], day["failed_requests"]) == (3, 1)  # 404 is not a failure
    assert day["median_latency"] == pytest.approx(0.2)
    assert response.json()["to_date"] == "2026-10-08"


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        ("/customers/acme-corp.eu/stats?from_date=2026-02-30", 422, "not a real date"),
        ("/customers/acme-corp.eu/stats?from_date=06-10-2026", 422, "YYYY-MM-DD"),
        ("/customers/acme-corp.eu/stats", 422, "from_date is required"),
        ("/customers/acme-corp.eu/stats?from_date=2026-10-07&to_date=2026-10-06", 422, "before"),
        ("/customers/x'%20OR%20'1'='1/stats?from_date=2026-10-01", 422, "pattern"),
        ("/customers/" + "a" * 129 + "/stats?from_date=2026-10-01", 422, "128"),
        ("/customers/%00/stats?from_date=2026-10-01", 422, "pattern"),
        # issue 12, case 6: a 500 and a 502 echoing InfluxDB's error before
        (
            "/customers/acme-corp.eu/stats?from_date=2026-10-01&to_date=9999-12-31",
            422,
            "InfluxDB stores days from 1677-09-22 to 2262-04-10",
        ),
        (
            "/customers/acme-corp.eu/stats?from_date=0001-01-01&to_date=0001-01-02",
            422,
            "InfluxDB stores days",
        ),
        ("/stats?from_date=2262-04-11", 422, "InfluxDB stores days"),
        ("/customers?days=0", 422, "greater than or equal to 1"),
        ("/customers?days=367", 422, "less than or equal to 366"),
        ("/customers/acme-corp.eu/stats?from_date=2026-10-07", 404, "no requests"),
        ("/customers/nobody/stats?from_date=2026-10-01", 404, "no requests"),
    ],
)
def test_bad_requests_get_a_4xx_saying_what_is_wrong(api, url, status, says):
    response = api.get(url)
    assert response.status_code == status
    assert says in response.text


def test_influxdb_down_is_a_503_with_retry_after(tmp_path):
    settings = load_settings(
        influx_url=f"http://127.0.0.1:{free_port()}", influx_timeout=1, state_dir=tmp_path
    )
    with running_api(settings) as client:
        response = client.get("/customers/cust_1/stats", params={"from_date": "2026-10-01"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "unavailable" in response.json()["detail"]
