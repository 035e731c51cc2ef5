"""`logpipe serve`: the FastAPI app answering daily statistics per customer."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timezone
from typing import Annotated

import httpx
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from logpipe import __version__
from logpipe.config import Settings
from logpipe.errors import InfluxRejected, InfluxUnavailable
from logpipe.influx import AsyncInfluxClient
from logpipe.schema import CUSTOMER_ID_PATTERN
from logpipe.stats import day_stats, stats_query

MAX_RANGE_DAYS = 366
RETRY_AFTER_SECONDS = 5
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class DayStatsOut(BaseModel):
    date: date
    total_requests: int
    successful_requests: int
    failed_requests: int
    uptime: float
    average_latency: float
    median_latency: float
    p99_latency: float


class StatsOut(BaseModel):
    customer_id: str
    from_date: date
    to_date: date
    failure_status: int
    """Requests with a status >= this counted as failed."""
    days: list[DayStatsOut]


def _utc_today() -> date:
    return datetime.now(timezone.utc).date()


def _parse_day(name: str, value: str) -> date:
    if not _DATE.fullmatch(value):
        raise HTTPException(422, f"{name}: {value[:40]!r} is not a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"{name}: {value!r} is not a real date") from None


def date_range(from_date: str | None, to_date: str | None, *, today: date) -> tuple[date, date]:
    """Validate the requested days: both dates real, in order, at most MAX_RANGE_DAYS."""
    if from_date is None:
        raise HTTPException(422, "from_date is required (YYYY-MM-DD)")
    first = _parse_day("from_date", from_date)
    last = _parse_day("to_date", to_date) if to_date is not None else today
    if last < first:
        raise HTTPException(422, f"to_date {last} is before from_date {first}")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise HTTPException(422, f"the range may span at most {MAX_RANGE_DAYS} days")
    return first, last


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    today: Callable[[], date] = _utc_today,
) -> FastAPI:
    """The API, with one pooled InfluxDB client for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.influx = AsyncInfluxClient(settings, transport=transport)
        try:
            yield
        finally:
            await app.state.influx.aclose()

    app = FastAPI(
        title="logpipe",
        version=__version__,
        description="Per-customer daily request statistics, computed inside InfluxDB.",
        lifespan=lifespan,
    )

    @app.exception_handler(InfluxUnavailable)
    async def _unavailable(request: Request, exc: InfluxUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": "InfluxDB is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(InfluxRejected)
    async def _rejected(request: Request, exc: InfluxRejected) -> JSONResponse:
        return JSONResponse({"detail": f"InfluxDB refused the query: {exc}"}, status_code=502)

    @app.get(
        "/customers/{customer_id}/stats",
        response_model=StatsOut,
        responses={404: {"description": "No requests in the range"}},
    )
    async def customer_stats(
        request: Request,
        customer_id: Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, max_length=128)],
        from_date: Annotated[str | None, Query(description="first day, YYYY-MM-DD")] = None,
        to_date: Annotated[
            str | None, Query(description="last day, inclusive; default today (UTC)")
        ] = None,
        from_: Annotated[str | None, Query(alias="from", description="same as from_date")] = None,
        to: Annotated[str | None, Query(description="same as to_date")] = None,
    ) -> StatsOut:
        """Daily totals, failures, uptime and latency (average, median, p99) for one customer,
        one entry per UTC day that has requests.

        Example: `GET /customers/cust_1/stats?from_date=2026-10-01&to_date=2026-10-07`
        """
        first, last = date_range(from_date or from_, to_date or to, today=today())
        query = stats_query(customer_id, first, last, failure_status=settings.failure_status)
        days = day_stats(await request.app.state.influx.query(query))
        if not days:
            raise HTTPException(404, f"no requests for {customer_id} from {first} to {last}")
        return StatsOut(
            customer_id=customer_id,
            from_date=first,
            to_date=last,
            failure_status=settings.failure_status,
            days=[DayStatsOut(**vars(day)) for day in days],
        )

    return app


def run(settings: Settings) -> None:
    """Serve the API with uvicorn until Ctrl-C."""
    import uvicorn

    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning"
    )
