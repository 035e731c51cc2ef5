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

Each worker process has its own of both. With several workers, the ResponseCaches of one
`logpipe serve` also offer each other the answers they compute, through SharedAnswers: a
table in the server's private directory, keyed by a hash of the answer's key (the route and
every parameter the answer depends on). It halves InfluxDB's work for refreshes with two
workers, which set the API's p99 under load (bench/RESULTS.md). An answer taken from it
keeps the time its computation began, so the bound above holds whichever worker computed it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

from starlette.requests import Request

from logpipe.serve.auth import ApiKey, bearer_secret, find_key
from logpipe.serve.metrics import CACHE_HITS, SHARED_ANSWERS
from logpipe.stats import DayStats

log = logging.getLogger(__name__)

Answer = tuple[int, bytes]
"""A rendered answer: HTTP status and JSON body."""
SHARED_POLL_SECONDS = 0.01
MAX_SHARED_POLL_SECONDS = 0.1
"""A worker waiting for another's computation (SharedAnswers) asks again after 10 ms, then
twice as long each time up to 100 ms: a few reads a second per waiting answer."""
MAX_QUERY_BYTES = 256
"""Longer query strings are not learned: FastAPI ignores unknown parameters, so a client
could otherwise fill the table with padding (uvicorn accepts 64 KiB)."""


def drop_oldest(entries: dict[Any, Any], limit: int) -> None:
    """Remove the entries inserted first until at most `limit` are left."""
    while len(entries) > limit:
        del entries[next(iter(entries))]


class _Computed(NamedTuple):
    started: float
    """When the computation began (by the cache's clock): the points it read are that new."""
    answer: Answer
    taken: bool = False
    """Computed by another worker (SharedAnswers)."""


@dataclass
class _Entry:
    task: asyncio.Future[_Computed]
    """The answer, or its computation while it runs."""
    compute: Callable[[], Awaitable[Answer]]
    """How to compute it again (a refresh)."""
    fresh_until: float = float("inf")
    refresh: asyncio.Future[_Computed] | None = field(default=None)


class SharedAnswers:
    """Rendered answers the worker processes of one `logpipe serve` compute for each other:
    one SQLite file in the server's private directory (0700, removed when it stops), by a
    SHA-256 of the answer's key, with the time its computation began.

    A worker about to compute an answer first claims it (`claim`): if a computation of it
    began at `since` or later, it gets that answer, or, while that computation runs in a
    live process, the claim's start (it waits and asks again: reads only, no lock);
    otherwise it writes its own claim, computes, and `offer`s the answer (or `release`s the
    claim when it fails). Check and claim are one write transaction, so of two workers only
    one computes; a claim left by a process that died is ignored (its pid is in the row).

    Bound: at most `max_entries` rows, the latest written (older ones are deleted as new
    ones arrive, and rows older than `max_age` too, since no one may take them). The file
    is a cache: a write that waits more than `busy_timeout` for another worker's is skipped
    (that answer is computed without a claim, or not offered); after any other SQLite error
    (logged once) this worker shares nothing more and computes its answers itself. The
    clock must be the same in every process: time.monotonic is system-wide on Linux."""

    def __init__(
        self,
        path: Path,
        *,
        max_age: float,
        max_entries: int = 1000,
        busy_timeout: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age
        self._max_entries = max_entries
        self._clock = clock
        self._owner = random.getrandbits(62)  # this cache among those of one process
        self._pid = os.getpid()
        self._db: sqlite3.Connection | None = None
        try:
            self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
            self._db.execute("PRAGMA synchronous = OFF")  # a cache: a crash may lose it all
        except sqlite3.Error as exc:
            self._failed(exc)

    @staticmethod
    def create(path: Path) -> None:
        """Make the table, once, before the workers start."""
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")  # readers never wait for a writer
            db.execute(
                "CREATE TABLE IF NOT EXISTS answers (id INTEGER PRIMARY KEY, key BLOB UNIQUE,"
                " started REAL NOT NULL, owner INTEGER NOT NULL, pid INTEGER NOT NULL,"
                " status INTEGER, body BLOB)"  # no body: being computed
            )
        finally:
            db.close()

    @staticmethod
    def _hash(key: Hashable) -> bytes:
        # repr of the keys' parts (str, int, date, None) is the same in every process
        return hashlib.sha256(repr(key).encode()).digest()

    def claim(self, key: Hashable, *, since: float, now: float) -> _Computed | float | None:
        """An answer of `key` computed from `since` on; or the start of its computation
        while that runs; or None: this worker computes it, from `now`."""
        db, hashed = self._db, self._hash(key)
        if db is None:
            return None
        try:
            found = self._found(db, hashed, since)
            if found is not None:
                return found
            with db:
                db.execute("BEGIN IMMEDIATE")  # claims are one at a time
                found = self._found(db, hashed, since)
                if found is None:
                    db.execute(
                        "INSERT OR REPLACE INTO answers (key, started, owner, pid)"
                        " VALUES (?, ?, ?, ?)",
                        (hashed, now, self._owner, self._pid),
                    )
                    self._prune(db)
            return found
        except sqlite3.Error as exc:
            self._failed(exc)
            return None

    def _found(
        self, db: sqlite3.Connection, hashed: bytes, since: float
    ) -> _Computed | float | None:
        row = db.execute(
            "SELECT started, owner, pid, status, body FROM answers WHERE key = ? AND started >= ?",
            (hashed, since),
        ).fetchone()
        if row is None:
            return None
        started, owner, pid, status, body = row
        if body is not None:
            return _Computed(started, (status, body), taken=owner != self._owner)
        return started if _alive(pid) else None

    def offer(self, key: Hashable, computed: _Computed) -> None:
        """The answer of this worker's claim (or of a computation it made without one); it
        replaces no answer or claim that began later."""
        status, body = computed.answer
        self._write(
            "INSERT INTO answers (key, started, owner, pid, status, body)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " started = excluded.started, owner = excluded.owner, pid = excluded.pid,"
            " status = excluded.status, body = excluded.body"
            " WHERE excluded.started >= answers.started",
            (self._hash(key), computed.started, self._owner, self._pid, status, body),
        )

    def release(self, key: Hashable, started: float) -> None:
        """Drop this worker's claim of `key`, made at `started`: its computation failed."""
        self._write(
            "DELETE FROM answers WHERE key = ? AND started = ? AND owner = ? AND body IS NULL",
            (self._hash(key), started, self._owner),
        )

    def _write(self, sql: str, values: tuple[Any, ...]) -> None:
        db = self._db
        if db is None:
            return
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute(sql, values)
                self._prune(db)
        except sqlite3.Error as exc:
            self._failed(exc)

    def _prune(self, db: sqlite3.Connection) -> None:
        db.execute(
            "DELETE FROM answers WHERE id <= (SELECT max(id) FROM answers) - ? OR started < ?",
            (self._max_entries, self._clock() - self._max_age),
        )

    def _failed(self, exc: sqlite3.Error) -> None:
        if getattr(exc, "sqlite_errorcode", None) in _BUSY:
            return  # another worker's write took too long: this one is skipped
        log.warning("shared answers: %s; this worker computes its answers alone", exc)
        if self._db is not None:
            self._db.close()
        self._db = None


_BUSY = (5, 6)
"""SQLITE_BUSY, SQLITE_LOCKED: another connection held the lock past the busy timeout."""


def _alive(pid: int) -> bool:
    """Whether process `pid` exists (a claim of a process that died is nobody's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


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
        shared: Path | None = None,
        patience: float = 5.0,
    ) -> None:
        """`jitter`: lifetimes are up to that fraction shorter than `ttl`, never longer, so
        answers computed together do not all send their refreshes in the same instant.
        `shared`: the SharedAnswers file of the other workers (made by SharedAnswers.create),
        if any; `patience`: how long to wait for another worker's computation before making
        one's own."""
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
        self._shared = (
            SharedAnswers(shared, max_age=ttl, clock=clock) if shared and ttl > 0 else None
        )
        self._patience = patience

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
                return (await asyncio.shield(entry.task)).answer, True
            answer = self.kept(key)
            if answer is not None:
                return answer, True
        entry = _Entry(self._start(key, None, waited or compute), compute)
        self._entries[key] = entry
        drop_oldest(self._entries, self._max_entries)
        return (await asyncio.shield(entry.task)).answer, False

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
        return entry.task.result().answer

    def fresh(self, key: Hashable) -> Answer | None:
        """The answer kept for `key` if it is computed and fresh, without computing anything."""
        entry = self._entries.get(key)
        if entry is None or not entry.task.done() or self._clock() >= entry.fresh_until:
            return None
        return entry.task.result().answer

    def _start(
        self, key: Hashable, stale: _Entry | None, compute: Callable[[], Awaitable[Answer]]
    ) -> asyncio.Future[_Computed]:
        # A task of its own, so a client that goes away does not cancel it for the others.
        held = stale.task.result().started if stale is not None else -math.inf
        task = asyncio.ensure_future(self._computed(key, compute, held))
        task.add_done_callback(lambda done: self._settle(key, stale, done))
        return task

    async def _computed(
        self, key: Hashable, compute: Callable[[], Awaitable[Answer]], held: float
    ) -> _Computed:
        """The answer of `key`: another worker's when there is one to take (`_claim`) newer
        than the one held (whose computation began at `held`), else computed here and
        offered to the others."""
        shared = self._shared
        started = self._clock()
        if shared is not None:
            claimed = await self._claim(shared, key, held)
            if isinstance(claimed, _Computed):
                if claimed.taken:
                    SHARED_ANSWERS.inc()
                return claimed
            started = claimed
        try:
            answer = await compute()
        except BaseException:
            if shared is not None:
                shared.release(key, started)
            raise
        computed = _Computed(started, answer)
        if shared is not None:
            shared.offer(key, computed)
        return computed

    async def _claim(self, shared: SharedAnswers, key: Hashable, held: float) -> _Computed | float:
        """An answer of `key` (another worker's, or this one's still running) if its
        computation began recently enough to be fresh for any lifetime given here (so
        taking it never starts a refresh, and of two workers the one whose answer expires
        first computes for both) and is newer than the one held; waiting up to `patience`
        (real time) while it runs. Else the time this worker's own computation begins."""
        give_up = time.monotonic() + self._patience
        pause = SHARED_POLL_SECONDS
        while True:
            started = self._clock()
            since = max(started - self.ttl * (1 - self._jitter), math.nextafter(held, math.inf))
            found = shared.claim(key, since=since, now=started)
            if found is None or isinstance(found, _Computed):
                return started if found is None else found
            if time.monotonic() >= give_up:
                return self._clock()  # computed without a claim
            await asyncio.sleep(pause)  # being computed: ask again, less often
            pause = min(2 * pause, MAX_SHARED_POLL_SECONDS)

    def _settle(
        self, key: Hashable, stale: _Entry | None, task: asyncio.Future[_Computed]
    ) -> None:
        failed = task.cancelled() or task.exception() is not None
        # fresh from when the computation began: the points it read are at least that new
        computed = None if failed else task.result()
        if computed is None:
            fresh_until = 0.0
        elif computed.taken:
            # The longest lifetime: the worker that computed this answer expires first, so
            # it computes the next one too, with the closed days it holds (see ClosedDays).
            fresh_until = computed.started + self.ttl
        else:
            fresh_until = computed.started + self.ttl * (1 - self._jitter * random.random())
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
