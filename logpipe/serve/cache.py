"""The API's two caches, each with its bound stated here and nowhere else.

- ResponseCache: whole rendered answers, in front of FastAPI (serve._Api). Fresh for `ttl`
  seconds from the moment their computation began, then served for another `ttl` while one
  refresh runs: an answer is never older than 2 * ttl (LOGPIPE_CACHE_TTL). At most
  `max_entries` answers and as many learned requests. What it saves: under the API
  benchmark's load, FastAPI's routing, dependency injection and validation took ~90 % of a
  worker's time (py-spy), and InfluxDB's time for repeated questions. It sits before even
  FastAPI's outer layers (error pages, telemetry, body limit): as a middleware inside them
  it served 1.47 of the bare app's requests/s, outside them 1.75 (bench/RESULTS.md).
- ClosedDays: the statistics of closed days (see stats.py), by customer and day, kept `ttl`
  seconds (LOGPIPE_HISTORY_CACHE_TTL): closed days change only by a backfill, so a refresh
  of an answer asks InfluxDB for the live days only. At most `max_entries` days.

Each worker process has its own; nothing is shared between processes (every answer comes
from this worker's own queries, so workers can only differ by the staleness above).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from starlette.requests import Request

from logpipe.serve.auth import ApiKey, bearer_secret, find_key
from logpipe.serve.metrics import CACHE_HITS
from logpipe.stats import DayStats

Answer = tuple[int, bytes]
"""A rendered answer: HTTP status and JSON body."""
MAX_QUERY_BYTES = 256
"""Longer query strings are not learned: FastAPI ignores unknown parameters, so a client
could otherwise fill the table with padding (uvicorn accepts 64 KiB)."""


def drop_oldest(entries: dict[Any, Any], limit: int) -> None:
    """Remove the entries inserted first until at most `limit` are left."""
    while len(entries) > limit:
        del entries[next(iter(entries))]


@dataclass
class _Entry:
    task: asyncio.Future[Answer]
    """The answer, or its computation while it runs."""
    compute: Callable[[], Awaitable[Answer]]
    """How to compute it again (a refresh)."""
    fresh_until: float = float("inf")
    refresh: asyncio.Future[Answer] | None = field(default=None)


class _Learned(NamedTuple):
    key: Hashable
    """The answer's key."""
    customer_id: str | None
    """Whom the answer is about (None: all customers, for admin keys only)."""
    route: Any
    """FastAPI's route, for the metrics' route label."""


class ResponseCache:
    """Rendered answers by key, with one computation per key at a time (concurrent requests
    share it), and a front door: an ASGI middleware (`around`) that answers a request it
    has seen validated before, by its exact path and query string and the day it was asked
    on, while that answer may be served (fresh, or stale while its refresh runs), after the
    same access check FastAPI's route makes. Everything else (a new request, an answer too
    old to serve, a caller to refuse) goes on to FastAPI, so the two paths cannot disagree.
    Failures are never kept; a `ttl` of 0 turns caching and sharing off."""

    def __init__(
        self,
        ttl: float,
        *,
        keys: list[ApiKey] | None,
        today: Callable[[], date],
        cache_control: str,
        max_entries: int = 10_000,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`jitter`: lifetimes are up to that fraction shorter than `ttl`, never longer, so
        answers computed together do not all send their refreshes in the same instant."""
        self.ttl = ttl
        self._keys = keys
        self._today = today
        self._headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", cache_control.encode()),
        ]
        self._max_entries = max_entries
        self._jitter = jitter
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._learned: dict[tuple[str, str, bytes, date], _Learned] = {}
        self._app: Any = None

    async def get(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[Answer]],
        *,
        waited: Callable[[], Awaitable[Answer]] | None = None,
    ) -> tuple[Answer, bool]:
        """(answer, True if no computation was started for this request). `waited`, when
        given, runs instead of `compute` for a computation this request waits for (under the
        caller's limit, say); refreshes run `compute`."""
        if self.ttl <= 0:
            return await (waited or compute)(), False
        entry = self._entries.get(key)
        if entry is not None:
            if not entry.task.done():  # being computed: wait for the same answer
                return await asyncio.shield(entry.task), True
            answer = self.kept(key)
            if answer is not None:
                return answer, True
        entry = _Entry(self._start(key, None, waited or compute), compute)
        self._entries[key] = entry
        drop_oldest(self._entries, self._max_entries)
        return await asyncio.shield(entry.task), False

    def kept(self, key: Hashable) -> Answer | None:
        """The computed answer of `key` if it may be served: fresh, or stale for up to
        another ttl while one refresh runs (started here)."""
        entry = self._entries.get(key)
        if entry is None or not entry.task.done():
            return None
        now = self._clock()
        if now >= entry.fresh_until + self.ttl:
            return None
        if now >= entry.fresh_until and entry.refresh is None:
            entry.refresh = self._start(key, entry, entry.compute)
        return entry.task.result()

    def fresh(self, key: Hashable) -> Answer | None:
        """The answer kept for `key` if it is computed and fresh, without computing anything."""
        entry = self._entries.get(key)
        if entry is None or not entry.task.done() or self._clock() >= entry.fresh_until:
            return None
        return entry.task.result()

    def _start(
        self, key: Hashable, stale: _Entry | None, compute: Callable[[], Awaitable[Answer]]
    ) -> asyncio.Future[Answer]:
        started = self._clock()
        # A task of its own, so a client that goes away does not cancel it for the others.
        task = asyncio.ensure_future(compute())
        task.add_done_callback(lambda done: self._settle(key, stale, started, done))
        return task

    def _settle(
        self, key: Hashable, stale: _Entry | None, started: float, task: asyncio.Future[Answer]
    ) -> None:
        failed = task.cancelled() or task.exception() is not None
        # fresh from when the computation began: the points it read are at least that new
        fresh_until = started + self.ttl * (1 - self._jitter * random.random())
        if stale is not None:  # a background refresh
            stale.refresh = None
            if not failed and self._entries.get(key) is stale:
                stale.task, stale.fresh_until = task, fresh_until
            return
        entry = self._entries.get(key)
        if entry is None or entry.task is not task:
            return
        if failed:
            del self._entries[key]
        else:
            entry.fresh_until = fresh_until

    # The front door.

    def around(self, app: Any) -> ResponseCache:
        """The middleware factory for `app.add_middleware`."""
        self._app = app
        return self

    @staticmethod
    def _request(scope: Mapping[str, Any], day: date) -> tuple[str, str, bytes, date]:
        return scope.get("root_path", ""), scope["path"], scope["query_string"], day

    def learn(self, request: Request, key: Hashable, customer_id: str | None, day: date) -> None:
        """`request`, validated by FastAPI on `day` (the day its dates were read on), has
        its answer kept under `key`."""
        scope = request.scope
        if self.ttl <= 0 or len(scope["query_string"]) > MAX_QUERY_BYTES:
            return
        self._learned[self._request(scope, day)] = _Learned(key, customer_id, scope.get("route"))
        drop_oldest(self._learned, self._max_entries)

    def _allowed(self, scope: Mapping[str, Any], customer_id: str | None) -> bool:
        if self._keys is None:
            return True
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        secret = bearer_secret(header.decode("latin-1"))
        key = find_key(self._keys, secret) if secret else None
        return key is not None and key.may_see(customer_id)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            learned = self._learned.get(self._request(scope, self._today()))
            # The caller is checked before the answer is looked at: a refused one costs the
            # same whether that answer is fresh or not.
            if learned is not None and self._allowed(scope, learned.customer_id):
                answer = self.kept(learned.key)
                if answer is not None:
                    scope["route"] = learned.route
                    CACHE_HITS.inc()
                    status, body = answer
                    length = (b"content-length", str(len(body)).encode())
                    start = {"status": status, "headers": [length, *self._headers]}
                    await send({"type": "http.response.start", **start})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self._app(scope, receive, send)


class ClosedDays:
    """The statistics of closed days by (customer or None, day); a day without requests is
    kept too, as None. Entries of one answer expire together, `ttl` seconds after they were
    asked for, so one query renews them."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._days: dict[tuple[str | None, date], tuple[float, DayStats | None]] = {}

    def known(self, customer_id: str | None, days: list[date]) -> dict[date, DayStats | None]:
        """The days of `days` held and not expired, with their statistics."""
        now = self._clock()
        found = {}
        for day in days:
            entry = self._days.get((customer_id, day))
            if entry is not None and now < entry[0]:
                found[day] = entry[1]
        return found

    def keep(
        self, customer_id: str | None, days: dict[date, DayStats | None], asked: float
    ) -> None:
        """Keep the days of one answer, whose query was sent at `asked` (by the clock)."""
        if self.ttl <= 0:
            return
        for day, stats in days.items():
            self._days[customer_id, day] = (asked + self.ttl, stats)
        drop_oldest(self._days, self._max_entries)
