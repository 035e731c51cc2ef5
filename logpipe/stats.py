"""Daily statistics: the InfluxQL that computes them and the rows it returns. Pure functions.

All aggregation happens inside InfluxDB, grouped by UTC day: one statement for totals and
latencies, one for the counts by status class (and, for a threshold inside a class, one for
that class's failing part). Closed days come from the daily rollups instead where they are
current (see rollup.py).

Words used here and in rollup.py and serve/:
- a **live** day may still get requests: today, and yesterday during the first LATE_LINES
  of today (see live_from);
- a **closed** day is any earlier one: it changes only when old lines are ingested (a
  backfill).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

from logpipe.config import MEASUREMENT
from logpipe.influx import Series
from logpipe.schema import NS_PER_SECOND, influxql_string

T = TypeVar("T")

LATENCY_AGGREGATES = (
    "mean(latency) AS average, median(latency) AS median, percentile(latency, 99) AS p99"
)
"""The latency statistics of a day, the same for the API's query and the rollups'."""
LATE_LINES = timedelta(hours=1)
"""How long after midnight (UTC) lines of the day before still arrive in the normal course
(the processor's lag, a log shipped late): until then yesterday is live like today."""
FIRST_DAY = date(1677, 9, 22)
LAST_DAY = date(2262, 4, 10)
"""The whole UTC days InfluxDB can store (its timestamps are int64 nanoseconds)."""

Statement = Sequence[Series]
"""The series one InfluxQL statement answered."""


@dataclass(frozen=True)
class Query(Generic[T]):
    """InfluxQL statements sent in one /query request, and the parser of their answers (one
    per statement, in order). A query reads only its own statements' answers, so joining
    queries (see `together`) never makes statement positions a contract between modules."""

    statements: tuple[str, ...]
    parse: Callable[[Sequence[Statement]], T]

    @property
    def text(self) -> str:
        return "; ".join(self.statements)

    def answer(self, statements: Sequence[Statement]) -> T:
        """Parse the answer; a missing database answers no statement: no series."""
        own = list(statements[: len(self.statements)])
        return self.parse(own + [[] for _ in range(len(self.statements) - len(own))])


def nothing(value: T) -> Query[T]:
    """A query of no statement that answers `value`: what is not asked (StatsService.ask
    sends InfluxDB nothing for it), so callers join queries without cases."""
    return Query((), lambda _: value)


def together(first: Query[Any], second: Query[Any]) -> Query[tuple[Any, Any]]:
    """Two queries in one round trip; each parser gets its own statements' answers."""
    split = len(first.statements)
    return Query(
        first.statements + second.statements,
        lambda answer: (first.answer(answer[:split]), second.answer(answer[split:])),
    )


@dataclass(frozen=True)
class DayStats:
    date: date
    total_requests: int
    successful_requests: int
    failed_requests: int
    uptime: float
    """100 * successful / total."""
    average_latency: float
    median_latency: float
    p99_latency: float


def live_from(now: datetime) -> date:
    """The first live day: today, or yesterday during the first LATE_LINES of today."""
    return (now - LATE_LINES).date()


def utc_now() -> datetime:
    """The default clock of everything that asks which days are closed."""
    return datetime.now(timezone.utc)


def day_ns(day: date) -> int:
    """The first nanosecond of a UTC day, as InfluxDB timestamps count."""
    return (
        int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())
        * NS_PER_SECOND
    )


def days_where(first: date, last: date) -> str:
    """The InfluxQL time condition of the whole UTC days first..last."""
    return f"time >= {day_ns(first)} AND time < {day_ns(last + timedelta(days=1))}"


def epoch_date(epoch: int) -> date:
    """The UTC day of an epoch second (InfluxDB answers with epoch=s)."""
    return datetime.fromtimestamp(epoch, timezone.utc).date()


def customer_where(customer_id: str | None, first: date, last: date) -> str:
    """The condition of one customer's requests (None: every customer's) on first..last.
    `customer_id` must be valid already; it is still written as an escaped string literal."""
    days = days_where(first, last)
    return (
        days if customer_id is None else f"customer_id = {influxql_string(customer_id)} AND {days}"
    )


def rows_by_time(series: Sequence[Series]) -> dict[int, dict[str, Any]]:
    """Each row of the series as {column: value}, by its time (epoch seconds)."""
    rows: dict[int, dict[str, Any]] = {}
    for one in series:
        columns = one["columns"]
        for values in one.get("values", []):
            row = dict(zip(columns, values, strict=True))
            rows[int(row["time"])] = row
    return rows


def class_fails(status_class: str, failure_status: int) -> bool:
    """Whether a status class fails as a whole: its lowest status (e.g. 500 for 5xx) reaches
    the threshold."""
    return int(status_class[0]) * 100 >= failure_status


def day_of(epoch: int, total: int, failed: int, latencies: dict[str, Any]) -> DayStats:
    """One day's statistics from its counts and its latency row (average, median, p99)."""
    return DayStats(
        date=epoch_date(epoch),
        total_requests=total,
        successful_requests=total - failed,
        failed_requests=failed,
        uptime=100.0 * (total - failed) / total,
        average_latency=float(latencies["average"]),
        median_latency=float(latencies["median"]),
        p99_latency=float(latencies["p99"]),
    )


def stats_query(
    customer_id: str | None, first: date, last: date, *, failure_status: int
) -> Query[dict[date, DayStats]]:
    """The statistics of the days first..last (inclusive) with requests, for one customer
    or (None) all of them together, computed from the requests.

    InfluxDB reads the points once per function, so the statements ask for as little as
    they can: latencies; counts by status class (the indexed tag), which give both the total
    and, for a threshold like 500, the failures; and only for a threshold inside a class
    (e.g. 450) a count of that class's failing part.
    """
    where = customer_where(customer_id, first, last)
    threshold = int(failure_status)
    statements: tuple[str, ...] = (
        f"SELECT {LATENCY_AGGREGATES} FROM {MEASUREMENT} WHERE {where}"
        " GROUP BY time(1d) fill(none)",
        f"SELECT count(latency) AS n FROM {MEASUREMENT} WHERE {where}"
        " GROUP BY time(1d), status_class fill(none)",
    )
    if threshold % 100:
        statements += (
            f"SELECT count(latency) AS n FROM {MEASUREMENT} WHERE {where}"
            f" AND status_class = '{threshold // 100}xx' AND status >= {threshold}"
            " GROUP BY time(1d) fill(none)",
        )

    def parse(answer: Sequence[Statement]) -> dict[date, DayStats]:
        latencies = rows_by_time(answer[0])
        partial = rows_by_time(answer[2]) if len(answer) > 2 else {}
        counts: dict[int, list[int]] = {}  # {day: [total, failed]}
        for series in answer[1]:
            fails = class_fails(series.get("tags", {}).get("status_class", "0xx"), threshold)
            for epoch, n in series.get("values", []):
                day = counts.setdefault(int(epoch), [0, 0])
                day[0] += int(n)
                day[1] += int(n) if fails else 0
        days = {}
        for epoch in sorted(latencies):
            total, failed = counts.get(epoch, [0, 0])
            if total:
                failed += int(partial.get(epoch, {}).get("n") or 0)
                days[epoch_date(epoch)] = day_of(epoch, total, failed, latencies[epoch])
        return days

    return Query(statements, parse)


def customers_query(
    customer_id: str | None, first: date, last: date, *, limit: int, offset: int
) -> Query[list[tuple[str, int]]]:
    """Each customer's requests on first..last, a page of customers in id order (a key bound
    to one customer: only that one). The days bound what InfluxDB has to count."""
    where = customer_where(customer_id, first, last)
    statement = (
        f"SELECT count(latency) AS total FROM {MEASUREMENT} WHERE {where}"
        f" GROUP BY customer_id SLIMIT {int(limit)} SOFFSET {int(offset)}"
    )

    def parse(answer: Sequence[Statement]) -> list[tuple[str, int]]:
        return sorted(
            (series["tags"]["customer_id"], int(series["values"][0][1]))
            for series in answer[0]
            if series.get("values")
        )

    return Query((statement,), parse)
