"""`logpipe rollup`: exact statistics of closed days, stored beside the requests, so the API
reads a busy customer's month in milliseconds instead of sorting every point of it (InfluxDB
1.x sorts for MEDIAN and PERCENTILE at about a microsecond a point, each). This module owns
the ``requests_daily`` measurement: its layout, the marks, the build, the scan, the API's
read, and the one rule that says a rollup may be served: `is_current`.

One point per customer and UTC day, at the day's first instant, and one for all customers
together (no customer_id: `/stats`), each with its counts by status class:

    requests_daily,customer_id=cust_1 total=…i,average=…,median=…,p99=…,dirty=…i,covered=…i
    requests_daily,customer_id=cust_1,status_class=5xx n=…i
    requests_daily total=…i,average=…,median=…,p99=…,covered=…i
    requests_daily,status_class=5xx n=…i

The statistics are computed inside InfluxDB (``SELECT … INTO``) from the requests, by the
very expressions the API would use. The **marks** say what to build and whether a build is
still current: the processor writes a new random `dirty` for each (customer, day) of every
write, in the same request as the points; a build reads the day's marks before computing
anything and stores their digest as `covered` after its statistics.

Only closed days are built (see stats.live_from); when following (process/follower.py),
only days whose marks have not changed for a whole interval and only while the processor
has caught up: building a day costs InfluxDB about as much as ingesting it, and must not
slow an ingest down.

Why not InfluxDB's continuous queries (``RESAMPLE EVERY … FOR …``)? They recompute a fixed
window ending now on a schedule, whether anything changed or not, and never look at older
days: a backfill of last month, or a point rewritten there, would stay wrong for good. The
marks rebuild exactly the customer-days written to, whenever they were, and let the API
tell a current rollup from a stale one; a CQ would still need that check. InfluxDB 2.x and
3.x have neither ``SELECT … INTO`` nor CQs: there the API always reads the requests.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from logpipe.config import DAILY_MEASUREMENT, MEASUREMENT, Settings
from logpipe.errors import ConfigError, LogpipeError
from logpipe.influx import InfluxClient, Series
from logpipe.schema import NS_PER_SECOND, escape_tag, influxql_string
from logpipe.stats import (
    LATENCY_AGGREGATES,
    DayStats,
    Query,
    Statement,
    class_fails,
    customer_where,
    day_ns,
    day_of,
    days_where,
    epoch_date,
    live_from,
    rows_by_time,
    utc_now,
)

log = logging.getLogger(__name__)

CUSTOMERS_PER_QUERY = 50
"""Customers built by one /query request: its time must stay well inside the timeout."""
SLOW_QUERY_TIMEOUT = 300.0
"""Seconds a build, a scan or a check may take (a busy day, a long history)."""
EVERYONE = ""
"""The customer of the rollup of all customers together (its series has no customer_id)."""


def new_token() -> int:
    """A random mark: two writes never write the same one."""
    return random.getrandbits(62) + 1


def supported(version: str) -> bool:
    """Whether the server has ``SELECT … INTO`` (InfluxDB 1.x)."""
    return version.startswith("1.")


def marks_digest(marks: Mapping[str, int]) -> int:
    """One number for the `dirty` marks of a day's customers (one customer's, or everyone's
    for the rollup of all customers): equal digests mean equal marks, but for odds of 2^-62."""
    digest = hashlib.blake2b(digest_size=8)
    for customer, mark in sorted(marks.items()):  # ids never hold "=" or ";"
        digest.update(f"{customer}={mark};".encode())
    return int.from_bytes(digest.digest(), "big") >> 2  # an InfluxDB integer is signed


def covered_marks(customer: str, marks: Mapping[str, int]) -> Mapping[str, int]:
    """Of a day's `dirty` marks by customer, those a rollup of `customer` covers: its own
    (none before its first marked write), or for EVERYONE every customer's."""
    if customer == EVERYONE:
        return marks
    return {customer: marks[customer]} if customer in marks else {}


@dataclass(frozen=True)
class Rollup:
    """One stored rollup, as read back: all None before its first build."""

    total: int | None = None
    latencies: dict[str, Any] = field(default_factory=dict)
    """average, median, p99."""
    by_class: dict[str, int] = field(default_factory=dict)
    covered: int | None = None


def is_current(rollup: Rollup, *, marks: Mapping[str, int], requests: int) -> bool:
    """Whether `rollup` may be served instead of its day's requests: the one rule, for the
    API and for `logpipe rollup`. `marks` are the day's `dirty` marks now that the rollup
    covers (see covered_marks) and `requests` the points counted now.

    What is assumed: InfluxDB keeps one point per series and time, so a write may replace a
    point (another latency, the same count). Every write of logpipe's processor carries, in
    the same request as its points, a new random mark for each customer-day it writes to.

    What is checked, and why it suffices:
    - `covered == digest(marks now)`: a build reads the marks before computing and stores
      their digest after, so no marked write has landed since the build read them (a write
      in flight while they are read may show its mark before all its points: the follower
      builds only days whose marks stayed the same for a whole interval). Catches every
      added, replaced or changed point written by logpipe.
    - `total == requests counted now`: catches writers that do not mark (an earlier version,
      another tool) adding points, and points deleted.
    - the counts by class add up to the total and the latencies are there: a build cut short
      between its statements is not current.
    What breaks it: a writer that does not mark replacing points without changing a day's
    count. Then run `logpipe rollup --rebuild` for those days.
    """
    return (
        rollup.covered == marks_digest(marks)
        and rollup.total == requests == sum(rollup.by_class.values())
        and rollup.latencies.get("median") is not None
    )


def _mark_lines(field_name: str, marks: Iterable[tuple[str, int, int]]) -> list[str]:
    return [
        f"{DAILY_MEASUREMENT}{f',customer_id={escape_tag(customer)}' if customer else ''}"
        f" {field_name}={mark}i {day * NS_PER_SECOND}"
        for customer, day, mark in sorted(marks)
    ]


def marker_lines(pairs: Iterable[tuple[str, int]], token: int) -> list[str]:
    """The `dirty` marks of the (customer id, day start in seconds) pairs a write touches."""
    return _mark_lines("dirty", ((customer, day, token) for customer, day in pairs))


def covered_lines(day: int, covered: dict[str, int]) -> list[str]:
    """The `covered` digests of a build of `day`, by customer (EVERYONE: all together)."""
    return _mark_lines("covered", ((customer, day, mark) for customer, mark in covered.items()))


@dataclass(frozen=True)
class Stored:
    """Rollups and marks as read from InfluxDB (days as epoch seconds)."""

    rollups: dict[tuple[str, int], Rollup]
    """By (customer or EVERYONE, day)."""
    marks: dict[int, dict[str, int]]
    """{day: {customer: dirty}}."""

    def current(self, customer: str, day: int, requests: int) -> Rollup | None:
        """The customer's (EVERYONE: all customers') rollup of `day` if it is current."""
        rollup = self.rollups.get((customer, day), Rollup())
        marks = covered_marks(customer, self.marks.get(day, {}))
        return rollup if is_current(rollup, marks=marks, requests=requests) else None


def _stored_statements(who: str, classes_of: str, days: str) -> tuple[str, str]:
    """The rollups, marks and class counts the conditions select, for `_stored`."""
    return (
        f"SELECT total, average, median, p99, covered, dirty FROM {DAILY_MEASUREMENT}"
        f" WHERE {who}status_class = '' AND {days} GROUP BY customer_id",
        f"SELECT n FROM {DAILY_MEASUREMENT} WHERE {classes_of}status_class != '' AND {days}"
        " GROUP BY customer_id, status_class",
    )


def _stored(rows: Statement, classes: Statement) -> Stored:
    rollups: dict[tuple[str, int], Rollup] = {}
    marks: dict[int, dict[str, int]] = {}
    for series in rows:
        customer = series.get("tags", {}).get("customer_id", EVERYONE)
        for day, row in rows_by_time([series]).items():
            if row.get("dirty") is not None and customer:
                marks.setdefault(day, {})[customer] = int(row["dirty"])
            total = row.get("total")
            latencies = {name: row.get(name) for name in ("average", "median", "p99")}
            covered = row.get("covered")
            rollups[customer, day] = Rollup(
                None if total is None else int(total),
                latencies,
                {},
                None if covered is None else int(covered),
            )
    for series in classes:
        tags = series.get("tags", {})
        customer, status_class = tags.get("customer_id", EVERYONE), tags["status_class"]
        for day, row in rows_by_time([series]).items():
            rollup = rollups.setdefault((customer, day), Rollup())
            if row.get("n") is not None:
                rollup.by_class[status_class] = int(row["n"])
    return Stored(rollups, marks)


def read_query(
    customer_id: str | None, first: date, last: date, *, failure_status: int
) -> Query[tuple[dict[date, DayStats], list[date]]]:
    """For the API: the statistics of the days first..last whose rollup (one customer's, or
    with None all customers') is current, and the days with requests whose rollup is not
    (missing, or behind a write): those need the requests themselves. Days in neither have
    no requests. Failures come from the counts by class, so the threshold must be a class
    boundary (e.g. 500, not 450)."""
    if failure_status % 100:
        raise ValueError(f"rollups count failures by status class, not from {failure_status}")
    days = days_where(first, last)
    if customer_id is None:  # the rollup of everyone and every customer's marks
        who, classes_of = "", "customer_id = '' AND "
    else:
        who = classes_of = f"customer_id = {influxql_string(customer_id)} AND "
    statements = (
        *_stored_statements(who, classes_of, days),
        f"SELECT count(latency) AS n FROM {MEASUREMENT}"
        f" WHERE {customer_where(customer_id, first, last)} GROUP BY time(1d) fill(none)",
    )
    customer = EVERYONE if customer_id is None else customer_id

    def parse(answer: Sequence[Statement]) -> tuple[dict[date, DayStats], list[date]]:
        stored = _stored(answer[0], answer[1])
        current, behind = {}, []
        for day, row in sorted(rows_by_time(answer[2]).items()):
            rollup = stored.current(customer, day, int(row["n"]))
            if rollup is None:
                behind.append(epoch_date(day))
                continue
            failed = sum(n for c, n in rollup.by_class.items() if class_fails(c, failure_status))
            current[epoch_date(day)] = day_of(day, int(row["n"]), failed, rollup.latencies)
        return current, behind

    return Query(statements, parse)


@dataclass(frozen=True)
class DayState:
    """The marks of one day, as a scan reads them: (dirty, covered) per customer."""

    marks: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)

    def stale(self) -> list[str]:
        """Customers written to since their last build (or never built)."""
        dirty = {c: mark for c, (mark, _) in self.marks.items() if mark is not None}
        return sorted(
            customer
            for customer, (_, covered) in self.marks.items()
            if customer in dirty and marks_digest(covered_marks(customer, dirty)) != covered
        )


def scan_query(since: int | None = None) -> str:
    """The marks of every day, or of the days from `since` (epoch s) on."""
    where = f" WHERE time >= {since}s" if since is not None else ""
    return (
        f"SELECT dirty, covered FROM {DAILY_MEASUREMENT}{where} GROUP BY customer_id, status_class"
    )


def read_scan(statement: list[Series]) -> dict[int, DayState]:
    """scan_query's answer (epoch=s) as {day start: DayState}."""
    marks: dict[int, dict[str, tuple[int | None, int | None]]] = {}
    for series in statement:
        tags = series.get("tags", {})
        if tags.get("status_class") or not tags.get("customer_id"):
            continue
        for day, row in rows_by_time([series]).items():
            marks.setdefault(day, {})[tags["customer_id"]] = (row.get("dirty"), row.get("covered"))
    return {day: DayState(marks[day]) for day in sorted(marks)}


def to_build(
    days: dict[int, DayState], *, before: int, previous: dict[int, DayState]
) -> dict[int, list[str]]:
    """The stale customers of each closed day (starting before `before`) whose marks are
    the same as in `previous`, the last look: a day still being written is left for later."""
    wanted = {}
    for day, state in days.items():
        stale = state.stale()
        if stale and day < before and previous.get(day) == state:
            wanted[day] = stale
    return wanted


def marks_query(day: int) -> str:
    """InfluxQL for the day's `dirty` marks, read before a build computes anything."""
    where = days_where(epoch_date(day), epoch_date(day))
    return f"SELECT dirty FROM {DAILY_MEASUREMENT} WHERE {where} GROUP BY customer_id"


def build_query(day: int, customers: Iterable[str | None]) -> str:
    """InfluxQL that computes the day's rollups of `customers` (None: all customers
    together) INTO the daily measurement: the total in the same statement as the latencies,
    and the counts by status class (is_current checks that they add up to the total)."""
    statements = []
    for customer in customers:
        own = customer_where(customer, epoch_date(day), epoch_date(day))
        tag = "" if customer is None else ", customer_id"
        statements += [
            f"SELECT count(latency) AS total, {LATENCY_AGGREGATES} INTO {DAILY_MEASUREMENT}"
            f" FROM {MEASUREMENT} WHERE {own} GROUP BY time(1d){tag}",
            f"SELECT count(latency) AS n INTO {DAILY_MEASUREMENT} FROM {MEASUREMENT}"
            f" WHERE {own} GROUP BY time(1d){tag}, status_class",
        ]
    return "; ".join(statements)


def _per_customer_day(statement: list[Series]) -> dict[tuple[str, int], int]:
    """{(customer, epoch): value} of a one-field statement grouped by customer_id."""
    found = {}
    for series in statement:
        customer = series.get("tags", {}).get("customer_id", EVERYONE)
        for epoch, value in series.get("values", []):
            if value is not None:
                found[customer, int(epoch)] = int(value)
    return found


def read_marks(statement: list[Series]) -> dict[str, int]:
    """{customer: dirty mark} from marks_query's answer (one day)."""
    return {c: mark for (c, _), mark in _per_customer_day(statement).items() if c}


def to_check(counts: list[Series], stored: Stored, *, rebuild: bool) -> dict[int, list[str]]:
    """The customers of each day (`counts`: count … GROUP BY time(1d), customer_id) whose
    rollup is not current, or all with `rebuild`; a day listed without customers needs only
    its rollup of all customers together rebuilt (every build builds that one)."""
    wanted: dict[int, list[str]] = {}
    everyone: dict[int, int] = {}
    for (customer, day), n in sorted(_per_customer_day(counts).items()):
        everyone[day] = everyone.get(day, 0) + n
        if rebuild or stored.current(customer, day, n) is None:
            wanted.setdefault(day, []).append(customer)
    for day, n in everyone.items():
        if rebuild or stored.current(EVERYONE, day, n) is None:
            wanted.setdefault(day, [])
    return dict(sorted(wanted.items()))


class Rollups:
    """Builds the rollups of closed days with one InfluxDB client (blocking)."""

    def __init__(self, client: InfluxClient, *, now: Callable[[], datetime] = utc_now) -> None:
        self._client = client
        self._now = now

    def closed_before(self) -> int:
        """The first second (epoch) of the first day that is not closed."""
        return day_ns(live_from(self._now())) // NS_PER_SECOND

    def scan(self, since: int | None = None) -> dict[int, DayState]:
        query = scan_query(since)
        return read_scan(self._client.query(query, timeout=SLOW_QUERY_TIMEOUT)[0])

    def check(self, *, rebuild: bool = False) -> dict[int, list[str]]:
        """Every closed customer-day whose rollup is not current (see is_current), or every
        one with requests with `rebuild`: what the marks may not tell (days stored by an
        earlier version, another writer). Reads every request once."""
        (first,) = self._client.query(f"SELECT first(latency) FROM {MEASUREMENT}")
        if not first:
            return {}
        last_closed = live_from(self._now()) - timedelta(days=1)
        span = days_where(epoch_date(int(first[0]["values"][0][0])), last_closed)
        counts, rows, classes = self._client.query(
            f"SELECT count(latency) FROM {MEASUREMENT} WHERE {span}"
            " GROUP BY time(1d), customer_id fill(none); "
            + "; ".join(_stored_statements("", "", span)),
            timeout=SLOW_QUERY_TIMEOUT,
        )
        return to_check(counts, _stored(rows, classes), rebuild=rebuild)

    def build(self, day: int, customers: list[str]) -> None:
        """Build one day's rollups of `customers`, then the day's rollup of all customers
        together, each followed by the digest of the marks read before anything was computed
        (a write meanwhile has marked its day anew: the rollup is not current, and the day
        is built again). The one of all customers sorts the whole day: if it fails, the
        customers' stay done, and `logpipe rollup` finds it not current."""
        (answer,) = self._client.query(marks_query(day), timeout=SLOW_QUERY_TIMEOUT)
        marks = read_marks(answer)
        for start in range(0, len(customers), CUSTOMERS_PER_QUERY):
            part = customers[start : start + CUSTOMERS_PER_QUERY]
            self._client.query(build_query(day, part), write=True, timeout=SLOW_QUERY_TIMEOUT)
        if customers:
            self._write_covered(day, customers, marks)
        self._client.query(build_query(day, [None]), write=True, timeout=SLOW_QUERY_TIMEOUT)
        self._write_covered(day, [EVERYONE], marks)

    def _write_covered(self, day: int, customers: list[str], marks: dict[str, int]) -> None:
        """Store, after their statistics, the digest of the marks each rollup covers."""
        covered = {c: marks_digest(covered_marks(c, marks)) for c in customers}
        self._client.write("\n".join(covered_lines(day, covered)).encode())

    def build_all(self, wanted: dict[int, list[str]]) -> list[date]:
        """Build every day of `wanted`, oldest first. A day that fails is logged and left
        for later, not in the way of the others; returns those days."""
        failed = []
        for day, customers in sorted(wanted.items()):
            try:
                self.build(day, customers)
            except Exception as exc:  # one bad day must not stop the rest
                log.warning("rollups of %s not built: %s", epoch_date(day), exc)
                failed.append(epoch_date(day))
        return failed


def run(settings: Settings, *, rebuild: bool = False) -> tuple[int, int, float]:
    """Build now every closed customer-day whose rollup is not current (with `rebuild`,
    every closed customer-day). Returns the days and customer-days built, and the seconds
    it took."""
    started = time.perf_counter()
    with InfluxClient(settings) as client:
        version = client.ping()
        if not supported(version):
            raise ConfigError(
                f"InfluxDB {version} has no SELECT … INTO: rollups need InfluxDB 1.x "
                "(without them the API reads the requests)"
            )
        rollups = Rollups(client)
        wanted = rollups.check(rebuild=rebuild)
        failed = rollups.build_all(wanted)
    if failed:
        shown = ", ".join(str(day) for day in failed[:5]) + (" …" if len(failed) > 5 else "")
        raise LogpipeError(
            f"the rollups of {len(failed)} days were not built ({shown}); see above"
        )
    built = sum(len(customers) for customers in wanted.values())
    return len(wanted), built, time.perf_counter() - started
