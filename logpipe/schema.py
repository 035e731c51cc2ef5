"""The point schema and the customer-id rule, shared by the processor and the API.

One request becomes one point of measurement ``requests``::

    requests,customer_id=cust_2,status_class=2xx status=201i,latency=0.524,path="/api/v1/r3" <ns>

Tags (indexed) stay low-cardinality: the customer and the status class. The raw status, the
latency in seconds and the path are fields. ``duration`` would be an InfluxQL keyword, hence
``latency``.
"""

from __future__ import annotations

import re
import zlib

from logpipe.config import MEASUREMENT

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
"""1 to 128 ASCII letters, digits and ``_ . : -``; anything else is refused everywhere."""

_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)
NS_PER_SECOND = 1_000_000_000
SECONDS_PER_DAY = 86_400


def is_valid_customer_id(customer_id: str) -> bool:
    return _CUSTOMER_ID.fullmatch(customer_id) is not None


def escape_tag(value: str) -> str:
    """Escape a tag key or value for line protocol (backslash, comma, equals sign, space)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_field_string(value: str) -> str:
    """Escape a string field value's content for line protocol (backslash, double quote)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def influxql_string(value: str) -> str:
    """Quote a value as an InfluxQL single-quoted string literal (InfluxQL escapes with \\)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def source_salt(source: str) -> int:
    """A stable number for an input file, mixed into point timestamps (see point_timestamp)."""
    return zlib.crc32(source.encode("utf-8"))


def point_timestamp(
    epoch_seconds: int, *, nanos: int = 0, digits: int = 0, salt: int, offset: int
) -> int:
    """The point's nanosecond timestamp: the log's time plus a part made from the line's place.

    The log gives `digits` sub-second digits (0 for whole seconds); the nanosecond digits it
    does not give are filled with (salt + byte offset of the line) mod 10**(9 - digits). Two
    lines of one customer at the same logged instant have different offsets, so they are two
    points; the same line read twice (a replay after a crash) has the same offset, so it
    becomes the same point. Nothing is remembered between lines, so memory does not grow
    with the file. Two lines collide only when, within one logged instant of one customer,
    their offsets differ by an exact multiple of 10**(9 - digits) bytes (1 GB for whole
    seconds, 1 MB for milliseconds).
    """
    room = 10 ** (9 - digits)
    return epoch_seconds * NS_PER_SECOND + nanos + (salt + offset) % room


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def point_line(
    *, customer_id: str, status: int, latency: float, path: str, timestamp_ns: int
) -> str:
    """One line of line protocol for one request. The customer id must already be valid."""
    return (
        f"{MEASUREMENT},customer_id={escape_tag(customer_id)},status_class={status_class(status)}"
        f' status={status}i,latency={latency!r},path="{escape_field_string(path)}"'
        f" {timestamp_ns}"
    )
