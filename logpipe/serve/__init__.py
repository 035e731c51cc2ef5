"""`logpipe serve`: the FastAPI app answering daily statistics per customer.

Every statistic is computed inside InfluxDB, one /query round trip per request: closed days
from the daily rollups where they are current (logpipe.rollup), the others from the requests.
Answers are cached for `cache_ttl` seconds with concurrent identical requests sharing one query.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import ExitStack, asynccontextmanager
from datetime import date, datetime, timedelta
from typing import Annotated, Any, NamedTuple

import httpx
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from logpipe import __version__
from logpipe.config import Settings, env_variable, load_settings
from logpipe.errors import InfluxRejected, InfluxUnavailable
from logpipe.influx import AsyncInfluxClient
from logpipe.rollup import supported
from logpipe.schema import CUSTOMER_ID_PATTERN
from logpipe.serve.auth import ADMIN, ApiKey, bearer_secret, find_key, parse_api_keys
from logpipe.serve.cache import HistoryCache, SharedFile, TTLCache
from logpipe.serve.hits import Answer, CachedHits
from logpipe.serve.metrics import (
    CACHE_LOOKUPS,
    QUERY_SECONDS,
    MetricsMiddleware,
    exposition,
)
from logpipe.stats import (
    DayStats,
    customer_totals,
    customers_query,
    day_spans,
    day_stats,
    day_stats_by_customer,
    live_from,
    rollup_days,
    rollup_query,
    stats_query,
    utc_now,
)

MAX_RANGE_DAYS = 366
QUERY_SLOTS = 2
"""InfluxDB queries one worker runs at once: bursts of cache refreshes must not take the
cores from the requests being answered, and overload queues here, bounded, not in InfluxDB."""
RETRY_AFTER_SECONDS = 5
SHARED_DIR_VARIABLE = "LOGPIPE_SERVE_SHARED_DIR"
"""Where `serve --workers N` tells its workers to share the recent-days snapshot."""
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class Recent(NamedTuple):
    """Every customer's statistics of the days that may still change, as of `written`."""

    written: float
    """When its query was sent (time.monotonic(), the same clock in every worker)."""
    days: dict[str, dict[date, DayStats]]


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


class CustomersOut(BaseModel):
    customers: list[CustomerOut]
    limit: int
    offset: int
    next_offset: int | None
    """Pass as `offset` for the next page; null on the last page."""


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


def _json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), default=str).encode()


_bearer = HTTPBearer(auto_error=False, description="an API key from LOGPIPE_API_KEYS")
"""Declared on the routes (for the OpenAPI schema) only when keys are configured."""


async def _caller(request: Request) -> ApiKey:
    """Who is asking: ADMIN when access control is off, else the key presented (401 without).
    Reads the header itself, so an API without keys pays nothing for authentication."""
    keys: list[ApiKey] | None = request.app.state.api_keys
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


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    now: Callable[[], datetime] = utc_now,
    shared_dir: pathlib.Path | None = None,
) -> FastAPI:
    """The API, with one pooled InfluxDB client for the app's lifetime. Worker processes
    given the same `shared_dir` share one recent-days snapshot (else the app has its own).
    `now` is the clock, an aware UTC datetime."""
    keys = parse_api_keys(settings.api_keys.get_secret_value()) if settings.api_keys else None
    cache: TTLCache[Answer] = TTLCache(settings.cache_ttl)
    # No jitter: the workers' file already spreads the refreshes, and a snapshot read from
    # it must be fresh for the rest of its TTL, not expire on arrival.
    recent: TTLCache[Recent] = TTLCache(
        settings.cache_ttl, jitter=0, age=lambda snapshot: time.monotonic() - snapshot.written
    )
    history = HistoryCache(settings.history_cache_ttl if settings.cache_ttl > 0 else 0)

    def today() -> date:
        return now().date()

    ttl = int(settings.cache_ttl)
    cache_control = (
        f"{'private, ' if keys else ''}max-age={ttl}, stale-while-revalidate={ttl}"
        if settings.cache_ttl > 0
        else "no-store"
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.influx = AsyncInfluxClient(
            settings, transport=transport, timeout=settings.query_timeout
        )
        app.state.query_slots = asyncio.Semaphore(QUERY_SLOTS)
        app.state.rollups = None  # see rollups_readable
        with ExitStack() as own:
            directory = shared_dir or pathlib.Path(
                own.enter_context(tempfile.TemporaryDirectory(prefix="logpipe-serve-"))
            )
            # Patience: the other worker may wait for a query slot, then for its query.
            patience = 2 * settings.query_timeout + 1
            app.state.shared = SharedFile(directory, settings.cache_ttl, patience=patience)
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
    hits = CachedHits(cache, keys=keys, today=today, cache_control=cache_control)
    app.add_middleware(hits.around)
    app.add_middleware(MetricsMiddleware)  # outermost: it times and counts the hits too
    app.state.api_keys = keys

    @app.exception_handler(InfluxUnavailable)
    async def _unavailable(request: Request, exc: InfluxUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": "InfluxDB is unavailable or slow; try again shortly"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(InfluxRejected)
    async def _rejected(request: Request, exc: InfluxRejected) -> JSONResponse:
        return JSONResponse({"detail": f"InfluxDB refused the query: {exc}"}, status_code=502)

    async def query(q: str) -> list[list[dict[str, Any]]]:
        slots: asyncio.Semaphore = app.state.query_slots
        try:
            await asyncio.wait_for(slots.acquire(), settings.query_timeout)
        except asyncio.TimeoutError:
            raise InfluxUnavailable("every InfluxDB query slot stayed busy") from None
        started = time.perf_counter()
        try:
            return await app.state.influx.query(q)  # type: ignore[no-any-return]
        except InfluxRejected:
            # Before the processor's first run there is no database: no requests, not an
            # error. (InfluxDB 1.6 says "not executed" rather than "database not found" when
            # a query has several statements, hence the question.)
            if not await app.state.influx.database_exists():
                return [[] for _ in q.split(";")]
            raise
        finally:
            slots.release()
            QUERY_SECONDS.observe(time.perf_counter() - started)

    async def shared_query(name: str, q: str) -> list[list[dict[str, Any]]]:
        """`query`, but worker processes asking the same within a TTL share one answer: a
        restarted server's workers, say, each warming up on the same busy customer."""
        if cache.ttl <= 0:
            return await query(q)
        _, statements = await app.state.shared.get(name, lambda: query(q))
        return statements

    async def answer(key: Hashable, compute: Callable[[], Any]) -> Response:
        (status, body), hit = await cache.get(key, compute)
        CACHE_LOOKUPS.labels("hit" if hit else "miss").inc()
        return Response(
            body,
            status_code=status,
            media_type="application/json",
            headers={"Cache-Control": cache_control},
        )

    async def recent_days(since: date, until: date) -> Recent:
        """Every customer's statistics of the days since..until, one query for all workers."""
        threshold = settings.failure_status
        q = stats_query(None, since, until, failure_status=threshold, by_customer=True)
        name = f"recent-{since}-{until}"
        written, statements = await app.state.shared.get(name, lambda: query(q))
        grouped = day_stats_by_customer(statements, failure_status=threshold)
        days = {customer: {day.date: day for day in days} for customer, days in grouped.items()}
        return Recent(written, days)

    async def rollups_readable() -> bool:
        """Whether the server can hold rollups (only 1.x has SELECT … INTO): asked once."""
        if app.state.rollups is None:
            app.state.rollups = supported(await app.state.influx.ping())
        return bool(app.state.rollups)

    async def fetch(
        customer_id: str | None, days: list[date], live: date
    ) -> dict[date, DayStats | None]:
        """The statistics of `days` (in order; None: no requests) in one round trip: closed
        days from the customer's rollups where they cover exactly the requests stored, the
        others from the requests. Closed days whose rollup is missing or behind take a
        second one."""
        threshold = settings.failure_status
        who = "all" if customer_id is None else f"customer-{customer_id}"

        def by_date(answer: list[list[dict[str, Any]]]) -> dict[date, DayStats]:
            return {day.date: day for day in day_stats(answer, failure_status=threshold)}

        closed = [day for day in days if day < live]
        # rollups count failures by status class: a threshold inside a class needs the points
        rolled = bool(closed) and threshold % 100 == 0 and await rollups_readable()
        raw = [day for day in days if not rolled or day >= live]
        statements = [rollup_query(customer_id, closed[0], closed[-1])] if rolled else []
        if raw:
            statements.append(stats_query(customer_id, raw[0], raw[-1], failure_status=threshold))
        answer = await shared_query(
            f"days-{who}-{days[0]}-{days[-1]}-{live}", "; ".join(statements)
        )
        found: dict[date, DayStats | None] = {}
        behind: list[date] = []
        if rolled:
            current, behind = rollup_days(answer[:2], failure_status=threshold)
            found.update({day.date: day for day in current})
            answer = answer[2:]
        if raw:
            found.update(by_date(answer))

        async def requests_of(first: date, last: date) -> dict[date, DayStats]:
            q = stats_query(customer_id, first, last, failure_status=threshold)
            return by_date(await shared_query(f"days-{who}-{first}-{last}-behind", q))

        # only the days behind: a sort of the days between them would cost what rollups save
        for fetched in await asyncio.gather(*(requests_of(*s) for s in day_spans(behind))):
            found.update(fetched)
        return {day: found.get(day) for day in days}

    async def stats_answer(customer_id: str | None, first: date, last: date) -> Answer:
        threshold = settings.failure_status
        wanted = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        clock = now()
        live, current = live_from(clock), clock.date()
        known = history.known(customer_id, [day for day in wanted if day < live])
        missing = [day for day in wanted if day not in known]
        recent_only = missing and live <= missing[0] <= wanted[-1] <= current
        if customer_id is not None and recent_only and cache.ttl > 0:
            # Only recent days are missing: take them from the snapshot of all customers,
            # one query per TTL for everyone instead of one per customer.
            span = (live, current)
            snapshot, _ = await recent.get(span, lambda: recent_days(*span))
            mine = snapshot.days.get(customer_id, {})
            known.update({day: mine.get(day) for day in missing})
            missing = []
        if missing:
            fetched = await fetch(customer_id, missing, live)
            known.update({day: fetched[day] for day in missing})
            history.keep(customer_id, {day: known[day] for day in missing if day < live})
        days = [known[day] for day in wanted if known[day] is not None]
        if not days:
            who = customer_id or "any customer"
            return 404, _json({"detail": f"no requests for {who} from {first} to {last}"})
        document = {
            "customer_id": customer_id,
            "from_date": first,
            "to_date": last,
            "failure_status": threshold,
            "days": [vars(day) for day in days],
        }
        return 200, _json(document)

    async def stats_response(
        request: Request, customer_id: str | None, first: date, last: date, day: date
    ) -> Response:
        key = ("stats", customer_id, first, last)
        hits.learn(request, key, customer_id, day)  # the same request again: answered by `hits`
        return await answer(key, lambda: stats_answer(customer_id, first, last))

    no_requests: dict[int | str, dict[str, Any]] = {
        404: {"description": "No requests in the range"}
    }

    guarded: list[Any] = [Security(_bearer)] if keys else []

    @app.get(
        "/customers/{customer_id}/stats",
        response_model=StatsOut,
        responses=no_requests,
        dependencies=guarded,
    )
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
        day = today()
        first, last = date_range(from_date or from_, to_date or to, today=day)
        return await stats_response(request, customer_id, first, last, day)

    @app.get("/stats", response_model=StatsOut, responses=no_requests, dependencies=guarded)
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
        day = today()
        first, last = date_range(from_date or from_, to_date or to, today=day)
        return await stats_response(request, None, first, last, day)

    @app.get("/customers", response_model=CustomersOut, dependencies=guarded)
    async def customers(
        who: Caller,
        limit: Annotated[int, Query(ge=1, le=1000, description="customers per page")] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000, description="customers to skip")] = 0,
    ) -> Response:
        """Customers seen, in id order, with their request totals; a key bound to a customer
        sees only that customer.

        Example: `GET /customers?limit=100&offset=0`
        """

        async def compute() -> Answer:
            q = customers_query(customer_id=who.customer_id, limit=limit, offset=offset)
            page = customer_totals(await query(q))
            return 200, _json(
                {
                    "customers": [{"customer_id": c, "total_requests": n} for c, n in page],
                    "limit": limit,
                    "offset": offset,
                    "next_offset": offset + limit if len(page) == limit else None,
                }
            )

        return await answer(("customers", who.customer_id, limit, offset), compute)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive (no InfluxDB involved)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "InfluxDB is not reachable"}})
    async def readyz() -> dict[str, str]:
        """InfluxDB answers; 503 when it does not."""
        version = await app.state.influx.ping()
        return {"status": "ready", "influxdb": version}

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics: requests and latency per route, cache hits, InfluxDB time."""
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    return app


def app_from_environment() -> FastAPI:
    """The app factory of each uvicorn worker process: settings from LOGPIPE_* and .env."""
    shared = os.environ.get(SHARED_DIR_VARIABLE)
    return create_app(load_settings(), shared_dir=pathlib.Path(shared) if shared else None)


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

    options = {"host": settings.api_host, "port": settings.api_port, "log_level": "warning"}
    if settings.api_workers == 1:
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
        return
    if settings.api_keys:  # a malformed key list fails here, not in every worker
        parse_api_keys(settings.api_keys.get_secret_value())
    _export(settings)
    with tempfile.TemporaryDirectory(prefix="logpipe-serve-") as workers_dir:
        for part, variable in (
            ("metrics", "PROMETHEUS_MULTIPROC_DIR"),
            ("shared", SHARED_DIR_VARIABLE),
        ):
            os.environ[variable] = os.path.join(workers_dir, part)
            os.mkdir(os.environ[variable])
        uvicorn.run(
            "logpipe.serve:app_from_environment",
            factory=True,
            workers=settings.api_workers,
            **options,  # type: ignore[arg-type]
        )
