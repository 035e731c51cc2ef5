"""Daily statistics: the days asked for, the InfluxQL that computes them, the rows it returns
and the answer's JSON, the same for the API and `logpipe stats`. Pure functions.

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

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

from logpipe.config import MEASUREMENT
from logpipe.errors import BadDates
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
MAX_RANGE_DAYS = 366
DEFAULT_DAYS = 30
"""The days shown when none are asked for: the API's /customers, `logpipe stats`."""
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

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


def _parse_day(name: str, value: str) -> date:
    if not _DATE.fullmatch(value):
        raise BadDates(f"{name}: {value[:40]!r} is not a date in the form YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadDates(f"{name}: {value!r} is not a real date") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadDates(f"{name}: InfluxDB stores days from {FIRST_DAY} to {LAST_DAY}")
    return day


def date_range(
    from_date: str | None,
    to_date: str | None,
    *,
    today: date,
    names: tuple[str, str] = ("from_date", "to_date"),
) -> tuple[date, date]:
    """Validate the requested days: both dates real, storable, in order, at most
    MAX_RANGE_DAYS; no `to_date` is `today`. BadDates names the dates as `names` (the API's
    query parameters by default, the CLI passes its flags)."""
    first_name, last_name = names
    if from_date is None:
        raise BadDates(f"{first_name} is required (YYYY-MM-DD)")
    first = _parse_day(first_name, from_date)
    last = _parse_day(last_name, to_date) if to_date is not None else today
    if last < first:
        raise BadDates(f"{last_name} {last} is before {first_name} {first}")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise BadDates(f"the range may span at most {MAX_RANGE_DAYS} days")
    return first, last


def days_ending(last: date, days: int = DEFAULT_DAYS) -> tuple[date, date]:
    """The `days` UTC days ending on `last`, inclusive, as (first, last)."""
    return last - timedelta(days=days - 1), last


def to_json(document: Any) -> bytes:
    """The API's JSON encoding: compact, dates as YYYY-MM-DD."""
    return json.dumps(document, separators=(",", ":"), default=str).encode()


def no_requests(customer_id: str | None, first: date, last: date) -> str:
    """What the API's 404 and `logpipe stats` say when no day of the range has requests."""
    return f"no requests for {customer_id or 'any customer'} from {first} to {last}"


def stats_json(
    customer_id: str | None, first: date, last: date, failure_status: int, days: list[DayStats]
) -> bytes:
    """The body of a stats answer with days, as the API sends it and `logpipe stats --json`
    prints it (one function, so they cannot differ); keys in the order of serve's StatsOut."""
    return to_json(
        {
            "customer_id": customer_id,
            "from_date": first,
            "to_date": last,
            "failure_status": failure_status,
            "days": [vars(day) for day in days],
        }
    )


def days_of(document: dict[str, Any]) -> list[DayStats]:
    """The days of a parsed stats body (stats_json's), as DayStats."""
    return [
        DayStats(**{**day, "date": date.fromisoformat(day["date"])}) for day in document["days"]
    ]


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
