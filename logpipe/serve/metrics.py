"""Prometheus metrics of the API: requests and latency per route, cache lookups, InfluxDB
query time. With several uvicorn workers, prometheus-client's multiprocess mode adds them up
(PROMETHEUS_MULTIPROC_DIR, set by `serve` before the workers start)."""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("logpipe_api_requests", "API requests", ["route", "method", "status"])
REQUEST_SECONDS = Histogram("logpipe_api_request_seconds", "API request time", ["route"])
CACHE_LOOKUPS = Counter("logpipe_api_cache_lookups", "Stats cache lookups", ["result"])
QUERY_SECONDS = Histogram("logpipe_influx_query_seconds", "InfluxDB query time")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
"""HTTP methods counted under their own name."""


def method_label(method: str) -> str:
    """The `method` label of a request: any method not in METHODS is "other", since each
    label value is a series kept for the life of the process (and in every scrape), and
    a client may send any token as the method."""
    return method if method in METHODS else "other"


def exposition() -> tuple[bytes, str]:
    """The metrics as Prometheus text, from every worker process when there are several."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # no hints
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (pure ASGI, so it adds a
    few microseconds, not a task per request)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(path, method_label(scope["method"]), str(status)).inc()
            REQUEST_SECONDS.labels(path).observe(time.perf_counter() - started)
