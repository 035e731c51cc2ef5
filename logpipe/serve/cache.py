"""An in-process TTL cache of computed answers, with request coalescing: concurrent requests
for the same key share one computation (one InfluxDB query).

An answer is fresh for `ttl` seconds. For another `ttl` seconds it may still be served while
one refresh runs in the background (stale-while-revalidate), so expiry never sends every
waiting client to InfluxDB at once; after that a request waits for a new answer.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _lifetime(ttl: float, jitter: float) -> float:
    # Up to `jitter` shorter than the TTL, never longer: entries filled together do not all
    # expire (and send their refreshes to InfluxDB) in the same instant.
    return ttl * (1 - jitter * random.random())


@dataclass
class _Entry(Generic[T]):
    task: asyncio.Future[T]
    """The answer, or its computation while it runs."""
    fresh_until: float = float("inf")
    refresh: asyncio.Future[T] | None = field(default=None)


class TTLCache(Generic[T]):
    """Failures are never kept. A `ttl` of 0 turns caching and coalescing off."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        age: Callable[[T], float] | None = None,
    ) -> None:
        """`age`, when given, tells how old a computed answer already is (one read from
        another worker's file, say): it is fresh for that much less."""
        self.ttl = ttl
        self._max_entries = max_entries
        self._jitter = jitter
        self._clock = clock
        self._age = age
        self._entries: dict[Hashable, _Entry[T]] = {}

    def _fresh_until(self, answer: T) -> float:
        born = self._clock() - (self._age(answer) if self._age else 0.0)
        return born + _lifetime(self.ttl, self._jitter)

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(answer, True if no computation was started for this request)."""
        if self.ttl <= 0:
            return await compute(), False
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None:
            if not entry.task.done():  # being computed: wait for the same answer
                return await asyncio.shield(entry.task), True
            if now < entry.fresh_until:
                return entry.task.result(), True
            if now < entry.fresh_until + self.ttl:  # stale: serve it, refresh once
                if entry.refresh is None:
                    entry.refresh = self._start(key, entry, compute)
                return entry.task.result(), True
        entry = _Entry(self._start(key, None, compute))
        self._entries[key] = entry
        while len(self._entries) > self._max_entries:  # drop the oldest
            del self._entries[next(iter(self._entries))]
        return await asyncio.shield(entry.task), False

    def _start(
        self, key: Hashable, stale: _Entry[T] | None, compute: Callable[[], Awaitable[T]]
    ) -> asyncio.Future[T]:
        # A task of its own, so a client that goes away does not cancel it for the others.
        task = asyncio.ensure_future(compute())
        task.add_done_callback(lambda done: self._settle(key, stale, done))
        return task

    def _settle(self, key: Hashable, stale: _Entry[T] | None, task: asyncio.Future[T]) -> None:
        failed = task.cancelled() or task.exception() is not None
        if stale is not None:  # a background refresh
            stale.refresh = None
            if not failed and self._entries.get(key) is stale:
                stale.task, stale.fresh_until = task, self._fresh_until(task.result())
            return
        entry = self._entries.get(key)
        if entry is None or entry.task is not task:
            return
        if failed:
            del self._entries[key]
        else:
            entry.fresh_until = self._fresh_until(task.result())


class HistoryCache:
    """Per-day statistics of days that no longer change in the normal course (before today,
    or before yesterday just after midnight), kept `ttl` seconds.

    Such days change only when old lines are ingested (a backfill), so a recomputation of
    an answer asks InfluxDB only for the days this cache does not hold: usually today. A day
    without requests is kept too (as None).
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 200_000,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._max_entries = max_entries
        self._jitter = jitter
        self._clock = clock
        self._days: dict[Hashable, tuple[float, object]] = {}

    def known(self, scope: Hashable, days: list[Hashable]) -> dict[Hashable, object]:
        """The days of `days` held and not expired, with their value."""
        now = self._clock()
        found = {}
        for day in days:
            entry = self._days.get((scope, day))
            if entry is not None and now < entry[0]:
                found[day] = entry[1]
        return found

    def keep(self, scope: Hashable, days: dict[Hashable, object]) -> None:
        """Keep the days of one answer; they expire together, so one query renews them."""
        if self.ttl <= 0:
            return
        until = self._clock() + _lifetime(self.ttl, self._jitter)
        for day, value in days.items():
            self._days[(scope, day)] = (until, value)
        while len(self._days) > self._max_entries:  # drop the oldest
            del self._days[next(iter(self._days))]


class SharedFile:
    """JSON values shared by the worker processes of `logpipe serve --workers N` through files
    in one directory. The worker that finds a value older than `ttl` computes it again, under
    a file lock, while the others wait for its file: N workers cost InfluxDB one query per
    TTL, not N. (The kernel drops the lock of a worker that dies.)
    """

    def __init__(
        self,
        directory: Path,
        ttl: float,
        *,
        clock: Callable[[], float] = time.time,
        poll: float = 0.02,
    ) -> None:
        self._directory = directory
        self.ttl = ttl
        self._clock = clock
        self._poll = poll

    async def get(self, name: str, compute: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
        """(when it was computed, by the clock; the value) of `name`, at most `ttl` old."""
        path = self._directory / f"{name}.json"
        while True:
            found = self._read(path)
            if found is not None and self._clock() - found[0] < self.ttl:
                return found
            with (self._directory / f"{name}.lock").open("w") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # another worker is computing it: wait for its file
                else:
                    found = self._read(path)  # it may have finished just before
                    if found is not None and self._clock() - found[0] < self.ttl:
                        return found
                    written, value = self._clock(), await compute()
                    draft = path.with_suffix(f".{os.getpid()}")
                    draft.write_text(json.dumps([written, value]))
                    draft.replace(path)  # readers see the old file or the new, never half
                    return written, value
            await asyncio.sleep(self._poll)

    @staticmethod
    def _read(path: Path) -> tuple[float, Any] | None:
        try:
            written, value = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        return float(written), value
