import json

import pytest

from logpipe.errors import ConfigError
from logpipe.process.formats import LineFormat, parse_json_line, parse_logfmt_line
from logpipe.process.parse import ParseError, parse_text_line, parse_timestamp

KEYS = LineFormat().keys
T0 = 1791279756  # 2026-10-06T09:42:36Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-06T09:42:36Z", (T0, None)),
        ("2026-10-06 09:42:36", (T0, None)),
        ("2026-10-06T09:42:36.5Z", (T0, 500_000_000)),
        ("2026-10-06T09:42:36.123456789Z", (T0, 123_456_789)),
        ("2026-10-06T11:42:36+02:00", (T0, None)),
        ("2026-10-06T04:42:36.250-0500", (T0, 250_000_000)),
    ],
)
def test_iso_timestamps(text, expected):
    assert parse_timestamp(text) == expected


def test_naive_timestamps_are_read_in_the_configured_zone():
    # Paris is UTC+2 in October (summer time) and UTC+1 in January
    assert parse_timestamp("2026-10-06T11:42:36", "Europe/Paris")[0] == T0
    assert parse_timestamp("2026-01-06T10:00:00", "Europe/Paris")[0] == 1767690000
    assert parse_text_line("2026-10-06 11:42:36 c /p 200 0.1", "Europe/Paris").epoch_seconds == T0


@pytest.mark.parametrize(
    "text", ["2026-10-06", "2026-10-06T25:00:00Z", "2026-02-30T00:00:00Z", "06/10/2026 09:42"]
)
def test_bad_timestamps(text):
    with pytest.raises(ParseError):
        parse_timestamp(text)


def test_text_line_may_carry_one_iso_timestamp():
    request = parse_text_line("2026-10-06T09:42:36.5Z cust_2 /x 201 0.524")
    assert (request.epoch_seconds, request.nanos) == (T0, 500_000_000)


def _json(**changes):
    record = {
        "timestamp": "2026-10-06T09:42:36Z",
        "customer_id": "cust_2",
        "path": "/x",
        "status": 201,
        "latency": 0.524,
    }
    record.update(changes)
    return json.dumps({key: value for key, value in record.items() if value is not ...})


def test_json_line():
    request = parse_json_line(_json(), KEYS)
    assert request[:5] == (T0, "cust_2", "/x", 201, 0.524)


def test_json_line_with_other_keys_and_epoch_seconds():
    keys = LineFormat.from_settings("json", "timestamp=ts,customer_id=tenant", "UTC").keys
    line = (
        '{"ts": 1791279756.25, "tenant": "acme", "path": "/x", "status": "503", "latency": "1.5"}'
    )
    request = parse_json_line(line, keys)
    assert request[:5] == (T0, "acme", "/x", 503, 1.5)
    assert request.nanos == 250_000_000


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "not an object"),
        (_json(latency=...), "missing key 'latency'"),
        (_json(status=True), "status"),
        (_json(customer_id=7), "customer id"),
        (_json(timestamp=None), "timestamp"),
        (_json(path=""), "path"),
    ],
)
def test_bad_json_lines(line, reason):
    with pytest.raises(ParseError, match=reason):
        parse_json_line(line, KEYS)


def test_logfmt_line_with_quoted_values():
    line = (
        "timestamp=2026-10-06T09:42:36Z customer_id=cust_2"
        ' path="/a b \\"c\\"" status=201 latency=0.524 extra=1'
    )
    request = parse_logfmt_line(line, KEYS)
    assert request[:5] == (T0, "cust_2", '/a b "c"', 201, 0.524)


def test_logfmt_line_missing_a_key():
    with pytest.raises(ParseError, match="missing key 'status'"):
        parse_logfmt_line("timestamp=2026-10-06T09:42:36Z customer_id=c path=/x latency=1", KEYS)


@pytest.mark.parametrize(
    ("kind", "keys", "zone", "message"),
    [
        ("xml", "", "UTC", "format 'xml'"),
        ("json", "when=ts", "UTC", "FIELD=KEY"),
        ("json", "timestamp=", "UTC", "FIELD=KEY"),
        ("text", "", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_bad_format_settings(kind, keys, zone, message):
    with pytest.raises(ConfigError, match=message):
        LineFormat.from_settings(kind, keys, zone)
