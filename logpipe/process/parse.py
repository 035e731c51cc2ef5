"""Log lines into points: pure functions, no I/O.

A chunk is a run of complete lines read from one file at a known byte offset. Every line of
it becomes either a point (line protocol) or a reject with a reason; nothing is dropped.
Three line formats: the seed text format, JSON lines and logfmt.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import NamedTuple, TypeVar, cast
from zoneinfo import ZoneInfo

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

_ParseSeed = Callable[
    [bytes, int, str], tuple[list[str | None], set[tuple[str, int]], list[tuple[int, int]]]
]
_parse_seed: _ParseSeed | None
try:
    from logpipe.process._fastparse import parse_seed as _compiled_parse_seed
except ImportError:  # not built (optional, setup.py): parse_text_chunk takes the regex path
    _parse_seed = None
else:
    _parse_seed = _compiled_parse_seed
FAST_PATH_COMPILED = _parse_seed is not None
"""Whether parse_text_chunk runs the C extension (tests check it is in use when built)."""

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
"""Valid date and time-of-day texts seen, to their seconds: the cache of both parse paths,
plain dicts so that the fast path can look them up inline (a function call per line is
measurably slower there)."""
_LATENCIES: dict[str, str] = {}
"""Latency texts the fast path has seen, to how the careful path writes them (`0.500` and
`0.5` are one float, written `0.5`)."""

_Cached = TypeVar("_Cached", int, str)


def _remember(seen: dict[str, _Cached], text: str, value: _Cached, limit: int) -> _Cached:
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

# The common case in one C-level match: a seed line whose every field is valid as it stands
# and whose path needs no escaping. Anything else takes the careful path, line by line.
# ASCII classes only: the chunk is ASCII (see parse_text_chunk) and `\d` would take other
# digits; the path excludes every control character (NUL included: the careful path
# dead-letters a line with one) and every whitespace character str.split() splits on.
_TEXT_FAST = re.compile(
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2}) ([0-9]{2}:[0-9]{2}:[0-9]{2}) ([A-Za-z0-9_.:-]{1,128})"
    r' ([^\x00-\x20"\\\x7f]{1,2048}) ([1-5][0-9][0-9]) ([0-9]{1,9}(?:\.[0-9]{1,9})?)\r?$',
    re.MULTILINE,
)
_STATUS_FIELDS = {
    str(status): f",status_class={status_class(status)} status={status}i,latency="
    for status in range(100, 600)
}
"""What follows the customer id in a point, up to the latency, for each status the fast
pattern takes (as point_line writes it)."""


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


def _latency_text(text: str) -> str:
    """The latency as point_line writes it (the float's repr), remembered."""
    return _remember(_LATENCIES, text, repr(parse_latency(text)), 65536)


def parse_text_chunk(chunk: Chunk) -> Parsed:
    """parse_chunk for the seed format with UTC timestamps, faster: the same points, byte
    for byte and in the same order, the same rejects and the same days (hypothesis tests hold
    both implementations to that, tests/test_parse_properties.py).

    The C extension's path (parse_text_chunk_c) when it is built, else the regex path
    (parse_text_chunk_regex): the extension is optional, a failed compile leaves it out."""
    if _parse_seed is not None:
        return parse_text_chunk_c(chunk)
    return parse_text_chunk_regex(chunk)


def parse_text_chunk_c(chunk: Chunk) -> Parsed:
    """parse_text_chunk in C (logpipe/process/_fastparse.c); RuntimeError if not built.

    The extension walks the chunk line by line and makes a point of each line that
    _TEXT_FAST takes (the same classes and lengths, checked character by character) and
    that passes the same checks as the regex path; every other line that is not blank comes
    back as a byte span, with a None where its result belongs, and goes through parse_chunk's
    own per-line path here, so the order is the chunk's. Why a line the C code takes becomes
    what parse_chunk makes of it, field by field (as for parse_text_chunk_regex):

    - the chunk is ASCII (checked here; the C code also refuses any byte >= 0x80 in a field),
      so the line is valid UTF-8 and, its fields being bounded, shorter than MAX_LINE_BYTES;
      no field admits NUL;
    - fields are separated by single spaces and hold no whitespace (one trailing `\\r` is
      dropped, as `split()` drops it), so `line.split()` gives exactly these six fields;
    - the date is taken only if date.fromisoformat would take it (month 1-12, a day the month
      has, leap years as the proleptic Gregorian calendar; year >= 1) and the day is inside
      _day_start's bounds, computed with the same integers (days since 1970 * 86400); the time
      only if hours <= 23, minutes <= 59 and seconds <= 59, as _second_of_day; anything else
      goes to the careful path and its reason;
    - the customer class is the schema's rule, and its characters need no tag escaping;
    - the status, three digits from 100 to 599, is written as it stands, its class as the
      first digit and `xx` (status_class);
    - the latency is parsed with PyOS_string_to_double, the function float(str) uses, and
      written with PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0), which is float's
      repr; the pattern admits only finite numbers >= 0, which parse_latency accepts;
    - the path holds neither `"` nor `\\`, the only characters a field string escapes;
    - the timestamp is point_timestamp's: `base` is (salt + chunk offset) % 10**9 and the C
      code adds the line's byte offset in the chunk, mod 10**9 (the same residue as Python's
      for any ints); seconds * 10**9 fits an int64 inside _day_start's bounds;
    - the days are (customer, day start), which is what parse_chunk's floor division of the
      point's second gives (the time of day is 0..86399).

    Blank lines (bytes.strip() leaves nothing; the C test is the same Py_ISSPACE set) make
    nothing on either path."""
    if _parse_seed is None:
        raise RuntimeError("logpipe.process._fastparse is not built")
    if not chunk.data.isascii():  # the argument above leans on it
        return parse_chunk(chunk)
    made, days, others = _parse_seed(
        chunk.data, (chunk.salt + chunk.offset) % NS_PER_SECOND, MEASUREMENT
    )
    if not others:  # no None in made
        return Parsed(cast("list[str]", made), [], days)
    parsed = Parsed([], [], days)
    done = 0  # made before this index is in parsed.points
    for start, end in others:
        slot = made.index(None, done)
        parsed.points.extend(cast("list[str]", made[done:slot]))
        _parse_lines(chunk, chunk.data[start:end], chunk.offset + start, parse_text_line, parsed)
        done = slot + 1
    parsed.points.extend(cast("list[str]", made[done:]))
    return parsed


def parse_text_chunk_regex(chunk: Chunk) -> Parsed:
    """parse_text_chunk in Python, when the C extension is not built.

    One regex pass over the chunk takes the common lines; the lines between its matches, and
    lines with an impossible date or time, go through parse_chunk's own per-line path, in
    the order of the chunk. Why a line the pattern takes becomes what parse_chunk makes of
    it, field by field:

    - the chunk is ASCII, so a line's character offset is its byte offset, it is valid UTF-8
      and, its fields being bounded, shorter than MAX_LINE_BYTES; no class admits NUL;
    - fields are separated by single spaces and hold no whitespace (a trailing `\\r` is
      whitespace), so `line.split()` gives exactly these six fields;
    - the date and time go through _day_start and _second_of_day, or their caches, which
      hold only what those returned (so an impossible date, or one InfluxDB cannot store,
      goes to the careful path and its reason);
    - the customer pattern is the schema's rule, and its characters need no tag escaping;
    - a status of three digits from 100 to 599 is written as parsed (`int(s)` prints `s`);
    - the latency is written as point_line writes it, the repr of parse_latency's float;
    - the path holds neither `"` nor `\\`, the only characters a field string escapes;
    - the timestamp is point_timestamp's, with the line's offset in the file.
    """
    if not chunk.data.isascii():  # offsets below count characters, which must be bytes
        return parse_chunk(chunk)
    text = chunk.data.decode("ascii")
    points: list[str] = []
    rejects: list[Reject] = []
    touched: set[tuple[str, int]] = set()
    append, touch = points.append, touched.add
    days, clocks, latencies, statuses = _DAYS, _CLOCKS, _LATENCIES, _STATUS_FIELDS
    slot = chunk.salt + chunk.offset  # + the line's index in text, mod 10**9: its slot
    done = 0  # text before this index is handled

    parsed = Parsed(points, rejects, touched)

    def careful(start: int, end: int) -> None:
        data = chunk.data[start:end]  # ASCII: character offsets are byte offsets
        _parse_lines(chunk, data, chunk.offset + start, parse_text_line, parsed)

    for found in _TEXT_FAST.finditer(text):
        start = found.start()
        if start > done:
            careful(done, start)
        done = found.end() + 1
        day, clock, customer, path, status, latency = found.groups()
        try:
            day_start = days[day]
            seconds = day_start + clocks[clock]
            written = latencies[latency]
        except KeyError:
            try:
                day_start = _day_start(day)
                seconds = day_start + _second_of_day(clock)
                written = _latency_text(latency)
            except ParseError:
                careful(start, done - 1)
                continue
        touch((customer, day_start))
        stamp = seconds * NS_PER_SECOND + (slot + start) % NS_PER_SECOND
        append(
            f"{MEASUREMENT},customer_id={customer}{statuses[status]}{written}"
            f',path="{path}" {stamp}'
        )
    if done < len(text):
        careful(done, len(text))
    return parsed
