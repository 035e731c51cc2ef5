"""Daily statistics computed straight from a log file, independently of logpipe's code, to
check what the API answers against."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path


def p99(values: list[float]) -> float:
    """InfluxQL PERCENTILE(x, 99): the sorted value at index floor(n * 0.99 + 0.5) - 1."""
    ordered = sorted(values)
    return ordered[max(0, math.floor(len(ordered) * 0.99 + 0.5) - 1)]


def daily_stats(path: Path, *, failure_status: int = 500) -> dict[str, dict[str, dict]]:
    """{customer: {"YYYY-MM-DD": stats}} from a seed-format file (naive times are UTC)."""
    return daily_stats_of(path.read_text().splitlines(), failure_status=failure_status)


def daily_stats_of(lines: list[str], *, failure_status: int = 500) -> dict[str, dict[str, dict]]:
    """The same from seed-format lines; customer "*" holds all customers together."""
    latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
    failures: dict[tuple[str, str], int] = defaultdict(int)
    for line in lines:
        day, _clock, customer, _path, status, latency = line.split(" ")
        for who in (customer, "*"):
            latencies[who, day].append(float(latency))
            failures[who, day] += int(status) >= failure_status
    result: dict[str, dict[str, dict]] = defaultdict(dict)
    for (customer, day), values in latencies.items():
        total, failed = len(values), failures[customer, day]
        result[customer][day] = {
            "date": day,
            "total_requests": total,
            "successful_requests": total - failed,
            "failed_requests": failed,
            "uptime": 100 * (total - failed) / total,
            "average_latency": sum(values) / total,
            "median_latency": statistics.median(values),
            "p99_latency": p99(values),
        }
    return result


def assert_same_days(got: list[dict], want: list[dict]) -> None:
    """The API's days equal the reference's: the same dates, counts exactly, latencies to
    float rounding."""
    import pytest

    assert [day["date"] for day in got] == [day["date"] for day in want]
    for day, wanted in zip(got, want, strict=True):
        for name, value in wanted.items():
            exact = isinstance(value, (int, str))
            expected = value if exact else pytest.approx(value, rel=1e-9, abs=1e-12)
            assert day[name] == expected, (wanted["date"], name)
