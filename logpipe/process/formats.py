"""The JSON-lines and logfmt formats, and the choice of format: which parser reads a chunk."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from logpipe.errors import ConfigError
from logpipe.generate import FORMATS
from logpipe.process.parse import (
    Chunk,
    Parsed,
    ParseError,
    Request,
    parse_chunk,
    parse_customer_id,
    parse_latency,
    parse_path,
    parse_status,
    parse_text_chunk,
    parse_text_line,
    parse_timestamp,
)
from logpipe.schema import MAX_EPOCH_SECONDS

FIELDS = ("timestamp", "customer_id", "path", "status", "latency")
_LOGFMT = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def _from_record(record: Mapping[str, Any], keys: Mapping[str, str], zone: str) -> Request:
    values = {}
    for name in FIELDS:
        key = keys[name]
        if key not in record:
            raise ParseError(f"missing key {key!r}")
        values[name] = record[key]
    stamp = values["timestamp"]
    nanos: int | None
    if isinstance(stamp, str):
        seconds, nanos = parse_timestamp(stamp, zone)
    elif isinstance(stamp, int) and not isinstance(stamp, bool):
        seconds, nanos = stamp, None
    elif isinstance(stamp, float) and math.isfinite(stamp):
        # to the microsecond, the precision a double keeps for today's epoch seconds
        seconds, micros = divmod(round(stamp * 1_000_000), 1_000_000)
        nanos = micros * 1000
    else:
        raise ParseError(f"timestamp {str(stamp)[:60]!r} is neither ISO-8601 nor epoch seconds")
    if not 0 <= seconds <= MAX_EPOCH_SECONDS:
        raise ParseError(f"epoch timestamp {stamp!r} is outside 1970-01-01..2262-04-11")
    return Request(
        seconds,
        parse_customer_id(values["customer_id"]),
        parse_path(values["path"]),
        parse_status(values["status"]),
        parse_latency(values["latency"]),
        nanos,
    )


def parse_json_line(line: str, keys: Mapping[str, str], zone: str = "UTC") -> Request:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ParseError(f"invalid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ParseError("JSON line is not an object")
    return _from_record(record, keys, zone)


def parse_logfmt_line(line: str, keys: Mapping[str, str], zone: str = "UTC") -> Request:
    record = {}
    for key, value in _LOGFMT.findall(line):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        record[key] = value
    return _from_record(record, keys, zone)


@dataclass(frozen=True)
class LineFormat:
    """Which format the input is in, the JSON / logfmt key of each field, and the zone of
    naive timestamps."""

    kind: str = "text"
    keys: Mapping[str, str] = field(default_factory=lambda: {name: name for name in FIELDS})
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.kind not in FORMATS:
            raise ConfigError(f"format {self.kind!r} is not one of {', '.join(FORMATS)}")
        if self.timezone != "UTC":
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"unknown time zone {self.timezone!r}") from None

    @classmethod
    def from_settings(cls, kind: str, keys: str, timezone: str) -> LineFormat:
        """`keys` is "field=key,…" for the fields that differ, e.g. "timestamp=ts"."""
        mapping = {name: name for name in FIELDS}
        for pair in filter(None, (part.strip() for part in keys.split(","))):
            name, _, key = pair.partition("=")
            if name not in FIELDS or not key:
                raise ConfigError(f"keys: {pair!r} is not FIELD=KEY with FIELD in {FIELDS}")
            mapping[name] = key
        return cls(kind, mapping, timezone)

    def chunk_parser(self) -> Callable[[Chunk], Parsed]:
        """The function that turns a chunk of this format into points and rejects."""
        if self.kind == "text" and self.timezone == "UTC":
            return parse_text_chunk
        parse_line = self.parser()
        return lambda chunk: parse_chunk(chunk, parse_line)

    def parser(self) -> Callable[[str], Request]:
        zone, keys = self.timezone, self.keys
        if self.kind == "json":
            return lambda line: parse_json_line(line, keys, zone)
        if self.kind == "logfmt":
            return lambda line: parse_logfmt_line(line, keys, zone)
        return lambda line: parse_text_line(line, zone)
