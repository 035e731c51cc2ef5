"""`logpipe generate`: realistic request lines in the seed format, at a steady rate.

Pacing: the lines due at time t are rate * t; each tick writes what is due in one batch, so
the achieved rate holds from a few lines to tens of thousands of lines per second.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

# (path, median latency in seconds): lognormal latencies around these.
PATHS = (
    ("/api/v1/orders", 0.120),
    ("/api/v1/orders/search", 0.450),
    ("/api/v1/customers", 0.080),
    ("/api/v1/payments", 0.300),
    ("/api/v1/reports/daily", 1.200),
    ("/health", 0.005),
)
STATUSES = (200, 201, 204, 400, 401, 404, 429, 500, 502, 503)
STATUS_WEIGHTS = (80, 8, 4, 1.5, 0.5, 2, 1, 1.5, 0.8, 0.7)
SPIKE_CHANCE = 0.01
"""Share of requests that hit a latency spike (x5 to x20)."""
MAX_BATCH = 10_000
LIVE_RATE = 10.0
"""Lines per second when none is given and timestamps are "now"."""
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class GenerateOptions:
    rate: float = LIVE_RATE
    """Lines per second; 0 writes as fast as possible."""
    total: int | None = None
    customers: int = 10
    seed: int | None = None
    backfill_days: float | None = None


class LineMaker:
    """Makes one seed-format line for a given timestamp; all randomness from one Random."""

    def __init__(self, rng: random.Random, customers: int) -> None:
        self._rng = rng
        self._customers = [f"cust_{index + 1}" for index in range(customers)]
        # A few customers send most of the traffic, as in real tenants (Zipf-like weights).
        self._customer_weights = [1 / (index + 1) for index in range(customers)]

    def line(self, epoch_seconds: float) -> str:
        rng = self._rng
        stamp = datetime.fromtimestamp(int(epoch_seconds), timezone.utc)
        customer = rng.choices(self._customers, self._customer_weights)[0]
        path, median = PATHS[rng.randrange(len(PATHS))]
        status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        latency = rng.lognormvariate(math.log(median), 0.5)
        if rng.random() < SPIKE_CHANCE:
            latency *= rng.uniform(5, 20)
        return f"{stamp:%Y-%m-%d %H:%M:%S} {customer} {path} {status} {latency:.3f}\n"


def _timestamps(
    options: GenerateOptions, rng: random.Random, now: float, written: int, count: int
) -> Iterator[float]:
    """Timestamps of the next `count` lines: now, or spread over the backfill window."""
    if options.backfill_days is None:
        return (now for _ in range(count))
    span = options.backfill_days * SECONDS_PER_DAY
    start = now - span
    if options.total:  # evenly spread and in order, like a real log
        step = span / options.total
        return (start + (written + i + rng.random()) * step for i in range(count))
    return iter(sorted(start + rng.random() * span for _ in range(count)))


def run(
    output: Path,
    options: GenerateOptions,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Append lines to `output` until `total` (or Ctrl-C); returns how many were written."""
    rng = random.Random(options.seed)
    maker = LineMaker(rng, options.customers)
    output.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with output.open("a", encoding="utf-8") as out, contextlib.suppress(KeyboardInterrupt):
        for written in _paced_batches(out, options, maker, rng, clock=clock, sleep=sleep):
            if on_batch is not None:
                on_batch(written)
    return written


def _paced_batches(
    out: TextIO,
    options: GenerateOptions,
    maker: LineMaker,
    rng: random.Random,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Iterator[int]:
    """Write what is due, one batch per tick; yields the running total after each batch."""
    written = 0
    started = clock()
    while options.total is None or written < options.total:
        now = clock()
        if options.rate == 0:
            count = MAX_BATCH
        else:  # line k (from 0) is due k / rate seconds after the start
            count = min(math.floor((now - started) * options.rate) + 1 - written, MAX_BATCH)
        if options.total is not None:
            count = min(count, options.total - written)
        if count <= 0:
            sleep(min(0.1, max(0.001, started + written / options.rate - now)))
            continue
        stamps = _timestamps(options, rng, now, written, count)
        out.write("".join(maker.line(stamp) for stamp in stamps))
        out.flush()
        written += count
        yield written
