"""`logpipe rollup`: exact statistics of closed days, stored beside the requests, so the API
reads a busy customer's month in milliseconds instead of sorting every point of it (InfluxDB
1.x sorts for MEDIAN and PERCENTILE at about a microsecond a point, each).

One point per customer and UTC day in ``requests_daily``, at the day's first instant, and
one for all customers together (no customer_id: `/stats`), built with each day:

    requests_daily,customer_id=cust_1 total=…i,average=…,median=…,p99=…,dirty=…i,covered=…i
    requests_daily,customer_id=cust_1,status_class=5xx n=…i
    requests_daily total=…i,average=…,median=…,p99=…
    requests_daily,status_class=5xx n=…i

The statistics are computed inside InfluxDB (``SELECT … INTO``) from the requests, by the
very expressions the API would use. The API trusts a rollup only while its `total` equals the
requests it counts for that day now (see stats.rollup_days), so a rollup that is behind —
a late line, a writer of another version, two builds racing — is never served.

The marks only decide what to build, cheaply: the processor writes a new random `dirty` for
each (customer, day) of every batch, in the batch itself; a build reads the marks first and
stores them as `covered` after its statistics, so `dirty != covered` means "build me".

Only closed days are built (see stats.live_from), and when following, only days whose marks
have not changed for a whole interval and only while the processor has caught up: building a
day costs InfluxDB about as much as ingesting it, and must not slow an ingest down.
InfluxDB 2.x and 3.x have no ``SELECT … INTO``: there the API always reads the requests.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from logpipe.config import DAILY_MEASUREMENT, MEASUREMENT, Settings
from logpipe.errors import ConfigError, LogpipeError
from logpipe.influx import InfluxClient, Series
from logpipe.schema import NS_PER_SECOND, escape_tag, influxql_string
from logpipe.stats import (
    LATENCY_AGGREGATES,
    day_ns,
    days_where,
    epoch_date,
    live_from,
    rows_by_time,
    utc_now,
)

log = logging.getLogger(__name__)

CAUGHT_UP_BYTES = 1 << 20
"""The processor counts as caught up when it is less than this far behind its inputs."""
CUSTOMERS_PER_QUERY = 50
"""Customers built by one /query request: its time must stay well inside the timeout."""
SLOW_QUERY_TIMEOUT = 300.0
"""Seconds a build, a scan or a check may take (a busy day, a long history)."""


def new_token() -> int:
    """A random mark: two batches never write the same one."""
    return random.getrandbits(62) + 1


def supported(version: str) -> bool:
    """Whether the server has ``SELECT … INTO`` (InfluxDB 1.x)."""
    return version.startswith("1.")


def _mark_lines(field_name: str, marks: Iterable[tuple[str, int, int]]) -> list[str]:
    return [
        f"{DAILY_MEASUREMENT},customer_id={escape_tag(customer)} {field_name}={mark}i"
        f" {day * NS_PER_SECOND}"
        for customer, day, mark in sorted(marks)
    ]


def marker_lines(pairs: Iterable[tuple[str, int]], token: int) -> list[str]:
    """The `dirty` marks of the (customer id, day start in seconds) pairs a batch writes."""
    return _mark_lines("dirty", ((customer, day, token) for customer, day in pairs))


def covered_lines(day: int, marks: dict[str, int]) -> list[str]:
    """The `covered` marks of the customers a build of `day` covered: the marks it read."""
    return _mark_lines("covered", ((customer, day, mark) for customer, mark in marks.items()))


@dataclass(frozen=True)
class DayState:
    """The marks of one day: (dirty, covered) per customer."""

    marks: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)

    def stale(self) -> list[str]:
        """Customers written to since their last build (or never built)."""
        return sorted(c for c, (dirty, covered) in self.marks.items() if dirty != covered)


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
    together) INTO the daily measurement: the total in the same statement as the latencies
    (the API checks it), and the counts by status class (they must add up to the total)."""
    where = days_where(epoch_date(day), epoch_date(day))
    statements = []
    for customer in customers:
        own = (
            where if customer is None else f"customer_id = {influxql_string(customer)} AND {where}"
        )
        tag = "" if customer is None else ", customer_id"
        statements += [
            f"SELECT count(latency) AS total, {LATENCY_AGGREGATES} INTO {DAILY_MEASUREMENT}"
            f" FROM {MEASUREMENT} WHERE {own} GROUP BY time(1d){tag}",
            f"SELECT count(latency) AS n INTO {DAILY_MEASUREMENT} FROM {MEASUREMENT}"
            f" WHERE {own} GROUP BY time(1d){tag}, status_class",
        ]
    return "; ".join(statements)


def _per_customer_day(statement: list[Series]) -> dict[tuple[str, int], int]:
    """{(customer, epoch): value} of a one-field statement grouped by customer_id; the
    customer of a series without one (all customers together) is ""."""
    found = {}
    for series in statement:
        customer = series.get("tags", {}).get("customer_id", "")
        for epoch, value in series.get("values", []):
            if value is not None:
                found[customer, int(epoch)] = int(value)
    return found


def read_marks(statement: list[Series]) -> dict[str, int]:
    """{customer: dirty mark} from marks_query's answer (one day)."""
    return {c: mark for (c, _), mark in _per_customer_day(statement).items() if c}


def behind(counts: list[Series], totals: list[Series]) -> dict[int, list[str]]:
    """The customers of each day whose rollup total (`totals`: SELECT total … GROUP BY
    customer_id) differs from the requests counted (`counts`: count … GROUP BY time(1d),
    customer_id)."""
    rolled = _per_customer_day(totals)
    wanted: dict[int, list[str]] = {}
    for (customer, day), n in sorted(_per_customer_day(counts).items()):
        if rolled.get((customer, day)) != n:
            wanted.setdefault(day, []).append(customer)
    return wanted


def everyone_behind(counts: list[Series], totals: list[Series]) -> list[int]:
    """The days whose rollup of all customers together (`totals`) differs from the requests
    counted (`counts`: count … GROUP BY time(1d)): `behind`, of the customer ""."""
    return sorted(behind(counts, totals))


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

    def check(self) -> dict[int, list[str]]:
        """Every closed customer-day whose rollup is missing or behind the requests: what
        the marks may not tell (days stored by an earlier version, a build that raced a
        write). Reads every request once."""
        (first,) = self._client.query(f"SELECT first(latency) FROM {MEASUREMENT}")
        if not first:
            return {}
        last_closed = live_from(self._now()) - timedelta(days=1)
        span = days_where(epoch_date(int(first[0]["values"][0][0])), last_closed)
        # the totals grouped by customer_id include those of all customers together ("")
        counts, totals, day_counts = self._client.query(
            f"SELECT count(latency) FROM {MEASUREMENT} WHERE {span}"
            " GROUP BY time(1d), customer_id fill(none);"
            f" SELECT total FROM {DAILY_MEASUREMENT} WHERE {span} GROUP BY customer_id;"
            f" SELECT count(latency) FROM {MEASUREMENT} WHERE {span} GROUP BY time(1d) fill(none)",
            timeout=SLOW_QUERY_TIMEOUT,
        )
        wanted = behind(counts, totals)
        for day in everyone_behind(day_counts, totals):
            wanted.setdefault(day, [])  # every build of a day builds all customers' too
        return dict(sorted(wanted.items()))

    def build(self, day: int, customers: list[str]) -> None:
        """Build one day's rollups of `customers`, mark them covered with the marks read
        before anything was computed (a write meanwhile has marked its day anew, and the day
        is built again), then build the day's rollup of all customers together. That one
        sorts the whole day: if it fails, the customers' stay done, and `logpipe rollup`
        finds it behind."""
        (marks,) = self._client.query(marks_query(day), timeout=SLOW_QUERY_TIMEOUT)
        wanted = set(customers)
        covered = {c: mark for c, mark in read_marks(marks).items() if c in wanted}
        for start in range(0, len(customers), CUSTOMERS_PER_QUERY):
            part = customers[start : start + CUSTOMERS_PER_QUERY]
            self._client.query(build_query(day, part), write=True, timeout=SLOW_QUERY_TIMEOUT)
        if covered:
            self._client.write("\n".join(covered_lines(day, covered)).encode())
        self._client.query(build_query(day, [None]), write=True, timeout=SLOW_QUERY_TIMEOUT)

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


class Follower(threading.Thread):
    """Keeps the rollups current while the processor follows its inputs: every
    `rollup_interval`, when the processor has caught up, builds the stale customers of the
    closed days whose marks have not changed since the last look.

    The first look reads every day's marks (an earlier run may have left days stale); the
    next ones only the days from the first one this process has written to since, or that
    was still stale: the recent days, in the normal course, however long the history.
    `written_from()` gives that first day written to (epoch s), or None, and starts anew;
    without it (other processes write too) every look reads every day."""

    def __init__(
        self,
        settings: Settings,
        lag_bytes: Callable[[], int],
        written_from: Callable[[], int | None] | None = None,
    ) -> None:
        super().__init__(name="logpipe-rollup", daemon=True)
        self._settings = settings
        self._lag_bytes = lag_bytes
        self._written_from = written_from
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Stop soon; a build cut short is harmless (its customers simply stay stale)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=2)

    def run(self) -> None:
        previous: dict[int, DayState] = {}  # nothing is quiet before a second look
        everything = True
        due: int | None = None  # the first day the next look reads; None: nothing to read
        with InfluxClient(self._settings) as client:
            rollups = Rollups(client)
            while not self._stop_event.wait(self._settings.rollup_interval):
                if self._written_from is None:  # others write too: every look reads all
                    everything = True
                elif (written := self._written_from()) is not None:
                    due = written if due is None else min(due, written)
                if due is None and not everything:
                    continue
                if self._lag_bytes() >= CAUGHT_UP_BYTES:
                    previous = {}
                    continue
                try:
                    days = rollups.scan(None if everything else due)
                except Exception as exc:  # InfluxDB away, say: the next round tries again
                    log.warning("rollups: cannot read the marks: %s", exc)
                    previous = {}
                    continue
                wanted = to_build(days, before=rollups.closed_before(), previous=previous)
                previous = days
                everything = False
                # what stays stale (today, a day still written to, a build that fails) is
                # read again next time; the days built now once more, as current
                due = min((day for day, state in days.items() if state.stale()), default=None)
                if wanted:
                    failed = rollups.build_all(wanted)
                    log.info(
                        "rollups: built %d of %d days", len(wanted) - len(failed), len(wanted)
                    )


def run(settings: Settings) -> tuple[int, int, float]:
    """Build now every closed customer-day whose rollup is missing or behind the requests.
    Returns the days and customer-days built, and the seconds it took."""
    started = time.perf_counter()
    with InfluxClient(settings) as client:
        version = client.ping()
        if not supported(version):
            raise ConfigError(
                f"InfluxDB {version} has no SELECT … INTO: rollups need InfluxDB 1.x "
                "(without them the API reads the requests)"
            )
        rollups = Rollups(client)
        wanted = rollups.check()
        failed = rollups.build_all(wanted)
    if failed:
        shown = ", ".join(str(day) for day in failed[:5]) + (" …" if len(failed) > 5 else "")
        raise LogpipeError(
            f"the rollups of {len(failed)} days were not built ({shown}); see above"
        )
    built = sum(len(customers) for customers in wanted.values())
    return len(wanted), built, time.perf_counter() - started
