"""`logpipe serve`: the API's web module. It routes, checks access, validates and renders;
StatsService (service.py) computes the statistics, and ResponseCache (cache.py) answers a
request seen before without routing it again. The whole read path is described in
service.py.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from logpipe import __version__, stats
from logpipe.config import Settings, env_variable, load_settings
from logpipe.errors import BadDates, InfluxRejected, InfluxUnavailable
from logpipe.influx import AsyncInfluxClient
from logpipe.schema import CUSTOMER_ID_PATTERN
from logpipe.serve.auth import ADMIN, ApiKey, PerCaller, bearer_secret, find_key, parse_api_keys
from logpipe.serve.cache import Answer, ResponseCache, SharedAnswers
from logpipe.serve.metrics import CACHE_HITS, CACHE_MISSES, MetricsMiddleware, exposition
from logpipe.serve.service import StatsService
from logpipe.stats import MAX_RANGE_DAYS, DayStats, stats_json, to_json, utc_now

log = logging.getLogger(__name__)

PER_CALLER_QUERIES = 1
"""Uncached answers one API key may have computed at once, per worker: fewer than the
worker's query slots (service.QUERY_SLOTS), so one key never holds them all."""
RETRY_AFTER_SECONDS = 5
SHARED_ANSWERS_ENV = "LOGPIPE_SERVE_SHARED_ANSWERS"
"""Where `serve` tells its worker processes the SharedAnswers file is (not a setting)."""
DASHBOARD = FilePath(__file__).parent / "dashboard"
"""The dashboard page and its assets (Chart.js vendored: see dashboard/vendor/README.md)."""
PAGE_HEADERS = {
    # The page may load and ask only its own origin: it works offline and leaks nothing.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class StatsOut(BaseModel):
    customer_id: str | None
    """The customer; null for /stats (all customers together)."""
    from_date: date
    to_date: date
    failure_status: int
    """Requests with a status >= this counted as failed."""
    days: list[DayStats]


class CustomerOut(BaseModel):
    customer_id: str
    total_requests: int
    """Requests in the `days` counted."""


class CustomersOut(BaseModel):
    customers: list[CustomerOut]
    from_date: date
    to_date: date
    """The UTC days counted, inclusive."""
    days: int
    limit: int
    offset: int
    next_offset: int | None
    """Pass as `offset` for the next page; null on the last page."""


def date_range(from_date: str | None, to_date: str | None, *, today: date) -> tuple[date, date]:
    """stats.date_range, its BadDates a 422."""
    try:
        return stats.date_range(from_date, to_date, today=today)
    except BadDates as exc:
        raise HTTPException(422, str(exc)) from None


def render_stats(
    customer_id: str | None, first: date, last: date, failure_status: int, days: list[DayStats]
) -> Answer:
    """The answer of a stats route: 404 when no day of the range has requests."""
    if not days:
        return 404, to_json({"detail": stats.no_requests(customer_id, first, last)})
    return 200, stats_json(customer_id, first, last, failure_status, days)


@dataclass(frozen=True)
class _Web:
    """What the routes share: the app's parts other than the service (see create_app)."""

    keys: list[ApiKey] | None
    cache: ResponseCache
    per_caller: PerCaller
    cache_control: str


def _web(request: Request) -> _Web:
    return request.app.state.web  # type: ignore[no-any-return]


def _service(request: Request) -> StatsService:
    return request.app.state.service  # type: ignore[no-any-return]


_bearer = HTTPBearer(auto_error=False, description="an API key from LOGPIPE_API_KEYS")
"""Declared on the routes (for the OpenAPI schema) only when keys are configured."""


async def _caller(request: Request) -> ApiKey:
    """Who is asking: ADMIN when access control is off, else the key presented (401 without).
    Reads the header itself, so an API without keys pays nothing for authentication."""
    keys = _web(request).keys
    if keys is None:
        return ADMIN
    challenge = {"WWW-Authenticate": "Bearer"}
    presented = bearer_secret(request.headers.get("authorization", ""))
    if presented is None:
        raise HTTPException(401, "send the header Authorization: Bearer <API key>", challenge)
    key = find_key(keys, presented)
    if key is None:
        raise HTTPException(401, "unknown API key", challenge)
    return key


Caller = Annotated[ApiKey, Depends(_caller)]
FromDate = Annotated[str | None, Query(description="first day, YYYY-MM-DD")]
ToDate = Annotated[str | None, Query(description="last day, inclusive; default today (UTC)")]
FromAlias = Annotated[str | None, Query(alias="from", description="same as from_date")]
ToAlias = Annotated[str | None, Query(description="same as to_date")]


async def _answer(
    request: Request, who: ApiKey, key: Hashable, compute: Callable[[], Awaitable[Answer]]
) -> Response:
    """The cached answer of `key`, or one computed within the caller's limit (with API
    keys: each key's own; refreshes of answers kept are the cache's, one per answer)."""
    web = _web(request)
    (status, body), hit = await web.cache.get(
        key,
        compute,
        waited=(lambda: web.per_caller.run(who, compute)) if web.keys is not None else None,
    )
    (CACHE_HITS if hit else CACHE_MISSES).inc()
    headers = {"Cache-Control": web.cache_control}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def _stats(
    request: Request, who: ApiKey, customer_id: str | None, first: str | None, last: str | None
) -> Response:
    service = _service(request)
    day = service.today()
    since, until = date_range(first, last, today=day)
    key = ("stats", customer_id, since, until)
    _web(request).cache.learn(request, key, customer_id, day)  # the same again skips routing

    async def compute() -> Answer:
        days = await service.stats(customer_id, since, until)
        return render_stats(customer_id, since, until, service.failure_status, days)

    return await _answer(request, who, key, compute)


no_requests: dict[int | str, dict[str, Any]] = {404: {"description": "No requests in the range"}}
guarded = APIRouter()
"""The routes that need an API key when keys are configured."""


@guarded.get("/customers/{customer_id}/stats", response_model=StatsOut, responses=no_requests)
async def customer_stats(
    request: Request,
    who: Caller,
    customer_id: Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, max_length=128)],
    from_date: FromDate = None,
    to_date: ToDate = None,
    from_: FromAlias = None,
    to: ToAlias = None,
) -> Response:
    """Daily totals, failures, uptime and latency (average, median, p99) for one customer,
    one entry per UTC day that has requests.

    Example: `GET /customers/cust_1/stats?from_date=2026-10-01&to_date=2026-10-07`
    """
    if not who.may_see(customer_id):
        raise HTTPException(403, f"this API key may not see customer {customer_id}")
    return await _stats(request, who, customer_id, from_date or from_, to_date or to)


@guarded.get("/stats", response_model=StatsOut, responses=no_requests)
async def all_stats(
    request: Request,
    who: Caller,
    from_date: FromDate = None,
    to_date: ToDate = None,
    from_: FromAlias = None,
    to: ToAlias = None,
) -> Response:
    """The same daily statistics for all customers together (admin keys only).

    Example: `GET /stats?from_date=2026-10-01`
    """
    if who.customer_id is not None:
        raise HTTPException(403, "this API key may see only its own customer")
    return await _stats(request, who, None, from_date or from_, to_date or to)


@guarded.get("/customers", response_model=CustomersOut)
async def customers(
    request: Request,
    who: Caller,
    days: Annotated[
        int | None,
        Query(ge=1, le=MAX_RANGE_DAYS, description="count the last N UTC days [30]"),
    ] = None,
    from_date: Annotated[
        str | None, Query(description="or count from this day (YYYY-MM-DD)")
    ] = None,
    to_date: ToDate = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="customers per page")] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="customers to skip")] = 0,
) -> Response:
    """Customers with requests in the last `days` UTC days (today included), or on
    from_date..to_date, in id order, with their request totals on those days; a key bound
    to a customer sees only that customer.

    Example: `GET /customers?days=30&limit=100&offset=0`
    """
    service = _service(request)
    today = service.today()
    if from_date is None and to_date is None:
        first, last = stats.days_ending(today, days or stats.DEFAULT_DAYS)
    elif days is not None:
        raise HTTPException(422, "give either days or from_date/to_date, not both")
    else:
        first, last = date_range(from_date, to_date, today=today)

    async def compute() -> Answer:
        page = await service.customers(who.customer_id, first, last, limit=limit, offset=offset)
        return 200, to_json(
            {
                "customers": [{"customer_id": c, "total_requests": n} for c, n in page],
                "from_date": first,
                "to_date": last,
                "days": (last - first).days + 1,
                "limit": limit,
                "offset": offset,
                "next_offset": offset + limit if len(page) == limit else None,
            }
        )

    key = ("customers", who.customer_id, first, last, limit, offset)
    return await _answer(request, who, key, compute)


open_routes = APIRouter()


@open_routes.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    """The dashboard: one page reading this API from the browser (its state in the URL, e.g.
    `/?customer=cust_1&from_date=2026-11-01&to_date=2026-11-30`)."""
    return FileResponse(DASHBOARD / "index.html", headers=PAGE_HEADERS)


@open_routes.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (no InfluxDB involved)."""
    return {"status": "ok"}


@open_routes.get("/readyz", responses={503: {"description": "InfluxDB is not reachable"}})
async def readyz(request: Request) -> dict[str, str]:
    """InfluxDB answers; 503 when it does not."""
    return {"status": "ready", "influxdb": await _service(request).influxdb_version()}


@open_routes.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus metrics: requests and latency per route, cache hits, InfluxDB time."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "InfluxDB is unavailable or slow; try again shortly"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _rejected(request: Request, exc: Exception) -> JSONResponse:
    log.warning("InfluxDB refused a query: %s", exc)  # its words stay in the log
    return JSONResponse({"detail": "InfluxDB refused the query"}, status_code=502)


class _Api(FastAPI):
    """FastAPI behind a front door: the metrics, then the response cache, as plain ASGI
    callables before FastAPI's own layers (error pages, telemetry, body limit, routing), so
    a repeated request answered from the cache never enters FastAPI. The front door passes
    everything else (and every request it does not answer) to FastAPI unchanged."""

    front: Callable[[Any, Any, Any], Awaitable[None]]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.front(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    now: Callable[[], datetime] = utc_now,
    clock: Callable[[], float] = time.monotonic,
    shared: FilePath | None = None,
) -> FastAPI:
    """The API, with one pooled InfluxDB client for the app's lifetime. `now` is the wall
    clock (an aware UTC datetime), `clock` the monotonic one the caches expire by; `shared`
    the SharedAnswers file of a server's workers. Key settings that are set but name no
    valid key raise ConfigError: access control never fails open."""
    secret = settings.api_keys
    keys = None if secret is None else parse_api_keys(secret.get_secret_value())
    ttl = int(settings.cache_ttl)
    cache_control = (
        f"{'private, ' if keys else ''}max-age={ttl}, stale-while-revalidate={ttl}"
        if settings.cache_ttl > 0
        else "no-store"
    )
    cache = ResponseCache(
        settings.cache_ttl,
        keys=keys,
        today=lambda: now().date(),
        cache_control=cache_control,
        clock=clock,
        shared=shared,
        patience=settings.query_timeout,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = AsyncInfluxClient(settings, transport=transport, timeout=settings.query_timeout)
        app.state.service = StatsService(client, settings, now=now, clock=clock)
        try:
            yield
        finally:
            await client.aclose()

    app = _Api(
        title="logpipe",
        version=__version__,
        description="Per-customer daily request statistics, computed inside InfluxDB.",
        lifespan=lifespan,
    )
    app.state.web = _Web(
        keys, cache, PerCaller(PER_CALLER_QUERIES, patience=settings.query_timeout), cache_control
    )
    # outermost the metrics: they time and count the cache's answers too
    app.front = MetricsMiddleware(cache.around(functools.partial(FastAPI.__call__, app)))
    app.add_exception_handler(InfluxUnavailable, _unavailable)
    app.add_exception_handler(InfluxRejected, _rejected)
    app.include_router(guarded, dependencies=[Security(_bearer)] if keys else [])
    app.include_router(open_routes)
    app.mount("/assets", StaticFiles(directory=DASHBOARD), name="assets")
    return app


def app_from_environment() -> FastAPI:
    """The app factory of each uvicorn worker process: settings from LOGPIPE_* and .env."""
    shared = os.environ.get(SHARED_ANSWERS_ENV)
    return create_app(load_settings(), shared=FilePath(shared) if shared else None)


def _export(settings: Settings) -> None:
    """Hand the settings to worker processes through LOGPIPE_* variables."""
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if value is not None:
            text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            os.environ[env_variable(name)] = text


def run(settings: Settings) -> None:
    """Serve the API with uvicorn (`api_workers` processes) until Ctrl-C."""
    import uvicorn

    app = create_app(settings)  # bad key settings fail here, once, not in every worker
    # No access log: at level warning it is never shown, yet uvicorn would still format each
    # line's client and path (5 % of a cached answer's CPU, by py-spy).
    options = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_level": "warning",
        "access_log": False,
    }
    if settings.api_workers == 1:
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    _export(settings)
    with tempfile.TemporaryDirectory(prefix="logpipe-serve-") as private:  # mode 0700
        metrics_dir = FilePath(private, "metrics")
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # workers add them up
        answers = FilePath(private, "answers.sqlite3")
        SharedAnswers.create(answers)
        os.environ[SHARED_ANSWERS_ENV] = str(answers)
        uvicorn.run(
            "logpipe.serve:app_from_environment",
            factory=True,
            workers=settings.api_workers,
            **options,  # type: ignore[arg-type]
        )
