"""Daily statistics: the InfluxQL that computes them and the rows it returns. Pure functions.

All aggregation happens inside InfluxDB, grouped by UTC day, in one /query round trip: one
statement for totals and latencies, one for the failed count (status >= the threshold).
Closed days come from the daily rollups instead where they are up to date (see rollup.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from logpipe.config import DAILY_MEASUREMENT, MEASUREMENT
from logpipe.schema import NS_PER_SECOND, influxql_string

LATENCY_AGGREGATES = (
    "mean(latency) AS average, median(latency) AS median, percentile(latency, 99) AS p99"
)
"""The latency statistics of a day, the same for the API's query and the rollups'."""
LATE_LINES = timedelta(hours=1)
"""How long after midnight (UTC) lines of the day before still arrive in the normal course
(the processor's lag, a log shipped late): until then yesterday is re-read like today."""


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
    """The first day whose statistics may still change: today, or yesterday during the first
    LATE_LINES of today. Older days are closed: they change only by a backfill."""
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


def day_spans(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as spans (first, last) of consecutive days."""
    spans: list[tuple[date, date]] = []
    for day in days:
        if spans and day == spans[-1][1] + timedelta(days=1):
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


def epoch_date(epoch: int) -> date:
    """The UTC day of an epoch second (InfluxDB answers with epoch=s)."""
    return datetime.fromtimestamp(epoch, timezone.utc).date()


def stats_query(
    customer_id: str | None,
    first: date,
    last: date,
    *,
    failure_status: int,
    by_customer: bool = False,
) -> str:
    """InfluxQL for the days first..last (inclusive), for one customer or (None) all of them.
    `customer_id` must be valid already; it is still written as an escaped string literal.

    InfluxDB reads the points once per function, so the statements ask for as little as
    they can: latencies; counts by status class (the indexed tag), which give both the total
    and, for a threshold like 500, the failures; and only for a threshold inside a class
    (e.g. 450) a count of that class's failing part.
    """
    where = days_where(first, last)
    if customer_id is not None:
        where = f"customer_id = {influxql_string(customer_id)} AND {where}"
    by = "time(1d), customer_id" if by_customer else "time(1d)"
    statements = [
        f"SELECT {LATENCY_AGGREGATES} FROM {MEASUREMENT} WHERE {where} GROUP BY {by} fill(none)",
        f"SELECT count(latency) AS n FROM {MEASUREMENT} WHERE {where}"
        f" GROUP BY {by}, status_class fill(none)",
    ]
    threshold = int(failure_status)
    if threshold % 100:
        statements.append(
            f"SELECT count(latency) AS n FROM {MEASUREMENT} WHERE {where}"
            f" AND status_class = '{threshold // 100}xx' AND status >= {threshold}"
            f" GROUP BY {by} fill(none)"
        )
    return "; ".join(statements)


def customers_query(*, customer_id: str | None, limit: int, offset: int) -> str:
    """InfluxQL for each customer's request total, a page of customers in id order."""
    where = f" WHERE customer_id = {influxql_string(customer_id)}" if customer_id else ""
    return (
        f"SELECT count(latency) AS total FROM {MEASUREMENT}{where}"
        f" GROUP BY customer_id SLIMIT {int(limit)} SOFFSET {int(offset)}"
    )


def customer_totals(statements: list[list[dict[str, Any]]]) -> list[tuple[str, int]]:
    """(customer id, total requests) from customers_query's answer, in id order."""
    totals = [
        (series["tags"]["customer_id"], int(series["values"][0][1]))
        for series in (statements[0] if statements else [])
        if series.get("values")
    ]
    return sorted(totals)


def rows_by_time(series: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Each row of the series as {column: value}, by its time (epoch seconds)."""
    rows: dict[int, dict[str, Any]] = {}
    for one in series:
        columns = one["columns"]
        for values in one.get("values", []):
            row = dict(zip(columns, values, strict=True))
            rows[int(row["time"])] = row
    return rows


def _class_fails(status_class: str, failure_status: int) -> bool:
    """Whether a status class fails as a whole: its lowest status (e.g. 500 for 5xx) reaches
    the threshold."""
    return int(status_class[0]) * 100 >= failure_status


def _class_counts(series: list[dict[str, Any]], failure_status: int) -> dict[int, list[int]]:
    """{day: [total, failed]} from counts by day and status class."""
    counts: dict[int, list[int]] = {}
    for one in series:
        fails = _class_fails(one.get("tags", {}).get("status_class", "0xx"), failure_status)
        for epoch, n in one.get("values", []):
            day = counts.setdefault(int(epoch), [0, 0])
            day[0] += int(n)
            if fails:
                day[1] += int(n)
    return counts


def _day(epoch: int, total: int, failed: int, latencies: dict[str, Any]) -> DayStats:
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


def day_stats(statements: list[list[dict[str, Any]]], *, failure_status: int) -> list[DayStats]:
    """Turn stats_query's answer (epoch=s) into one DayStats per day with requests."""
    latencies = rows_by_time(statements[0]) if statements else {}
    counts = _class_counts(statements[1] if len(statements) > 1 else [], failure_status)
    partial = rows_by_time(statements[2]) if len(statements) > 2 else {}
    days = []
    for epoch in sorted(latencies):
        total, failed = counts.get(epoch, [0, 0])
        if total == 0:
            continue
        failed += int(partial.get(epoch, {}).get("n") or 0)
        days.append(_day(epoch, total, failed, latencies[epoch]))
    return days


def day_stats_by_customer(
    statements: list[list[dict[str, Any]]], *, failure_status: int
) -> dict[str, list[DayStats]]:
    """day_stats for each customer, from stats_query(..., by_customer=True)'s answer."""
    per_customer: dict[str, list[list[dict[str, Any]]]] = {}
    for index, statement in enumerate(statements):
        for series in statement:
            customer = series.get("tags", {}).get("customer_id", "")
            per_customer.setdefault(customer, [[] for _ in statements])[index].append(series)
    return {
        customer: day_stats(own, failure_status=failure_status)
        for customer, own in per_customer.items()
    }


def rollup_query(customer_id: str | None, first: date, last: date) -> str:
    """InfluxQL for one customer's daily rollups of the days first..last (None: those of all
    customers together, the series without a customer_id), and for the number of requests
    each of those days has now, to check the rollups against."""
    days = days_where(first, last)
    if customer_id is None:  # the series without a customer_id
        rollups, requests = f"customer_id = '' AND {days}", days
    else:
        rollups = requests = f"customer_id = {influxql_string(customer_id)} AND {days}"
    return (
        f"SELECT * FROM {DAILY_MEASUREMENT} WHERE {rollups} GROUP BY status_class; "
        f"SELECT count(latency) AS n FROM {MEASUREMENT} WHERE {requests}"
        " GROUP BY time(1d) fill(none)"
    )


def rollup_days(
    statements: list[list[dict[str, Any]]], *, failure_status: int
) -> tuple[list[DayStats], list[date]]:
    """From rollup_query's answer (epoch=s): the days whose rollup covers exactly the requests
    the day has now, and the days with requests whose rollup is missing or behind (a late
    line since its build; a build racing a write): those need the requests themselves.
    Days in neither list have no requests.

    A rollup counts only when its total (from the same statement as its latencies) equals
    the requests counted now and its counts by status class add up to it: points are only
    ever added, so equal counts mean the very same points, whoever wrote them, marks or not.
    Failures come from the class counts, so the threshold must be a class boundary (e.g.
    500, not 450); the caller asks the requests otherwise."""
    rollups: dict[int, dict[str, Any]] = {}
    by_class: dict[int, dict[str, int]] = {}
    for series in statements[0] if statements else []:
        status_class = series.get("tags", {}).get("status_class", "")
        for epoch, row in rows_by_time([series]).items():
            if not status_class:
                rollups[epoch] = row
            elif row.get("n") is not None:
                by_class.setdefault(epoch, {})[status_class] = int(row["n"])
    current, behind = [], []
    for epoch, now in rows_by_time(statements[1] if len(statements) > 1 else []).items():
        row, counts = rollups.get(epoch, {}), by_class.get(epoch, {})
        total = int(now["n"])
        if row.get("total") == total == sum(counts.values()) and row.get("median") is not None:
            failed = sum(n for name, n in counts.items() if _class_fails(name, failure_status))
            current.append(_day(epoch, total, failed, row))
        else:
            behind.append(epoch_date(epoch))
    return current, behind
