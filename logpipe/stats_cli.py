"""`logpipe stats`: a customer's (or everyone's) daily statistics in the terminal.

The figures are always the API's answer: computed by the API's own StatsService straight
from InfluxDB (no server needed), or asked of a running API (`--api`). Either way the
result is the API's JSON body, which `--json` prints as it is and from which the table and
the CSV are rendered, so none of them can disagree with the API. Rendering is pure:
`bar_cells`, `table`, `summary` and `csv_text` take days and return what is shown.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from logpipe.config import Settings, redact_url
from logpipe.errors import ApiFailed, BadDates, NoRequests
from logpipe.influx import AsyncInfluxClient
from logpipe.schema import is_valid_customer_id
from logpipe.serve.service import StatsService
from logpipe.stats import (
    DayStats,
    date_range,
    days_ending,
    days_of,
    no_requests,
    stats_json,
    utc_now,
)

BAR_WIDTH = 16
"""Cells of the busiest day's bar: the table fits 80 columns up to a p99 of 99,999.9 ms."""
API_TIMEOUT = 30.0
"""Seconds to wait for `--api`: the API itself answers 503 after its query timeout, so this
only bounds a server that hangs."""
OK_CELL, FAILED_CELL = "█", "▒"
"""Bar cells: failed requests also differ in shape, for terminals without colour."""

Form = Literal["table", "json", "csv"]


@dataclass(frozen=True)
class Asked:
    """What is asked for: one customer (None: all customers together) on first..last."""

    customer_id: str | None
    first: date
    last: date


def asked(
    customer: str | None,
    *,
    everyone: bool,
    from_date: str | None,
    to_date: str | None,
    today: date | None = None,
) -> Asked:
    """The arguments, checked as the API checks a request (stats.date_range); a mistake is
    a usage error (one line, exit code 2). Without --from-date the range is the
    stats.DEFAULT_DAYS ending on --to-date, or on `today` (default: today in UTC)."""
    if customer is not None and everyone:
        raise typer.BadParameter("give a CUSTOMER or --all, not both")
    if customer is None and not everyone:
        raise typer.BadParameter("give a CUSTOMER, or --all for all customers together")
    if customer is not None and not is_valid_customer_id(customer):
        raise typer.BadParameter(
            f"{customer[:40]!r} is not a customer id (1 to 128 ASCII letters, digits, _ . : -)",
            param_hint="'CUSTOMER'",
        )
    today = today or utc_now().date()
    start = from_date
    if start is None:
        try:  # the days ending on --to-date; a bad one is date_range's to explain
            end = today if to_date is None else date.fromisoformat(to_date)
            start = days_ending(end)[0].isoformat()
        except (ValueError, OverflowError):
            start = to_date
    try:
        first, last = date_range(start, to_date, today=today, names=("--from-date", "--to-date"))
    except BadDates as exc:
        raise typer.BadParameter(str(exc)) from None
    return Asked(customer, first, last)


def output_form(*, as_json: bool, as_csv: bool) -> Form:
    if as_json and as_csv:
        raise typer.BadParameter("give --json or --csv, not both")
    return "json" if as_json else "csv" if as_csv else "table"


def from_influxdb(settings: Settings, asked: Asked) -> bytes:
    """The API's body for `asked`, computed as the API computes it, from InfluxDB."""

    async def compute() -> list[DayStats]:
        client = AsyncInfluxClient(settings)
        try:
            service = StatsService(client, settings)
            return await service.stats(asked.customer_id, asked.first, asked.last)
        finally:
            await client.aclose()

    days = asyncio.run(compute())
    if not days:
        raise NoRequests(no_requests(asked.customer_id, asked.first, asked.last))
    return stats_json(asked.customer_id, asked.first, asked.last, settings.failure_status, days)


def from_api(api: str, asked: Asked, *, api_key: str | None) -> bytes:
    """The body a running API answers for `asked`. Anything but statistics (unreachable, a
    401, 403, 404, 503, another server) is an ApiFailed saying what the API said."""
    route = "/stats" if asked.customer_id is None else f"/customers/{asked.customer_id}/stats"
    days = {"from_date": asked.first.isoformat(), "to_date": asked.last.isoformat()}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    shown = redact_url(api)
    try:
        with httpx.Client(base_url=api, timeout=API_TIMEOUT) as client:
            response = client.get(route, params=days, headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
        raise ApiFailed(f"the API at {shown} {kind} ({type(exc).__name__}: {exc})") from exc
    if response.status_code != 200:
        status = response.status_code
        raise ApiFailed(f"the API at {shown} answered {status}: {_detail(response)}")
    try:
        days_of(response.json())
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiFailed(f"the API at {shown} answered with no statistics: is it logpipe?") from exc
    return response.content


def _detail(response: httpx.Response) -> str:
    """The one-line reason an API's error body gives (FastAPI's `detail`)."""
    try:
        document = response.json()
    except ValueError:
        document = None
    detail = document.get("detail") if isinstance(document, dict) else None
    return detail if isinstance(detail, str) else response.reason_phrase


def show(body: bytes, form: Form, *, console: Console | None = None) -> None:
    """Print an answer: the body itself, its CSV, or its table and summary."""
    if form == "json":
        typer.echo(body.decode())
        return
    document = json.loads(body)
    if form == "csv":
        typer.echo(csv_text(days_of(document)), nl=False)
        return
    console = console or Console()
    console.print(table(days_of(document)))
    # one line, whatever the width: a terminal wraps it, a pipe or a file gets it whole
    console.print(summary(document), soft_wrap=True, markup=False)


def bar_cells(total: int, failed: int, busiest: int, width: int = BAR_WIDTH) -> tuple[int, int]:
    """(successful, failed) cells of a day's bar: its share of the busiest day's requests
    (rounded half up, at least one cell), split by its failed share. A day with failures
    gets at least one failed cell, so failures never round away."""
    cells = max(1, _share(total, busiest, width))
    failed_cells = min(cells, max(1, _share(failed, total, cells))) if failed else 0
    return cells - failed_cells, failed_cells


def _share(part: int, whole: int, cells: int) -> int:
    """cells * part / whole rounded half up, in integers (exact)."""
    return (2 * cells * part + whole) // (2 * whole)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def bar(day: DayStats, busiest: int) -> Text:
    ok, failed = bar_cells(day.total_requests, day.failed_requests, busiest)
    return Text.assemble((OK_CELL * ok, "green"), (FAILED_CELL * failed, "red"))


def table(days: list[DayStats]) -> Table:
    """One row per day: its figures (latencies in ms) and a bar scaled to the busiest day."""
    grid = Table(box=None, pad_edge=False, collapse_padding=True)
    grid.add_column("day", no_wrap=True)
    for heading in ("requests", "failed", "uptime %", "avg ms", "median ms", "p99 ms"):
        grid.add_column(heading, justify="right", no_wrap=True)
    grid.add_column(f"{FAILED_CELL} failed", no_wrap=True)
    busiest = max(day.total_requests for day in days)
    for day in days:
        grid.add_row(
            day.date.isoformat(),
            f"{day.total_requests:,}",
            f"{day.failed_requests:,}",
            f"{day.uptime:.2f}",
            _ms(day.average_latency),
            _ms(day.median_latency),
            _ms(day.p99_latency),
            bar(day, busiest),
        )
    return grid


def summary(document: dict[str, Any]) -> str:
    """The range in one line: its totals, uptime and average latency (the mean of every
    request's; a median or p99 of the range cannot be made from the days')."""
    days = days_of(document)
    total = sum(day.total_requests for day in days)
    failed = sum(day.failed_requests for day in days)
    average = sum(day.average_latency * day.total_requests for day in days) / total
    who = document["customer_id"] or "all customers"
    return (
        f"{who} from {document['from_date']} to {document['to_date']}: {total:,} requests"
        f" on {len(days)} day{'' if len(days) == 1 else 's'}, {failed:,} failed"
        f" (status >= {document['failure_status']}),"
        f" uptime {100 * (total - failed) / total:.2f} %, average latency {_ms(average)} ms"
    )


def csv_text(days: list[DayStats]) -> str:
    """A header of DayStats' field names, then one row per day (floats as JSON has them)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(field.name for field in dataclasses.fields(DayStats))
    writer.writerows(dataclasses.astuple(day) for day in days)
    return text.getvalue()
