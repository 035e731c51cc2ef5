"""Log lines into points: pure functions, no I/O.

A chunk is a run of complete lines read from one file at a known byte offset. Every line of
it becomes either a point (line protocol) or a reject with a reason; nothing is dropped.
Three line formats: the seed text format, JSON lines and logfmt.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

# polars, set before it starts: one thread (the dataflow's; InfluxDB needs the other core
# more than a chunk needs two), and its allocator hands freed pages back at once instead of
# holding them 10 s. Together with smaller chunks and a shorter sink queue they took the
# processor's peak RSS from 166 to 135 MB on 200,000 lines (bench/RESULTS.md, 2026-12-02).
os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0")

import polars as pl

from logpipe.config import MEASUREMENT
from logpipe.schema import (
    MAX_EPOCH_SECONDS,
    MIN_EPOCH_SECONDS,
    NS_PER_SECOND,
    SECONDS_PER_DAY,
    is_valid_customer_id,
    point_line,
    point_timestamp,
    status_class,
)

MAX_LINE_BYTES = 64 * 1024
RAW_LINE_LIMIT = 1024
"""How much of a rejected line the dead-letter file keeps."""

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CLOCK = re.compile(r"(\d{2}):(\d{2}):(\d{2})")
_ISO = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})"  # date and time
    r"(?:[.,](\d{1,9}))?"  # fraction
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"  # Z, +HH:MM, -HHMM or nothing (naive)
)
_UNIX_DAY_ZERO = date(1970, 1, 1).toordinal()


class ParseError(ValueError):
    """A log line that is not a valid request; the message is the reason for the dead letter."""


class Request(NamedTuple):
    epoch_seconds: int
    customer_id: str
    path: str
    status: int
    latency: float
    nanos: int | None = None
    """The sub-second part the log gave, in nanoseconds (None: whole seconds)."""


class Chunk(NamedTuple):
    """Complete lines of one input file, starting at byte `offset`. `source` is the path it
    was read through (for people); `file` the file's identity, which stays when the file is
    renamed or copied (logpipe.process.files); `salt` is made from it for point timestamps."""

    source: str
    offset: int
    data: bytes
    salt: int = 0
    file: str = ""
    cut: bool = False
    """`data` is an unterminated last line whose file is done: never stored (it may be cut)."""


class Reject(NamedTuple):
    """A line that is not stored, as the dead-letter file keeps it: (file, offset) name the
    line whatever path it was read through."""

    source: str
    offset: int
    reason: str
    raw: str
    file: str = ""


class Parsed(NamedTuple):
    """What a chunk became: line-protocol points and rejected lines."""

    points: list[str]
    rejects: list[Reject]
    days: set[tuple[str, int]]
    """(customer id, first second of the UTC day) of every point: the rollups it touches."""


# -- fields ---------------------------------------------------------------------------------


_DAYS: dict[str, int] = {}
_CLOCKS: dict[str, int] = {}
"""Valid date and time-of-day texts seen, to their seconds (most lines of a log share a few
dates, and a day has 86,400 times)."""


def _remember(seen: dict[str, int], text: str, value: int, limit: int) -> int:
    if len(seen) >= limit:
        seen.clear()
    seen[text] = value
    return value


def _day_start(text: str) -> int:
    if text in _DAYS:
        return _DAYS[text]
    if not _DAY.fullmatch(text):
        raise ParseError(f"date {text!r} is not YYYY-MM-DD")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ParseError(f"impossible date {text!r}") from None
    seconds = (day.toordinal() - _UNIX_DAY_ZERO) * SECONDS_PER_DAY
    # a day away from the ends, so that any time of day and zone offset stays inside
    if not MIN_EPOCH_SECONDS + SECONDS_PER_DAY < seconds < MAX_EPOCH_SECONDS - SECONDS_PER_DAY:
        raise ParseError(f"date {text!r} is outside what InfluxDB stores (1677-09-23..2262-04-10)")
    return _remember(_DAYS, text, seconds, 4096)


def _second_of_day(text: str) -> int:
    if text in _CLOCKS:
        return _CLOCKS[text]
    match = _CLOCK.fullmatch(text)
    if not match:
        raise ParseError(f"time {text!r} is not HH:MM:SS")
    hours, minutes, seconds = (int(part) for part in match.groups())
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ParseError(f"impossible time {text!r}")
    return _remember(_CLOCKS, text, hours * 3600 + minutes * 60 + seconds, SECONDS_PER_DAY)


@lru_cache(maxsize=4096)
def _zone_offset(zone: str, local_hour: int) -> int:
    """Seconds to add to a naive time in `zone` (at hour `local_hour` since 1970) for UTC."""
    wall_clock = datetime.fromtimestamp(local_hour * 3600, timezone.utc)
    local = wall_clock.replace(tzinfo=ZoneInfo(zone))
    offset = local.utcoffset()
    return -int(offset.total_seconds()) if offset else 0


def naive_to_utc(local_seconds: int, zone: str) -> int:
    if zone == "UTC":
        return local_seconds
    return local_seconds + _zone_offset(zone, local_seconds // 3600)


def parse_timestamp(text: str, zone: str = "UTC") -> tuple[int, int | None]:
    """ISO-8601 (`2026-10-06T09:42:36.123+02:00`, `...Z`, or naive in `zone`) into
    (epoch seconds, nanoseconds of the fraction or None without one)."""
    match = _ISO.fullmatch(text)
    if not match:
        raise ParseError(f"timestamp {text[:60]!r} is not ISO-8601")
    day, clock, fraction, zulu, sign, off_hours, off_minutes = match.groups()
    local = _day_start(day) + _second_of_day(clock)
    if zulu:
        seconds = local
    elif sign:
        offset = int(off_hours) * 3600 + int(off_minutes) * 60
        seconds = local - offset if sign == "+" else local + offset
    else:
        seconds = naive_to_utc(local, zone)
    return seconds, int(fraction.ljust(9, "0")) if fraction else None


def parse_status(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ParseError(f"status {value!r} is not a number from 100 to 599")
    if not (len(text) == 3 and text.isascii() and text.isdigit()) or not 100 <= int(text) <= 599:
        raise ParseError(f"status {text[:20]!r} is not a number from 100 to 599")
    return int(text)


def parse_latency(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        latency = float(value)
    elif isinstance(value, str) and "_" not in value:
        try:
            latency = float(value)
        except ValueError:
            raise ParseError(f"latency {value[:20]!r} is not a number") from None
    else:
        raise ParseError(f"latency {str(value)[:20]!r} is not a number")
    if not math.isfinite(latency) or latency < 0:
        raise ParseError(f"latency {value!r} is not a finite number of seconds >= 0")
    return latency


def parse_customer_id(value: object) -> str:
    if not isinstance(value, str) or not is_valid_customer_id(value):
        raise ParseError(
            f"customer id {str(value)[:140]!r} is not 1-128 ASCII letters, digits or _ . : -"
        )
    return value


def parse_path(value: object) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n"):
        raise ParseError(f"path {str(value)[:60]!r} is not a one-line string")
    return value


# -- formats --------------------------------------------------------------------------------


def parse_text_line(line: str, zone: str = "UTC") -> Request:
    """The seed format, `2026-10-06 09:42:36 cust_2 /api/v1/resource3 201 0.524`; the first
    two fields may also be one ISO-8601 timestamp (`2026-10-06T09:42:36.5Z`)."""
    fields = line.split()
    if len(fields) == 6:
        day, clock, customer_id, path, status, latency = fields
        seconds, nanos = naive_to_utc(_day_start(day) + _second_of_day(clock), zone), None
    elif len(fields) == 5 and "T" in fields[0].upper():
        stamp, customer_id, path, status, latency = fields
        seconds, nanos = parse_timestamp(stamp, zone)
    else:
        raise ParseError(f"expected 6 space-separated fields, found {len(fields)}")
    return Request(
        seconds,
        parse_customer_id(customer_id),
        path,
        parse_status(status),
        parse_latency(latency),
        nanos,
    )


# -- chunks ---------------------------------------------------------------------------------

# The common case, tested by polars over a whole chunk at once: a seed line whose every field
# is valid as it stands and whose path needs no escaping. Any other line takes the careful
# path. ASCII classes only (the chunk is ASCII, see parse_text_chunk); the path excludes every
# control character (NUL included: the careful path dead-letters a line with one) and every
# whitespace character str.split() splits on, so a line ending in `\r` is not taken either.
_TEXT_FAST = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [A-Za-z0-9_.:-]{1,128}"
    r' [^\x00-\x20"\\\x7f]{1,2048} [1-5][0-9][0-9] [0-9]{1,9}(?:\.[0-9]{1,9})?$'
)
_TEXT_FIELDS = ["day", "clock", "customer_id", "path", "status", "latency"]
_STATUSES = [str(status) for status in range(100, 600)]
_STATUS_FIELDS = [f",status_class={status_class(int(s))} status={s}i,latency=" for s in _STATUSES]
"""What follows the customer id in a point, up to the latency, for each status the fast
pattern takes (as point_line writes it)."""
_SHORTEST_POSITIONAL = 1e-4
"""The smallest float that Python's repr, and so point_line, writes without an exponent."""


def _reject(chunk: Chunk, offset: int, reason: str, raw: bytes) -> Reject:
    text = raw[:RAW_LINE_LIMIT].decode("utf-8", errors="backslashreplace")
    return Reject(chunk.source, offset, reason, text, chunk.file)


def _parse_one(
    chunk: Chunk,
    raw: bytes,
    offset: int,
    parse_line: Callable[[str], Request],
    points: list[str],
    rejects: list[Reject],
    days: set[tuple[str, int]],
) -> None:
    """One line into a point or a reject, with the reason."""
    if len(raw) > MAX_LINE_BYTES:
        rejects.append(_reject(chunk, offset, "line longer than 64 KiB", raw))
        return
    if b"\x00" in raw:
        rejects.append(_reject(chunk, offset, "NUL byte in line", raw))
        return
    try:
        request = parse_line(raw.decode("utf-8"))
    except UnicodeDecodeError:
        rejects.append(_reject(chunk, offset, "invalid UTF-8", raw))
        return
    except ParseError as exc:
        rejects.append(_reject(chunk, offset, str(exc), raw))
        return
    days.add((request.customer_id, request.epoch_seconds // SECONDS_PER_DAY * SECONDS_PER_DAY))
    points.append(
        point_line(
            customer_id=request.customer_id,
            status=request.status,
            latency=request.latency,
            path=request.path,
            timestamp_ns=point_timestamp(request.epoch_seconds, salt=chunk.salt, offset=offset),
            subsecond_ns=request.nanos,
        )
    )


def cut_line(chunk: Chunk) -> Parsed:
    """A chunk with `cut`: its line goes to the dead-letter file, whatever it looks like (its
    newline never came, so its last field may be cut short: `15.25` read as `1`)."""
    reason = "unterminated line: its newline never came before the file was done"
    return Parsed([], [_reject(chunk, chunk.offset, reason, chunk.data)], set())


def parse_chunk(chunk: Chunk, parse_line: Callable[[str], Request] = parse_text_line) -> Parsed:
    """Turn every line of a chunk into a point or a reject (blank lines are neither)."""
    parsed = Parsed([], [], set())
    _parse_lines(chunk, chunk.data, chunk.offset, parse_line, parsed)
    return parsed


def _parse_lines(
    chunk: Chunk, data: bytes, offset: int, parse_line: Callable[[str], Request], into: Parsed
) -> None:
    """The lines of `data` (found at `offset` in chunk's file), one by one, into `into`;
    the one careful path of both parse_chunk and parse_text_chunk."""
    for raw in data.split(b"\n"):
        if raw.strip():  # bytes.strip: ASCII whitespace only (str.strip also drops \x1c-\x1f)
            _parse_one(chunk, raw, offset, parse_line, into.points, into.rejects, into.days)
        offset += len(raw) + 1


def _known_day(text: str) -> int | None:
    try:
        return _day_start(text)
    except ParseError:
        return None


def parse_text_chunk(chunk: Chunk) -> Parsed:
    """parse_chunk for the seed format with UTC timestamps, with polars: the same points,
    byte for byte and in the same order, the same rejects and the same days (a hypothesis
    test holds it to that, tests/test_parse_properties.py). About a third of the CPU of a
    regex in Python, which is what made the processor cost as much CPU per line as InfluxDB.

    polars splits the chunk into lines, tests each against _TEXT_FAST, cuts it into its six
    fields and builds the line protocol of the lines it takes; every other line (a blank
    line too) goes through parse_chunk's own per-line path, and its point, if it has one,
    is put back in its line's place. Why a line taken becomes what parse_chunk makes of it,
    field by field:

    - the chunk is ASCII, so a line's length in characters is its length in bytes, it is
      valid UTF-8 and, its fields being bounded, shorter than MAX_LINE_BYTES; no class
      admits NUL;
    - fields are separated by single spaces and hold no whitespace, so `line.split()` and
      polars' split at the first five spaces give the same six fields;
    - the date goes through _day_start itself (once per distinct date of the chunk), so an
      impossible date, or one InfluxDB cannot store, goes to the careful path and its reason;
    - the time is two digits, `:`, two digits, `:`, two digits, and is taken only when
      hours <= 23, minutes <= 59 and seconds <= 59, as _second_of_day requires, which gives
      the same hours * 3600 + minutes * 60 + seconds;
    - the customer pattern is the schema's rule, and its characters need no tag escaping;
    - a status of three digits from 100 to 599 is written as parsed (`int(s)` prints `s`);
    - the latency, at most 9 + 9 digits, is parsed by polars to the nearest double as
      `float()` parses it, and written by polars as the shortest text that reads back as
      that double, which is Python's repr for 0 and for every value from 1e-4 up to 1e16;
      a latency below 1e-4 (repr writes `1e-05`) goes to the careful path;
    - the path holds neither `"` nor `\\`, the only characters a field string escapes;
    - the timestamp is point_timestamp's, with the line's offset in the file: below 2**63,
      as _day_start keeps the day a day away from InfluxDB's last second.
    """
    if not chunk.data.isascii():  # lengths below count characters, which must be bytes
        return parse_chunk(chunk)
    lines = pl.Series([chunk.data.decode("ascii")]).str.split("\n").explode()
    width = lines.str.len_bytes() + 1
    fields = lines.str.splitn(" ", len(_TEXT_FIELDS)).struct.rename_fields(_TEXT_FIELDS)
    frame = fields.struct.unnest().with_columns(
        taken=lines.str.contains(_TEXT_FAST), start=width.cum_sum() - width
    )
    dates = frame.select(pl.col("day").filter("taken").unique())["day"].to_list()
    day_start = pl.col("day").replace_strict(
        dates, [_known_day(text) for text in dates], default=None, return_dtype=pl.Int64
    )
    hours, minutes, seconds = (
        pl.col("clock").str.slice(at, 2).cast(pl.Int64, strict=False) for at in (0, 3, 6)
    )
    latency = pl.col("latency").cast(pl.Float64, strict=False)
    taken = (
        pl.col("taken")
        & (hours <= 23)
        & (minutes <= 59)
        & (seconds <= 59)
        & ((latency == 0) | (latency >= _SHORTEST_POSITIONAL))
    )
    slot = (chunk.salt + chunk.offset + pl.col("start")) % NS_PER_SECOND
    stamp = (pl.col("day_start") + hours * 3600 + minutes * 60 + seconds) * NS_PER_SECOND + slot
    point = pl.concat_str(
        pl.lit(f"{MEASUREMENT},customer_id="),
        pl.col("customer_id"),
        pl.col("status").replace_strict(
            _STATUSES, _STATUS_FIELDS, default=None, return_dtype=pl.String
        ),
        latency.cast(pl.String),
        pl.lit(',path="'),
        pl.col("path"),
        pl.lit('" '),
        stamp.cast(pl.String),
    )
    frame = frame.with_columns(day_start=day_start).with_columns(
        point=pl.when(taken & pl.col("day_start").is_not_null()).then(point)
    )
    taken_days = frame.filter(pl.col("point").is_not_null()).select("customer_id", "day_start")
    parsed = Parsed([], [], set(taken_days.unique().iter_rows()))
    points = frame["point"]
    others = frame.with_row_index().filter(pl.col("point").is_null())
    places, careful_points = [], []
    for index, start in others.select("index", "start").iter_rows():
        line = Parsed([], parsed.rejects, parsed.days)
        end = start + width[index] - 1
        _parse_lines(chunk, chunk.data[start:end], chunk.offset + start, parse_text_line, line)
        if line.points:
            places.append(index)
            careful_points.extend(line.points)  # one line, so one point at most
    if places:
        points = points.scatter(places, careful_points)
    parsed.points.extend(points.drop_nulls().to_list())
    return parsed
