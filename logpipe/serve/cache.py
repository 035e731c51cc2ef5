"""An in-process TTL cache of computed answers, with request coalescing: concurrent requests
for the same key share one computation (one InfluxDB query).

An answer is fresh for `ttl` seconds (less its age, for one that arrives already old). For
another `ttl` seconds it may still be served while one refresh runs in the background
(stale-while-revalidate), so expiry never sends every waiting client to InfluxDB at once;
after that a request waits for a new answer.

Below them: HistoryCache, per-day statistics of closed days, and SharedFile, a value the
worker processes of one server share.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def drop_oldest(entries: dict[Any, Any], limit: int) -> None:
    """Remove the entries inserted first until at most `limit` are left."""
    while len(entries) > limit:
        del entries[next(iter(entries))]


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
        drop_oldest(self._entries, self._max_entries)
        return await asyncio.shield(entry.task), False

    def fresh(self, key: Hashable) -> T | None:
        """The answer kept for `key` if it is computed and fresh, without computing anything."""
        entry = self._entries.get(key)
        if entry is None or not entry.task.done() or self._clock() >= entry.fresh_until:
            return None
        return entry.task.result()

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
        drop_oldest(self._days, self._max_entries)


class SharedFile:
    """JSON values shared by the worker processes of `logpipe serve --workers N` through files
    in one directory. The worker that finds a value older than `ttl` computes it again, under
    a file lock, while the others wait for its file: N workers cost InfluxDB one query per
    TTL, not N. (The kernel drops the lock of a worker that dies.)

    A worker that waited takes the file the computing worker writes, however long its query
    took; one that waits longer than `patience` (the other seems stuck) computes the value
    itself. The clock is time.monotonic, which every process of a host shares and which
    does not jump when the wall clock is set. Files not written for an hour (the spans of
    days gone by) are removed by the next writer.
    """

    def __init__(
        self,
        directory: Path,
        ttl: float,
        *,
        patience: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        poll: float = 0.02,
    ) -> None:
        self._directory = directory
        self.ttl = ttl
        self._patience = patience
        self._clock = clock
        self._poll = poll
        self._parsed: dict[Path, tuple[tuple[int, int], tuple[float, Any]]] = {}

    async def get(self, name: str, compute: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
        """(when its computation began, by the clock; the value) of `name`: younger than
        `ttl`, or the one that the worker computing it when this call began wrote."""
        path = self._directory / f"{name}.json"
        seen = self._read(path)
        if seen is not None and self._clock() - seen[0] < self.ttl:
            return seen
        give_up = self._clock() + self._patience
        while True:
            with self._lock(name) as mine:
                if mine:
                    found = self._read(path)  # another may have written it meanwhile
                    if found is not None and (seen is None or found[0] > seen[0]):
                        return found
                    return await self._compute(path, compute)
            if self._clock() > give_up:
                return await self._compute(path, compute)
            await asyncio.sleep(self._poll)
            found = self._read(path)
            if found is not None and (seen is None or found[0] > seen[0]):
                return found

    @contextmanager
    def _lock(self, name: str) -> Iterator[bool]:
        """True while this process holds `name`'s lock; False when another one does."""
        self._directory.mkdir(parents=True, exist_ok=True)  # a /tmp cleaner may remove it
        with (self._directory / f"{name}.lock").open("w") as lock:  # closing unlocks
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
            else:
                yield True

    async def _compute(
        self, path: Path, compute: Callable[[], Awaitable[Any]]
    ) -> tuple[float, Any]:
        written, value = self._clock(), await compute()
        draft = path.with_suffix(f".{os.getpid()}")
        try:
            draft.write_text(json.dumps([written, value]))
            draft.replace(path)  # readers see the old file or the new, never half of one
        except OSError:  # a full disk, say: the others compute their own, and so on
            with suppress(OSError):
                draft.unlink(missing_ok=True)
        else:
            self._prune()
        return written, value

    def _read(self, path: Path) -> tuple[float, Any] | None:
        """The file's (written, value), parsed only when the file is another than last time."""
        try:
            stat = path.stat()
            stamp = (stat.st_ino, stat.st_mtime_ns)  # each write makes a new file (inode)
            held = self._parsed.get(path)
            if held is not None and held[0] == stamp:
                return held[1]
            written, value = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # a damaged file: as if there were none
            return None
        found = (float(written), value)
        self._parsed[path] = (stamp, found)
        return found

    def _prune(self, unused: float = 3600.0) -> None:
        cutoff = time.time() - unused  # file times are wall-clock times
        for old in self._directory.iterdir():
            with suppress(OSError):
                if old.stat().st_mtime < cutoff:
                    old.unlink()
                    self._parsed.pop(old, None)
