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


def source_salt(identity: str) -> int:
    """A stable number for a file's content, from its identity (logpipe.process.files)."""
    return zlib.crc32(identity.encode("utf-8"))


MIN_EPOCH_SECONDS = -9_223_372_036
MAX_EPOCH_SECONDS = 9_223_372_035
"""The whole seconds InfluxDB can store: its timestamps are signed 64-bit nanoseconds
(1677-09-21 to 2262-04-11). A line outside is refused when parsed, never sent."""


def point_timestamp(epoch_seconds: int, *, salt: int, offset: int) -> int:
    """A point's nanosecond timestamp: the logged second, and a slot within it made from where
    the line is stored.

    InfluxDB keeps one point per (series, timestamp), so two distinct lines must never get the
    same pair, and one line read twice (a replay after a crash) must get the same one. The
    slot is (salt + offset) mod 10**9, where `offset` is the line's byte offset in its file
    and `salt` comes from the file's identity, the fingerprint of its first line
    (logpipe.process.files); the logged sub-second part is not used (it is kept as the field
    `subsecond_ns`), so a log with micro- or nanoseconds has as much room as one without.

    - The same line read again, whatever path names its file (a renamed, rotated, copied or
      compressed file keeps its fingerprint), has the same salt and offset: the same point.
    - Two lines of one file differ in offset; they share a slot only if they are logged in
      the same second, for the same customer and status class, at offsets an exact multiple
      of 10**9 bytes apart (a second spanning a gigabyte of one file).
    - A file truncated and written again starts with another first line: another
      fingerprint, another salt (if its first line is byte-identical to the old one, it is
      taken for the same file and only the part past the old offset is read; README).
    - Lines of two different files share a slot when their salts differ by exactly their
      offsets' difference mod 10**9 and everything else above matches: for two lines of one
      customer, class and second, a chance of 1 in 10**9 (salts are spread uniformly).

    Nothing is remembered between lines, so memory does not grow with the file.
    """
    return epoch_seconds * NS_PER_SECOND + (salt + offset) % NS_PER_SECOND


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def point_line(
    *,
    customer_id: str,
    status: int,
    latency: float,
    path: str,
    timestamp_ns: int,
    subsecond_ns: int | None = None,
) -> str:
    """One line of line protocol for one request. The customer id must already be valid.
    `subsecond_ns` is the logged fraction of the second, for logs that give one."""
    subsecond = "" if subsecond_ns is None else f",subsecond_ns={subsecond_ns}i"
    return (
        f"{MEASUREMENT},customer_id={escape_tag(customer_id)},status_class={status_class(status)}"
        f' status={status}i,latency={latency!r},path="{escape_field_string(path)}"'
        f"{subsecond} {timestamp_ns}"
    )
