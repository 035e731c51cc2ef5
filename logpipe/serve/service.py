"""StatsService: what the API answers, computed without HTTP (the web module routes,
validates and renders around it).

The whole read path, from a request to InfluxDB:

    request ─ ResponseCache (serve/cache.py: whole answers, never older than 2 * cache_ttl;
            │   with several workers, each answer computed by one of them: SharedAnswers)
            ─ FastAPI route (serve/__init__.py: access, validation, per-key limit, JSON)
            ─ StatsService.stats()
                ─ ClosedDays (serve/cache.py: closed days, never older than
                  history_cache_ttl)
                ─ InfluxDB, one round trip: closed days from their rollups where
                  rollup.is_current says so, live days from the requests; a second one
                  for closed days whose rollup is not current.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from logpipe.config import Settings
from logpipe.errors import InfluxRejected, InfluxUnavailable
from logpipe.influx import AsyncInfluxClient
from logpipe.rollup import read_query, supported
from logpipe.serve.cache import ClosedDays
from logpipe.serve.metrics import QUERY_SECONDS
from logpipe.stats import (
    DayStats,
    Query,
    customers_query,
    live_from,
    nothing,
    stats_query,
    together,
    utc_now,
)

T = TypeVar("T")

QUERY_SLOTS = 2
"""InfluxDB queries one worker runs at once: bursts of refreshes must not take the cores
from the requests being answered, and overload queues here, bounded by the query timeout,
not in InfluxDB."""


class StatsService:
    """Daily statistics of one customer or all, and the customers seen, from one InfluxDB.
    `now` is the wall clock (an aware UTC datetime: which days are closed), `clock` the
    monotonic one the closed-days cache expires by."""

    def __init__(
        self,
        client: AsyncInfluxClient,
        settings: Settings,
        *,
        now: Callable[[], datetime] = utc_now,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.failure_status = settings.failure_status
        self._query_timeout = settings.query_timeout
        closed_ttl = settings.history_cache_ttl if settings.cache_ttl > 0 else 0.0
        self._closed = ClosedDays(closed_ttl, clock=clock)
        self._now = now
        self._clock = clock
        self._slots = asyncio.Semaphore(QUERY_SLOTS)
        self._rollups: bool | None = None  # asked of the server once, see _rollups_readable

    def today(self) -> date:
        return self._now().date()

    async def stats(self, customer_id: str | None, first: date, last: date) -> list[DayStats]:
        """The days first..last with requests, of one customer or (None) all together."""
        wanted = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        live = live_from(self._now())
        closed = [day for day in wanted if day < live]
        known = self._closed.known(customer_id, closed)
        missing = [day for day in closed if day not in known]
        asked = self._clock()
        fetched = await self._fetch(customer_id, missing, [day for day in wanted if day >= live])
        self._closed.keep(customer_id, {day: fetched.get(day) for day in missing}, asked)
        found = {**known, **fetched}
        return [stats for day in wanted if (stats := found.get(day)) is not None]

    async def _fetch(
        self, customer_id: str | None, closed: list[date], live: list[date]
    ) -> dict[date, DayStats]:
        """The statistics of the `closed` and `live` days that have requests, in one round
        trip: closed days from their rollups where those are current, the others from the
        requests. Closed days whose rollup is not current take a second round trip."""
        threshold = self.failure_status
        # rollups count failures by status class: a threshold inside a class needs the points
        rolled = bool(closed) and threshold % 100 == 0 and await self._rollups_readable()
        raw = live if rolled else closed + live
        from_rollups = (
            read_query(customer_id, closed[0], closed[-1], failure_status=threshold)
            if rolled
            else nothing(({}, []))
        )
        from_requests = (
            stats_query(customer_id, raw[0], raw[-1], failure_status=threshold)
            if raw
            else nothing({})
        )
        (current, behind), fetched = await self.ask(together(from_rollups, from_requests))
        found: dict[date, DayStats] = {**current, **fetched}
        if behind:  # usually the last closed day or two: one span, not one query per day
            span = stats_query(customer_id, behind[0], behind[-1], failure_status=threshold)
            from_behind: dict[date, DayStats] = await self.ask(span)
            found.update(from_behind)
        return found

    async def customers(
        self, customer_id: str | None, first: date, last: date, *, limit: int, offset: int
    ) -> list[tuple[str, int]]:
        """(customer, requests on first..last) in id order: every customer seen, or only
        `customer_id`."""
        return await self.ask(
            customers_query(customer_id, first, last, limit=limit, offset=offset)
        )

    async def influxdb_version(self) -> str:
        return await self._client.ping()

    async def ask(self, query: Query[T]) -> T:
        """Run `query` in one of the worker's QUERY_SLOTS (one of no statement: nowhere)."""
        if not query.statements:
            return query.answer([])
        try:
            await asyncio.wait_for(self._slots.acquire(), self._query_timeout)
        except asyncio.TimeoutError:
            raise InfluxUnavailable("every InfluxDB query slot stayed busy") from None
        started = time.perf_counter()
        try:
            answer: list[Any] = await self._client.query(query.text)
        except InfluxRejected:
            # Before the processor's first run there is no database: no requests, not an
            # error. (InfluxDB 1.6 says "not executed" rather than "database not found" when
            # a query has several statements, hence the question.)
            if await self._client.database_exists():
                raise
            answer = []
        finally:
            self._slots.release()
            QUERY_SECONDS.observe(time.perf_counter() - started)
        return query.answer(answer)

    async def _rollups_readable(self) -> bool:
        """Whether the server can hold rollups (only 1.x has SELECT … INTO)."""
        if self._rollups is None:
            self._rollups = supported(await self._client.ping())
        return self._rollups
