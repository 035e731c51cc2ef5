"""run-all's live panel: what the generator, processor, API and InfluxDB are doing, read from
the children's status files and from the API itself, rendered with rich twice a second."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from logpipe.config import redact_url
from logpipe.status import GENERATE_STATUS, PROCESS_STATUS, read_status

CUSTOMERS_SHOWN = 8
CUSTOMERS_RANKED = 1000
"""How many of today's customers are ranked for the table: one page of /customers, the
largest the API gives, so a look costs one query; with more customers than that, the table
shows the busiest of the first 1000 by id (run-all generates 10 unless told otherwise)."""
API_EVERY = 2.0
"""Seconds between two looks at the API for the customers table."""
Row = TypeVar("Row", bound=tuple[Any, ...])


def busiest_first(rows: Iterable[Row]) -> list[Row]:
    """`rows` of (customer, today's requests, …), most requests first; ties by customer id."""
    return sorted(rows, key=lambda row: (-row[1], row[0]))


class Rate:
    """Units per second over the last few seconds of (time, count) samples."""

    def __init__(self, window: float = 3.0) -> None:
        self._window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, when: float, count: int) -> float:
        self._samples.append((when, count))
        while len(self._samples) > 2 and when - self._samples[0][0] > self._window:
            self._samples.popleft()
        (first, start), (last, end) = self._samples[0], self._samples[-1]
        return (end - start) / (last - first) if last > first else 0.0


@dataclass
class Snapshot:
    """Everything the panel shows at one moment."""

    influx_url: str
    """As configured, password included: shown through `influx`."""
    influx_version: str
    api: str
    log_file: Path
    generated: int | None = None
    generated_rate: float = 0.0
    read: int = 0
    stored: int = 0
    stored_rate: float = 0.0
    rejected: int = 0
    write_retries: int = 0
    lag_bytes: int = 0
    lag_seconds: float | None = None
    customers: list[tuple[str, int, float, float]] = field(default_factory=list)
    """(customer, today's requests, uptime %, p99 latency s) from the API, busiest first."""
    problem: str | None = None

    @property
    def influx(self) -> str:
        """The InfluxDB line of the panel, without the URL's password."""
        return f"{redact_url(self.influx_url)} (InfluxDB {self.influx_version})"


class Watcher:
    """Turns the status files and the API into Snapshots; one per call of `look`."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        state_dir: Path,
        api_url: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.snapshot = snapshot
        self._generate_status = state_dir / GENERATE_STATUS
        self._process_status = state_dir / PROCESS_STATUS
        self._api = httpx.Client(base_url=api_url, timeout=1.0)
        self._clock = clock
        self._generated = Rate()
        self._stored = Rate()
        self._next_api_look = 0.0

    def close(self) -> None:
        self._api.close()

    def look(self) -> Snapshot:
        now = self._clock()
        view = self.snapshot
        generated = read_status(self._generate_status).get("written")
        if generated is not None:
            view.generated = int(generated)
            view.generated_rate = self._generated.add(now, view.generated)
        counters = read_status(self._process_status)
        view.read = int(counters.get("read", 0))
        view.stored = int(counters.get("stored", 0))
        view.stored_rate = self._stored.add(now, view.stored)
        view.rejected = int(counters.get("rejected", 0))
        view.write_retries = int(counters.get("write_retries", 0))
        view.lag_bytes = int(counters.get("lag_bytes", 0))
        view.lag_seconds = self._lag_seconds(view)
        if now >= self._next_api_look:
            self._next_api_look = now + API_EVERY
            view.customers = self._customers_today() or view.customers
        return view

    def _lag_seconds(self, view: Snapshot) -> float | None:
        """Bytes behind, as seconds of the generator's output at its current rate."""
        try:
            size = view.log_file.stat().st_size
        except OSError:
            return None
        if not view.generated or not view.generated_rate:
            return None
        bytes_per_line = size / view.generated if size else 0
        return view.lag_bytes / bytes_per_line / view.generated_rate if bytes_per_line else None

    def _customers_today(self) -> list[tuple[str, int, float, float]]:
        """The CUSTOMERS_SHOWN busiest customers of today with their statistics, busiest
        first; [] when the API does not answer (yet)."""
        today = datetime.now(timezone.utc).date().isoformat()
        rows = []
        try:
            listed = self._api.get("/customers", params={"days": 1, "limit": CUSTOMERS_RANKED})
            totals = [(c["customer_id"], c["total_requests"]) for c in listed.json()["customers"]]
            for customer, _ in busiest_first(totals)[:CUSTOMERS_SHOWN]:
                answer = self._api.get(f"/customers/{customer}/stats", params={"from_date": today})
                if answer.status_code != 200:
                    continue
                day = answer.json()["days"][-1]
                rows.append((customer, day["total_requests"], day["uptime"], day["p99_latency"]))
        except (httpx.HTTPError, ValueError, KeyError):
            return []  # the API is starting, or busy: keep the last table
        return busiest_first(rows)  # the totals may have grown since the list was made


def render(view: Snapshot) -> RenderableType:
    counters = Table.grid(padding=(0, 2))
    counters.add_column(style="bold")
    counters.add_column()
    counters.add_row("InfluxDB", view.influx)
    counters.add_row("dashboard", f"{view.api}/")
    counters.add_row("API", f"{view.api}/docs")
    counters.add_row("log file", str(view.log_file))
    if view.generated is not None:
        counters.add_row(
            "generated", f"{view.generated:,} lines   {view.generated_rate:,.1f} lines/s"
        )
    counters.add_row("stored", f"{view.stored:,} lines   {view.stored_rate:,.1f} lines/s")
    lag = f"{view.lag_bytes:,} bytes behind"
    if view.lag_seconds is not None:
        lag += f"  (≈ {view.lag_seconds:,.1f} s)"
    counters.add_row("lag", lag)
    counters.add_row("rejected", f"{view.rejected:,} lines   write retries {view.write_retries:,}")
    customers = Table(title="today (UTC), from the API", title_justify="left", expand=False)
    customers.add_column("customer")
    customers.add_column("requests", justify="right")
    customers.add_column("uptime", justify="right")
    customers.add_column("p99", justify="right")
    for customer, requests, uptime, p99 in view.customers:
        customers.add_row(customer, f"{requests:,}", f"{uptime:.1f} %", f"{p99:.3f} s")
    parts: list[RenderableType] = [counters, customers]
    if view.problem:
        parts.append(Panel(view.problem, title="stopped", border_style="red"))
    return Panel(Group(*parts), title="logpipe run-all", subtitle="Ctrl-C stops")


def one_line(view: Snapshot) -> str:
    """The panel's counters as one line, for a log or a pipe."""
    return (
        f"generated {view.generated or 0:,}, stored {view.stored:,}"
        f" ({view.stored_rate:,.0f}/s), lag {view.lag_bytes:,} B,"
        f" rejected {view.rejected:,}, retries {view.write_retries:,}"
    )
