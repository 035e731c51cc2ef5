"""Cache hits answered before FastAPI sees them.

A cached answer costs logpipe a dictionary lookup, but FastAPI's routing, dependency
injection and query validation around it took about 90 % of a worker's time (py-spy, under
the API benchmark's load). So a request the API has validated once is remembered, by its
exact path and query string and the day it was asked on, with the cache key it was given;
the same request while that key's answer is fresh is answered here, after the same access
check. Everything else (a request not seen before, an answer gone stale and due for a
refresh, a caller to refuse) goes on to FastAPI, so the two paths cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from datetime import date
from typing import Any, NamedTuple

from starlette.requests import Request

from logpipe.serve.auth import ApiKey, bearer_secret, find_key
from logpipe.serve.cache import TTLCache, drop_oldest
from logpipe.serve.metrics import CACHE_LOOKUPS

MAX_QUERY_BYTES = 256
"""Longer query strings are not learned: FastAPI ignores unknown parameters, so a client
could otherwise fill the table with padding (uvicorn accepts 64 KiB)."""

Answer = tuple[int, bytes]
"""A rendered answer: HTTP status and JSON body, as the cache keeps it."""


class _Learned(NamedTuple):
    key: Hashable
    """The answer's key in the cache."""
    customer_id: str | None
    """The customer the answer is about (None: all customers, for admin keys only)."""
    route: Any
    """FastAPI's route, for the metrics' route label."""


class CachedHits:
    """Pure ASGI middleware; `around` is its factory for `app.add_middleware`."""

    def __init__(
        self,
        cache: TTLCache[Answer],
        *,
        keys: list[ApiKey] | None,
        today: Callable[[], date],
        cache_control: str,
        max_entries: int = 10_000,
    ) -> None:
        self._cache = cache
        self._keys = keys
        self._today = today
        self._headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", cache_control.encode()),
        ]
        self._max_entries = max_entries
        self._learned: dict[tuple[str, str, bytes, date], _Learned] = {}
        self._app: Any = None

    def around(self, app: Any) -> CachedHits:
        self._app = app
        return self

    @staticmethod
    def _request(scope: Mapping[str, Any], day: date) -> tuple[str, str, bytes, date]:
        return scope.get("root_path", ""), scope["path"], scope["query_string"], day

    def learn(self, request: Request, key: Hashable, customer_id: str | None, day: date) -> None:
        """`request`, validated by FastAPI on `day` (the day its dates were read on), has
        the answer cached under `key`."""
        scope = request.scope
        if self._cache.ttl <= 0 or len(scope["query_string"]) > MAX_QUERY_BYTES:
            return
        self._learned[self._request(scope, day)] = _Learned(key, customer_id, scope.get("route"))
        drop_oldest(self._learned, self._max_entries)

    def _allowed(self, scope: dict[str, Any], customer_id: str | None) -> bool:
        if self._keys is None:
            return True
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        secret = bearer_secret(header.decode("latin-1"))
        key = find_key(self._keys, secret) if secret else None
        return key is not None and key.may_see(customer_id)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            learned = self._learned.get(self._request(scope, self._today()))
            # The caller is checked before the answer is looked at: a refused one costs the
            # same whether that answer is fresh or not.
            if learned is not None and self._allowed(scope, learned.customer_id):
                answer = self._cache.fresh(learned.key)
            else:
                answer = None
            if learned is not None and answer is not None:
                scope["route"] = learned.route
                CACHE_LOOKUPS.labels("hit").inc()
                status, body = answer
                length = (b"content-length", str(len(body)).encode())
                start = {"status": status, "headers": [length, *self._headers]}
                await send({"type": "http.response.start", **start})
                await send({"type": "http.response.body", "body": body})
                return
        await self._app(scope, receive, send)
