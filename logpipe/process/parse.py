"""Log lines into points: pure functions, no I/O.

A chunk is a run of complete lines read from one file at a known byte offset. Every line of
it becomes either a point (line protocol) or a reject with a reason; nothing is dropped.
"""

from __future__ import annotations

import math
import re
from datetime import date
from functools import lru_cache
from typing import NamedTuple

from logpipe.schema import is_valid_customer_id, point_line, point_timestamp, source_salt

MAX_LINE_BYTES = 64 * 1024
RAW_LINE_LIMIT = 1024
"""How much of a rejected line the dead-letter file keeps."""

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CLOCK = re.compile(r"(\d{2}):(\d{2}):(\d{2})")
_SECONDS_PER_DAY = 86_400


class ParseError(ValueError):
    """A log line that is not a valid request; the message is the reason for the dead letter."""


class Request(NamedTuple):
    epoch_seconds: int
    customer_id: str
    path: str
    status: int
    latency: float


class Chunk(NamedTuple):
    """Complete lines of one input file, starting at byte `offset`."""

    source: str
    offset: int
    data: bytes


class Reject(NamedTuple):
    source: str
    offset: int
    reason: str
    raw: str


class Parsed(NamedTuple):
    """What a chunk became: line-protocol points and rejected lines."""

    points: list[str]
    rejects: list[Reject]


@lru_cache(maxsize=4096)
def _day_start(text: str) -> int:
    if not _DAY.fullmatch(text):
        raise ParseError(f"date {text!r} is not YYYY-MM-DD")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ParseError(f"impossible date {text!r}") from None
    return (day.toordinal() - 719_163) * _SECONDS_PER_DAY  # 719163 = date(1970, 1, 1)


@lru_cache(maxsize=_SECONDS_PER_DAY)
def _second_of_day(text: str) -> int:
    match = _CLOCK.fullmatch(text)
    if not match:
        raise ParseError(f"time {text!r} is not HH:MM:SS")
    hours, minutes, seconds = (int(part) for part in match.groups())
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ParseError(f"impossible time {text!r}")
    return hours * 3600 + minutes * 60 + seconds


def parse_status(text: str) -> int:
    if not (len(text) == 3 and text.isascii() and text.isdigit()) or not 100 <= int(text) <= 599:
        raise ParseError(f"status {text!r} is not a number from 100 to 599")
    return int(text)


def parse_latency(text: str) -> float:
    try:
        latency = float(text)
    except ValueError:
        raise ParseError(f"latency {text!r} is not a number") from None
    if not math.isfinite(latency) or latency < 0 or "_" in text:
        raise ParseError(f"latency {text!r} is not a finite number of seconds >= 0")
    return latency


def parse_customer_id(text: str) -> str:
    if not is_valid_customer_id(text):
        raise ParseError(
            f"customer id {text[:140]!r} is not 1-128 ASCII letters, digits or _ . : -"
        )
    return text


def parse_seed_line(line: str) -> Request:
    """Parse `2026-10-06 09:42:36 cust_2 /api/v1/resource3 201 0.524` (naive time = UTC)."""
    fields = line.split()
    if len(fields) != 6:
        raise ParseError(f"expected 6 space-separated fields, found {len(fields)}")
    day, clock, customer_id, path, status, latency = fields
    return Request(
        epoch_seconds=_day_start(day) + _second_of_day(clock),
        customer_id=parse_customer_id(customer_id),
        path=path,
        status=parse_status(status),
        latency=parse_latency(latency),
    )


def _reject(chunk: Chunk, offset: int, reason: str, raw: bytes) -> Reject:
    text = raw[:RAW_LINE_LIMIT].decode("utf-8", errors="backslashreplace")
    return Reject(chunk.source, offset, reason, text)


def parse_chunk(chunk: Chunk) -> Parsed:
    """Turn every line of a chunk into a point or a reject (blank lines are neither)."""
    salt = source_salt(chunk.source)
    points: list[str] = []
    rejects: list[Reject] = []
    offset = chunk.offset
    for raw in chunk.data.split(b"\n"):
        line_offset = offset
        offset += len(raw) + 1
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            rejects.append(_reject(chunk, line_offset, "line longer than 64 KiB", raw))
            continue
        if b"\x00" in raw:
            rejects.append(_reject(chunk, line_offset, "NUL byte in line", raw))
            continue
        try:
            request = parse_seed_line(raw.decode("utf-8"))
        except UnicodeDecodeError:
            rejects.append(_reject(chunk, line_offset, "invalid UTF-8", raw))
            continue
        except ParseError as exc:
            rejects.append(_reject(chunk, line_offset, str(exc), raw))
            continue
        points.append(
            point_line(
                customer_id=request.customer_id,
                status=request.status,
                latency=request.latency,
                path=request.path,
                timestamp_ns=point_timestamp(request.epoch_seconds, salt=salt, offset=line_offset),
            )
        )
    return Parsed(points, rejects)
