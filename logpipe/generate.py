"""`logpipe generate`: realistic request lines in any format `process` reads, at a steady rate.

Pacing is a token bucket: line k is due k / rate seconds after the start, and each tick
writes everything due in one batch, so the achieved rate holds from one line to a hundred
thousand lines per second. All randomness comes from one seeded Random and, with `start`,
no timestamp depends on the clock: the same seed and start give byte-identical output.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TextIO

from logpipe.status import write_status

# (path, median latency in seconds): lognormal latencies around these.
PATHS = (
    ("/api/v1/orders", 0.120),
    ("/api/v1/orders/search", 0.450),
    ("/api/v1/customers", 0.080),
    ("/api/v1/payments", 0.300),
    ("/api/v1/reports/daily", 1.200),
    ("/health", 0.005),
)
SUCCESSES = ((200, 80), (201, 8), (204, 4))
CLIENT_ERRORS = ((400, 3), (401, 1), (404, 4), (429, 2))
SERVER_ERRORS = ((500, 5), (502, 3), (503, 2))
SPIKE_CHANCE = 0.01
"""Share of requests that hit a latency spike (x5 to x20)."""
MAX_BATCH = 10_000
LIVE_RATE = 10.0
"""Lines per second when none is given and timestamps are "now"."""
SECONDS_PER_DAY = 86_400
FORMATS = ("text", "json", "logfmt")
"""The line formats written here, and read by `logpipe process` (logpipe/process/formats.py)."""
KEEP_ROTATED = 5
"""Rotated files kept by --rotate-bytes (output.1 newest ... output.5)."""


@dataclass(frozen=True)
class GenerateOptions:
    rate: float = LIVE_RATE
    """Lines per second; 0 writes as fast as possible."""
    total: int | None = None
    customers: int = 10
    seed: int | None = None
    backfill_days: float | None = None
    """History: timestamps spread over this many days (ending now, or from `start`)."""
    start: date | None = None
    """The history's first day (UTC), which makes timestamps independent of the clock."""
    client_error_rate: float = 0.10
    server_error_rate: float = 0.03
    format: str = "text"
    batch_size: int | None = None
    """Write lines in batches of exactly this many (with rate = batch_size / interval)."""
    rotate_bytes: int | None = None


def options_from_flags(
    *,
    rate: float | None,
    total: int | None,
    max_lines: int | None,
    interval: float | None,
    batch_size: int | None,
    backfill_days: float | None,
    start: date | None,
    client_error_rate: float,
    server_error_rate: float,
    format: str,
    **rest: object,
) -> GenerateOptions:
    """GenerateOptions from the command's flags, checked together; ConfigError if they clash.
    `rest` holds the flags that need no check (customers, seed, rotate_bytes)."""
    from logpipe.errors import ConfigError

    if format not in FORMATS:
        raise ConfigError(f"--format {format!r} is not one of {', '.join(FORMATS)}")
    if client_error_rate + server_error_rate > 1:
        raise ConfigError("--client-error-rate and --server-error-rate add up to more than 1")
    if (batch_size is None) != (interval is None):
        raise ConfigError("--batch-size and --interval go together (N lines every S seconds)")
    if batch_size is not None and interval is not None:
        if rate is not None:
            raise ConfigError("give --rate, or --batch-size with --interval, not both")
        rate = batch_size / interval
    if total and max_lines and total != max_lines:
        raise ConfigError("--total and --max-lines say different things; give one")
    if rate is None:  # history is written at once; "now" at a pace a person can follow
        rate = 0.0 if backfill_days is not None or start is not None else LIVE_RATE
    return GenerateOptions(
        rate=rate,
        total=total or max_lines,
        batch_size=batch_size,
        backfill_days=backfill_days,
        start=start,
        client_error_rate=client_error_rate,
        server_error_rate=server_error_rate,
        format=format,
        **rest,  # type: ignore[arg-type]
    )


@contextlib.contextmanager
def progress(
    options: GenerateOptions, *, status_file: Path | None = None
) -> Iterator[Callable[[int], None] | None]:
    """An on_batch callback: a progress bar with the achieved rate when stderr is a
    terminal, and/or the count written to `status_file` (for run-all); None if neither."""
    bar = None
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(
            TextColumn("generating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>10,.0f} lines/s"),
            transient=True,
        )
    if bar is None and status_file is None:
        yield None
        return
    started = time.monotonic()
    last_status = 0.0
    task = bar.add_task("lines", total=options.total, rate=0) if bar else None

    def on_batch(written: int) -> None:
        nonlocal last_status
        now = time.monotonic()
        if bar is not None and task is not None:
            bar.update(task, completed=written, rate=written / max(now - started, 1e-6))
        if status_file is not None and now - last_status >= 0.5:
            last_status = now
            write_status(status_file, {"written": written})

    if bar is None:
        yield on_batch
        return
    with bar:
        yield on_batch


def _weights(choices: tuple[tuple[int, int], ...], share: float) -> list[tuple[int, float]]:
    total = sum(weight for _, weight in choices)
    return [(status, share * weight / total) for status, weight in choices]


class LineMaker:
    """Makes lines for given timestamps, a batch at a time (one random draw per field for
    the whole batch, which is what makes 100,000 lines per second possible); all
    randomness from one Random."""

    def __init__(self, rng: random.Random, options: GenerateOptions) -> None:
        self._rng = rng
        self._format = options.format
        self._customers = [f"cust_{index + 1}" for index in range(options.customers)]
        # A few customers send most of the traffic, as in real tenants (Zipf-like weights).
        self._customer_weights = list(
            itertools.accumulate(1 / (index + 1) for index in range(options.customers))
        )
        success = 1 - options.client_error_rate - options.server_error_rate
        weighted = (
            _weights(SUCCESSES, success)
            + _weights(CLIENT_ERRORS, options.client_error_rate)
            + _weights(SERVER_ERRORS, options.server_error_rate)
        )
        self._statuses = [status for status, _ in weighted]
        self._status_weights = list(itertools.accumulate(weight for _, weight in weighted))
        self._stamps: dict[int, str] = {}

    def _stamp(self, second: int) -> str:
        text = self._stamps.get(second)
        if text is None:
            if len(self._stamps) > 100_000:
                self._stamps.clear()
            when = datetime.fromtimestamp(second, timezone.utc)
            pattern = "%Y-%m-%d %H:%M:%S" if self._format == "text" else "%Y-%m-%dT%H:%M:%SZ"
            text = self._stamps[second] = when.strftime(pattern)
        return text

    def lines(self, stamps: list[float]) -> list[str]:
        rng = self._rng
        n = len(stamps)
        customers = rng.choices(self._customers, cum_weights=self._customer_weights, k=n)
        statuses = rng.choices(self._statuses, cum_weights=self._status_weights, k=n)
        paths = rng.choices(PATHS, k=n)
        gauss, uniform, chance = rng.gauss, rng.uniform, rng.random
        lines = []
        for stamp, customer, (path, median), status in zip(
            stamps, customers, paths, statuses, strict=True
        ):
            latency = median * math.exp(gauss(0.0, 0.5))  # lognormal around the median
            if chance() < SPIKE_CHANCE:
                latency *= uniform(5, 20)
            lines.append(self._render(self._stamp(int(stamp)), customer, path, status, latency))
        return lines

    def _render(self, stamp: str, customer: str, path: str, status: int, latency: float) -> str:
        if self._format == "json":
            return (
                f'{{"timestamp": "{stamp}", "customer_id": "{customer}", "path": "{path}",'
                f' "status": {status}, "latency": {latency:.3f}}}\n'
            )
        if self._format == "logfmt":
            return (
                f"timestamp={stamp} customer_id={customer} path={path}"
                f" status={status} latency={latency:.3f}\n"
            )
        return f"{stamp} {customer} {path} {status} {latency:.3f}\n"


def _window(options: GenerateOptions, now: float) -> tuple[float, float] | None:
    """(first second, length) of the history, or None for "now" timestamps."""
    if options.start is not None:
        first = datetime(*options.start.timetuple()[:3], tzinfo=timezone.utc).timestamp()
        return first, (options.backfill_days or 1) * SECONDS_PER_DAY
    if options.backfill_days is not None:
        span = options.backfill_days * SECONDS_PER_DAY
        return now - span, span
    return None


def _timestamps(
    options: GenerateOptions,
    window: tuple[float, float] | None,
    rng: random.Random,
    now: float,
    written: int,
    count: int,
) -> Iterator[float]:
    """Timestamps of the next `count` lines: now, or spread over the history window."""
    if window is None:
        return (now for _ in range(count))
    first, span = window
    if options.total:  # evenly spread and in order, like a real log
        step = span / options.total
        return (first + (written + i + rng.random()) * step for i in range(count))
    return iter(sorted(first + rng.random() * span for _ in range(count)))


def _rotate(output: Path) -> None:
    """logrotate's way: output.4 -> output.5, ..., output -> output.1, then a new file."""
    for number in range(KEEP_ROTATED - 1, 0, -1):
        older = output.with_name(f"{output.name}.{number}")
        if older.exists():
            older.rename(output.with_name(f"{output.name}.{number + 1}"))
    output.rename(output.with_name(f"{output.name}.1"))


def _write_rotating(
    out: TextIO, output: Path, lines: list[str], size: int, limit: int
) -> tuple[TextIO, int]:
    """Write lines, rotating the file whenever it reaches `limit` bytes; (file, its size)."""
    for line in lines:
        out.write(line)
        size += len(line)  # ASCII: characters are bytes
        if size >= limit:
            out.close()
            _rotate(output)
            out, size = output.open("a", encoding="utf-8"), 0
    return out, size


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
    maker = LineMaker(rng, options)
    output.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    out: TextIO = output.open("a", encoding="utf-8")
    size = out.tell()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            window = _window(options, clock())
            for batch in _paced_batches(options, clock=clock, sleep=sleep):
                stamps = _timestamps(options, window, rng, clock(), written, batch)
                lines = maker.lines(list(stamps))
                if options.rotate_bytes:
                    out, size = _write_rotating(out, output, lines, size, options.rotate_bytes)
                else:
                    out.write("".join(lines))
                out.flush()
                written += batch
                if on_batch is not None:
                    on_batch(written)
    finally:
        out.close()
    return written


def _paced_batches(
    options: GenerateOptions,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Iterator[int]:
    """How many lines to write at each tick, sleeping between ticks as the rate asks."""
    written = 0
    started = clock()
    unit = options.batch_size or 1
    while options.total is None or written < options.total:
        now = clock()
        if options.rate == 0:
            count = MAX_BATCH
        else:  # batch k (of `unit` lines) is due k * unit / rate seconds after the start
            due = (math.floor((now - started) * options.rate / unit) + 1) * unit
            count = min(due - written, max(MAX_BATCH, unit))
        if options.total is not None:
            count = min(count, options.total - written)
        if count <= 0:
            sleep(min(0.1, max(0.001, started + written / options.rate - now)))
            continue
        written += count
        yield count
