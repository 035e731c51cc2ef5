from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from logpipe.process import parse
from logpipe.process.parse import (
    MAX_LINE_BYTES,
    Chunk,
    ParseError,
    parse_chunk,
    parse_text_chunk,
    parse_text_line,
)
from tests.fast_paths import FAST_PATH_REQUIRED, FAST_PATHS

GOOD = "2026-10-06 09:42:36 cust_2 /api/v1/resource3 201 0.524"


def test_seed_line_fields():
    request = parse_text_line(GOOD)
    assert request.epoch_seconds == 1791279756  # 2026-10-06T09:42:36Z
    assert request.customer_id == "cust_2"
    assert request.path == "/api/v1/resource3"
    assert request.status == 201
    assert request.latency == 0.524


def test_windows_line_ending_is_a_valid_line():
    assert parse_text_line(GOOD + "\r") == parse_text_line(GOOD)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2026-10-06 09:42:36 cust_2 /x 201", "expected 6"),
        ("2026-10-06 09:42:36 cust_2 /x 201 0.5 extra", "expected 6"),
        ("2026-02-30 09:42:36 cust_2 /x 201 0.5", "impossible date"),
        ("2026-1-06 09:42:36 cust_2 /x 201 0.5", "not YYYY-MM-DD"),
        ("2026-10-06 24:00:00 cust_2 /x 201 0.5", "impossible time"),
        ("2026-10-06 9:42:36 cust_2 /x 201 0.5", "not HH:MM:SS"),
        ("2026-10-06 09:42:36 cust_2 /x 99 0.5", "status"),
        ("2026-10-06 09:42:36 cust_2 /x 600 0.5", "status"),
        ("2026-10-06 09:42:36 cust_2 /x 2O1 0.5", "status"),
        ("2026-10-06 09:42:36 cust_2 /x +20 0.5", "status"),
        ("2026-10-06 09:42:36 cust_2 /x 201 -0.5", "latency"),
        ("2026-10-06 09:42:36 cust_2 /x 201 nan", "latency"),
        ("2026-10-06 09:42:36 cust_2 /x 201 inf", "latency"),
        ("2026-10-06 09:42:36 cust_2 /x 201 fast", "latency"),
        ("2026-10-06 09:42:36 cust$2 /x 201 0.5", "customer id"),
        ("2026-10-06 09:42:36 " + "c" * 129 + " /x 201 0.5", "customer id"),
    ],
)
def test_invalid_lines_say_why(line, reason):
    with pytest.raises(ParseError, match=reason):
        parse_text_line(line)


def test_chunk_turns_every_line_into_a_point_or_a_reject_with_its_offset():
    lines = [GOOD, "garbage", GOOD.replace("cust_2", "cust_3"), "", "2026-10-06 x"]
    data = "\n".join(lines).encode() + b"\n"
    parsed = parse_chunk(Chunk("/logs/a.log", 1000, data))
    assert len(parsed.points) == 2
    assert [(r.offset, r.raw) for r in parsed.rejects] == [
        (1000 + data.index(b"garbage"), "garbage"),
        (1000 + data.index(b"2026-10-06 x\n"), "2026-10-06 x"),
    ]
    assert all(r.source == "/logs/a.log" for r in parsed.rejects)


def test_chunk_rejects_binary_and_oversized_lines():
    data = b"\xff\xfe bad\n" + GOOD.encode().replace(b"cust_2", b"cu\x00st") + b"\n"
    data += b"x" * (MAX_LINE_BYTES + 1) + b"\n"
    reasons = [r.reason for r in parse_chunk(Chunk("a", 0, data)).rejects]
    assert reasons == ["invalid UTF-8", "NUL byte in line", "line longer than 64 KiB"]


def test_reject_keeps_only_the_start_of_a_long_line():
    data = b"y" * 5000 + b"\n"
    (reject,) = parse_chunk(Chunk("a", 0, data)).rejects
    assert reject.raw == "y" * 1024


def test_the_same_line_read_twice_becomes_the_same_point():
    chunk = Chunk("/logs/a.log", 0, (GOOD + "\n").encode(), salt=12345)
    assert parse_chunk(chunk).points == parse_chunk(chunk).points


def test_two_requests_in_one_second_are_two_points():
    data = (GOOD + "\n" + GOOD + "\n").encode()
    first, second = parse_chunk(Chunk("/logs/a.log", 0, data)).points
    assert first.rsplit(" ", 1)[0] == second.rsplit(" ", 1)[0]
    assert first.rsplit(" ", 1)[1] != second.rsplit(" ", 1)[1]


TRICKY = [
    GOOD,
    GOOD.replace("0.524", "0.500"),
    GOOD.replace("0.524", "7"),
    GOOD.replace("0.524", "1e-3"),  # valid, but not for the fast pattern
    GOOD.replace("/api/v1/resource3", '/say"hi"'),  # needs escaping
    GOOD.replace("/api/v1/resource3", "/back\\slash"),  # needs escaping too
    GOOD.replace("/api/v1/resource3", "/a\x00b"),  # a NUL: dead-lettered
    GOOD.replace("09:42:36", "09:61:36"),  # matches the pattern, impossible time
    GOOD.replace("2026-10-06", "2026-02-30"),
    GOOD.replace("cust_2", "c" * 129),
    GOOD + "\r",
    "2026-10-06T09:42:36.5Z cust_2 /x 201 0.5",
    "",
    "junk",
    GOOD.replace("201", "600"),
]


@FAST_PATHS
def test_the_fast_text_path_gives_what_the_careful_path_gives(fast_path):
    data = "\n".join(TRICKY * 50).encode() + b"\n"
    chunk = Chunk("/logs/a.log", 77, data, salt=99)
    careful, fast = parse_chunk(chunk), fast_path(chunk)
    assert fast == careful  # the points byte for byte: 0.500 is written 0.5, 7 is 7.0
    assert len(fast.points) == 8 * 50 and len(fast.rejects) == 6 * 50
    assert fast.days == careful.days == {("cust_2", 1791244800)}  # 2026-10-06, 00:00Z


@FAST_PATHS
@pytest.mark.parametrize(
    ("salt", "offset"), [(0, 10**9 - 150), (2**32 - 1, 2**40 + 193_404_829), (999, 0)]
)
def test_the_fast_text_path_wraps_the_timestamp_slot_as_the_careful_path(fast_path, salt, offset):
    """The slot is (salt + the line's offset) mod 10**9, and the lines of one chunk may
    cross a multiple of 10**9 (in the first two cases, salt + offset is 10**9 - 150 and
    - 100 mod 10**9: the fourth, then the third of these 56-byte lines wraps to a small slot)."""
    chunk = Chunk("a", offset, (GOOD + "\n").encode() * 5, salt=salt)
    fast = fast_path(chunk)
    assert fast == parse_chunk(chunk)
    assert len(fast.points) == 5


@FAST_PATHS
@pytest.mark.parametrize(
    "latency",
    [
        "0",
        "0.000",
        "0.0001",
        "0.00010",
        "0.00009999",
        "0.00001",
        "0.000000001",
        "1.10",
        "0.300000000",
        "123456789.123456789",
        "999999999.999999999",
        "100000000",
    ],
)
def test_the_fast_text_path_writes_a_latency_as_the_careful_path(fast_path, latency):
    """A latency is written as the repr of its float: shortest, with an exponent below 1e-4
    (1e-05), however the log wrote it."""
    chunk = Chunk("a", 0, GOOD.replace("0.524", latency).encode() + b"\n", salt=3)
    assert fast_path(chunk).points == parse_chunk(chunk).points != []


@FAST_PATHS
def test_a_chunk_tells_the_customers_and_utc_days_of_its_points(fast_path):
    lines = [GOOD, GOOD.replace("cust_2", "b"), "2026-10-07 00:00:00 b /x 200 0.1", "junk"]
    chunk = Chunk("/logs/a.log", 0, "\n".join(lines).encode() + b"\n")
    day = 1791244800  # 2026-10-06, 00:00Z
    expected = {("cust_2", day), ("b", day), ("b", day + 86400)}
    assert fast_path(chunk).days == parse_chunk(chunk).days == expected


@FAST_PATHS
def test_the_fast_text_path_hands_non_ascii_chunks_to_the_careful_path(fast_path):
    data = (GOOD + "\n" + GOOD.replace("/api", "/ápi") + "\n").encode()
    chunk = Chunk("/logs/a.log", 0, data, salt=1)
    assert fast_path(chunk) == parse_chunk(chunk)


@FAST_PATHS
@pytest.mark.parametrize(
    "line",
    [
        "2263-01-01 00:00:00 cust_1 /x 200 0.5",
        "1600-01-01 00:00:00 cust_1 /x 200 0.5",
        "2262-12-31T00:00:00Z cust_1 /x 200 0.5",
    ],
)
def test_a_time_influxdb_cannot_store_is_rejected_when_parsed(fast_path, line):
    (reject,) = parse_chunk(Chunk("a", 0, line.encode() + b"\n")).rejects
    assert "outside what InfluxDB stores" in reject.reason
    assert fast_path(Chunk("a", 0, line.encode() + b"\n")).rejects == [reject]


@FAST_PATHS
@pytest.mark.parametrize(
    "stamp",
    [
        "2026-10-06 24:00:00",
        "2026-10-06 23:60:00",
        "2026-10-06 23:59:60",
        "2026-10-06 23:59:59",
        "2026-10-06 00:00:00",
        "2026-02-29 12:00:00",
        "2024-02-29 12:00:00",
        "2100-02-29 12:00:00",
        "2000-02-29 12:00:00",
        "2026-04-31 12:00:00",
        "2026-12-31 12:00:00",
        "2026-13-01 12:00:00",
        "2026-00-01 12:00:00",
        "2026-01-00 12:00:00",
        "0000-01-01 12:00:00",
        "1677-09-22 23:59:59",
        "1677-09-23 00:00:00",
        "1969-12-31 23:59:59",
        "2262-04-10 23:59:59",
        "2262-04-11 00:00:00",
        "9999-12-31 23:59:59",
    ],
)
def test_the_fast_text_path_takes_a_date_and_time_as_the_careful_path(fast_path, stamp):
    """Dates and times of the right shape but impossible, or just past what InfluxDB
    stores, are the careful path's to refuse; their neighbours are points."""
    chunk = Chunk("a", 11, f"{stamp} cust_2 /x 200 0.5\n".encode(), salt=5)
    assert fast_path(chunk) == parse_chunk(chunk)


def test_an_epoch_past_2262_is_rejected_when_parsed():
    from logpipe.process.formats import parse_json_line

    keys = {name: name for name in ("timestamp", "customer_id", "path", "status", "latency")}
    record = '{"timestamp": %s, "customer_id": "c", "path": "/x", "status": 200, "latency": 1}'
    assert parse_json_line(record % "1791280956.123456", keys).nanos == 123_456_000
    with pytest.raises(ParseError, match="outside"):
        parse_json_line(record % "1e11", keys)


def test_the_c_fast_path_is_in_use_when_built(monkeypatch):
    """A failed compile is not an error when installing (the regex path runs), but a test
    run must not pass while testing only the regex path by accident: with the extension
    built (or LOGPIPE_REQUIRE_FASTPARSE set, as the nox session does, or CI=true), it must be
    in use."""
    here = Path(parse.__file__).parent
    built = any((here / f"_fastparse{suffix}").exists() for suffix in EXTENSION_SUFFIXES)
    if not built and not FAST_PATH_REQUIRED:
        pytest.skip("logpipe.process._fastparse is not built")
    assert parse.FAST_PATH_COMPILED

    def no_regex(chunk):
        raise AssertionError("parse_text_chunk took the regex path")

    monkeypatch.setattr(parse, "parse_text_chunk_regex", no_regex)
    chunk = Chunk("a", 0, GOOD.encode() + b"\n")
    assert parse_text_chunk(chunk) == parse_chunk(chunk)
    assert len(parse_text_chunk(chunk).points) == 1
