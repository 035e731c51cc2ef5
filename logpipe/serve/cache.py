"""An in-process TTL cache of computed answers, with request coalescing: concurrent requests
for the same key share one computation (one InfluxDB query)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    task: asyncio.Future[T]
    expires: float


class TTLCache(Generic[T]):
    """Answers live `ttl` seconds after they are computed; failures are not kept. A `ttl` of
    0 turns caching and coalescing off."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[Hashable, _Entry[T]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(answer, True if it came from the cache or a computation already under way)."""
        if self.ttl <= 0:
            return await compute(), False
        entry = self._entries.get(key)
        if entry is not None and (not entry.task.done() or self._clock() < entry.expires):
            return await asyncio.shield(entry.task), True
        # The computation is a task of its own, so a client that goes away does not cancel
        # it for the others waiting on it.
        task = asyncio.ensure_future(compute())
        entry = _Entry(task, math.inf)
        self._entries[key] = entry
        task.add_done_callback(lambda done: self._settle(key, entry))
        while len(self._entries) > self._max_entries:  # drop the oldest
            del self._entries[next(iter(self._entries))]
        return await asyncio.shield(task), False

    def _settle(self, key: Hashable, entry: _Entry[T]) -> None:
        if entry.task.cancelled() or entry.task.exception() is not None:
            if self._entries.get(key) is entry:
                del self._entries[key]
        else:
            entry.expires = self._clock() + self.ttl
