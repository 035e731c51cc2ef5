"""`logpipe rollup`: exact statistics of closed days, stored beside the requests, so the API
reads a busy customer's month in a few milliseconds instead of sorting every point of it
(InfluxDB 1.x sorts for MEDIAN and PERCENTILE at about a microsecond a point, each).

One point per customer and UTC day in ``requests_daily``, at the day's first instant:

    requests_daily,customer_id=cust_1 average=…,median=…,p99=…,dirty=…i,covered=…i
    requests_daily,customer_id=cust_1,status_class=5xx n=…i
    requests_daily complete=1i          (no customer: every customer of the day has a rollup)

The aggregates are computed inside InfluxDB (``SELECT … INTO``) from the requests, by the very
expressions the API would use, so a rollup says exactly what the raw points say. The processor
writes a new random `dirty` mark for each (customer, day) of every batch, in the batch itself;
a build reads the marks first and stores them as `covered` after its aggregates. A rollup is
current while `covered == dirty`: a backfill into a closed day changes the mark, the API goes
back to the raw points for that customer and day, and the next build catches up. A mark
overwritten before a build read it is harmless: the build sees the points written with it.

Only closed days are built (see stats.live_from), and when following, only days whose marks
have not changed for a whole interval and only while the processor has caught up: building a
day costs InfluxDB about as much as ingesting it again, and must not slow an ingest down.
InfluxDB 2.x and 3.x have no ``SELECT … INTO``: there the API always reads the raw points.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from logpipe.config import DAILY_MEASUREMENT, MEASUREMENT, Settings
from logpipe.errors import LogpipeError
from logpipe.influx import InfluxClient, Series
from logpipe.schema import NS_PER_SECOND, escape_tag, influxql_string
from logpipe.stats import LATENCY_AGGREGATES, live_from

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
CAUGHT_UP_BYTES = 1 << 20
"""The processor counts as caught up when it is less than this far behind its inputs."""
CUSTOMERS_PER_QUERY = 50
"""Customers built by one /query request: its time must stay well inside the timeout."""
BUILD_TIMEOUT = 300.0
"""Seconds one build request may take (a busy day of 50 customers)."""


def new_token() -> int:
    """A random mark: two batches never write the same one."""
    return random.getrandbits(62) + 1


def supported(version: str) -> bool:
    """Whether the server has ``SELECT … INTO`` (InfluxDB 1.x)."""
    return version.startswith("1.")


def marker_lines(pairs: Iterable[tuple[str, int]], token: int) -> list[str]:
    """The `dirty` marks of the (customer id, day start in seconds) pairs a batch writes."""
    return [
        f"{DAILY_MEASUREMENT},customer_id={escape_tag(customer)} dirty={token}i"
        f" {day * NS_PER_SECOND}"
        for customer, day in sorted(pairs)
    ]


@dataclass(frozen=True)
class DayState:
    """The rollup state of one day: (dirty, covered) per customer, and whether the day is
    complete (every customer with requests that day has a rollup, current or not)."""

    marks: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    complete: bool = False

    def stale(self) -> list[str]:
        """Customers whose rollup is missing or older than their mark."""
        return sorted(c for c, (dirty, covered) in self.marks.items() if dirty != covered)


def _day_where(day: int) -> str:
    start = day * NS_PER_SECOND
    return f"time >= {start} AND time < {start + SECONDS_PER_DAY * NS_PER_SECOND}"


def scan_query() -> str:
    """Every day's marks and completeness."""
    return (
        f"SELECT dirty, covered, complete FROM {DAILY_MEASUREMENT}"
        " GROUP BY customer_id, status_class"
    )


def read_scan(statement: list[Series]) -> dict[int, DayState]:
    """scan_query's answer (epoch=s) as {day start: DayState}."""
    marks: dict[int, dict[str, tuple[int | None, int | None]]] = {}
    complete: set[int] = set()
    for series in statement:
        tags = series.get("tags", {})
        if tags.get("status_class"):
            continue
        customer = tags.get("customer_id", "")
        columns = series["columns"]
        for values in series.get("values", []):
            row = dict(zip(columns, values, strict=True))
            day = int(row["time"])
            if not customer:
                complete.update([day] if row.get("complete") else [])
            else:
                marks.setdefault(day, {})[customer] = (row.get("dirty"), row.get("covered"))
    return {
        day: DayState(marks.get(day, {}), day in complete)
        for day in sorted(marks.keys() | complete)
    }


def to_build(
    days: dict[int, DayState], *, before: int, previous: dict[int, DayState] | None = None
) -> dict[int, list[str]]:
    """The customers to build on each closed day (starting before `before`): the stale ones,
    on days that are stale or not complete. With `previous` (the last scan), only days that
    have not changed since, so a day still being written is left for later."""
    wanted = {}
    for day, state in days.items():
        if day >= before or (previous is not None and previous.get(day) != state):
            continue
        if state.stale() or not state.complete:
            wanted[day] = state.stale()
    return wanted


def build_query(day: int, customers: Collection[str]) -> str:
    """InfluxQL that reads the day's marks, then computes the customers' rollups INTO the
    daily measurement (marks first: a batch landing meanwhile leaves the rollup stale)."""
    where = _day_where(day)
    statements = [f"SELECT dirty FROM {DAILY_MEASUREMENT} WHERE {where} GROUP BY customer_id"]
    for customer in customers:
        own = f"customer_id = {influxql_string(customer)} AND {where}"
        statements += [
            f"SELECT {LATENCY_AGGREGATES} INTO {DAILY_MEASUREMENT} FROM {MEASUREMENT}"
            f" WHERE {own} GROUP BY time(1d), customer_id",
            f"SELECT count(latency) AS n INTO {DAILY_MEASUREMENT} FROM {MEASUREMENT}"
            f" WHERE {own} GROUP BY time(1d), customer_id, status_class",
        ]
    return "; ".join(statements)


def read_marks(statement: list[Series]) -> dict[str, int]:
    """{customer: dirty mark} from build_query's first statement."""
    marks = {}
    for series in statement:
        customer = series.get("tags", {}).get("customer_id", "")
        for _, dirty in series.get("values", []):
            if customer and dirty is not None:
                marks[customer] = int(dirty)
    return marks


def covered_lines(day: int, marks: dict[str, int], *, complete: bool) -> list[str]:
    """Each built customer's `covered` mark, and the day's `complete` mark when due."""
    lines = [
        f"{DAILY_MEASUREMENT},customer_id={escape_tag(c)} covered={mark}i {day * NS_PER_SECOND}"
        for c, mark in sorted(marks.items())
    ]
    if complete:
        lines.append(f"{DAILY_MEASUREMENT} complete=1i {day * NS_PER_SECOND}")
    return lines


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Rollups:
    """Builds the rollups of closed days with one InfluxDB client (blocking)."""

    def __init__(
        self,
        client: InfluxClient,
        *,
        now: Callable[[], datetime] = _utc_now,
        token: Callable[[], int] = new_token,
    ) -> None:
        self._client = client
        self._now = now
        self._token = token

    def closed_before(self) -> int:
        """The first instant (epoch seconds) of the first day that is not closed."""
        first_live = live_from(self._now())
        return int(datetime(*first_live.timetuple()[:3], tzinfo=timezone.utc).timestamp())

    def scan(self) -> dict[int, DayState]:
        return read_scan(self._client.query(scan_query())[0])

    def unmarked_days(self) -> list[int]:
        """Closed days with requests but no marks at all: written before rollups existed."""
        (first,) = self._client.query(f"SELECT first(latency) FROM {MEASUREMENT}")
        if not first:
            return []
        start = int(first[0]["values"][0][0]) // SECONDS_PER_DAY * SECONDS_PER_DAY
        before = self.closed_before()
        if start >= before:
            return []
        (counts,) = self._client.query(
            f"SELECT count(latency) FROM {MEASUREMENT} WHERE time >= {start * NS_PER_SECOND}"
            f" AND time < {before * NS_PER_SECOND} GROUP BY time(1d) fill(none)"
        )
        marked = self.scan()
        return [
            int(day) for one in counts for day, _ in one.get("values", []) if day not in marked
        ]

    def build(self, day: int, customers: list[str], state: DayState) -> int:
        """Build the day for `customers`, and for every customer with requests that day
        when it is not complete yet. Returns the customers built."""
        if not state.complete:
            (found,) = self._client.query(
                f"SELECT count(latency) FROM {MEASUREMENT} WHERE {_day_where(day)}"
                " GROUP BY customer_id"
            )
            everyone = {one["tags"]["customer_id"] for one in found if one.get("values")}
            unmarked = sorted(everyone - state.marks.keys())
            if unmarked:  # written before rollups existed: mark them, then build as usual
                lines = marker_lines(((c, day) for c in unmarked), self._token())
                self._client.write("\n".join(lines).encode())
            customers = sorted(everyone | set(customers))
        built = 0
        for start in range(0, len(customers), CUSTOMERS_PER_QUERY):
            part = customers[start : start + CUSTOMERS_PER_QUERY]
            answer = self._client.query(build_query(day, part), write=True, timeout=BUILD_TIMEOUT)
            marks = {c: mark for c, mark in read_marks(answer[0]).items() if c in part}
            built += len(marks)
            last = start + CUSTOMERS_PER_QUERY >= len(customers)
            complete = last and not state.complete and built == len(customers)
            self._client.write("\n".join(covered_lines(day, marks, complete=complete)).encode())
        return built

    def catch_up(
        self, previous: dict[int, DayState] | None = None, *, unmarked: bool = False
    ) -> tuple[dict[int, DayState], int, int]:
        """Build what to_build finds (with `unmarked`, also the days written before rollups
        existed). Returns the scan (for the next call's `previous`), days and customer-days
        built."""
        days = self.scan()
        wanted = to_build(days, before=self.closed_before(), previous=previous)
        if unmarked:
            wanted.update({day: [] for day in self.unmarked_days()})
        built = 0
        for day, customers in sorted(wanted.items()):
            built += self.build(day, customers, days.get(day, DayState()))
        return days, len(wanted), built


class Follower(threading.Thread):
    """Keeps the rollups current while the processor follows its inputs: every
    `rollup_interval`, when the processor has caught up, builds the closed days whose marks
    have not changed since the last look."""

    def __init__(self, settings: Settings, lag_bytes: Callable[[], int]) -> None:
        super().__init__(name="logpipe-rollup", daemon=True)
        self._settings = settings
        self._lag_bytes = lag_bytes
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Stop soon; a build cut short is harmless (its customers simply stay stale)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=2)

    def run(self) -> None:
        previous: dict[int, DayState] | None = None
        with InfluxClient(self._settings) as client:
            rollups = Rollups(client)
            while not self._stop_event.wait(self._settings.rollup_interval):
                if self._lag_bytes() >= CAUGHT_UP_BYTES:
                    previous = None  # quiet must be seen again once caught up
                    continue
                try:
                    previous, days, built = rollups.catch_up(previous)
                except LogpipeError as exc:  # InfluxDB away: the next round tries again
                    log.warning("rollups: %s", exc)
                    previous = None
                    continue
                if days:
                    log.info("rollups: built %d customer-days of %d days", built, days)


def run(settings: Settings) -> tuple[int, int, float]:
    """Build every closed day's rollups now, including days written before rollups existed.
    Returns days and customer-days built, and the seconds it took."""
    started = time.perf_counter()
    with InfluxClient(settings) as client:
        version = client.ping()
        if not supported(version):
            raise LogpipeError(
                f"InfluxDB {version} has no SELECT … INTO: rollups need InfluxDB 1.x "
                "(the API reads the raw points without them)"
            )
        _, days, built = Rollups(client).catch_up(unmarked=True)
    return days, built, time.perf_counter() - started
