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
CACHE_HITS = CACHE_LOOKUPS.labels("hit")
CACHE_MISSES = CACHE_LOOKUPS.labels("miss")
SHARED_ANSWERS = Counter(
    "logpipe_api_shared_answers", "Answers taken from another worker instead of computed"
)
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
        # The labelled series, looked up once: `labels()` costs as much as the rest of a
        # cached answer's bookkeeping. Bounded by the routes x METHODS x statuses the app
        # answers with (a few hundred), as the series themselves are.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[str, Any] = {}

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
            elapsed = time.perf_counter() - started
            path = getattr(scope.get("route"), "path", "unmatched")
            series = (path, method_label(scope["method"]), status)
            counted = self._counted.get(series)
            if counted is None:
                counted = REQUESTS.labels(path, series[1], str(status))
                self._counted[series] = counted
            counted.inc()
            timed = self._timed.get(path)
            if timed is None:
                timed = self._timed[path] = REQUEST_SECONDS.labels(path)
            timed.observe(elapsed)
