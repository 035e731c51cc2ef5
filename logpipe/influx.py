"""The one InfluxDB client: line protocol to /write, InfluxQL to /query, over httpx.

It speaks the 1.x-compatible HTTP API that InfluxDB 1.x, 2.x (v1 compatibility) and 3.x all
serve. httpx errors and HTTP statuses become logpipe errors here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import httpx

from logpipe.config import Settings, redact_url
from logpipe.errors import InfluxRejected, InfluxUnavailable

Series = dict[str, Any]


def _client_options(settings: Settings, timeout: float | None = None) -> dict[str, Any]:
    """base_url, auth headers and timeout shared by the sync and async clients.

    A user and password in the URL become basic auth, as httpx would make them, but the
    base URL goes without them: httpx puts request URLs in its log and in some errors."""
    url = httpx.URL(settings.influx_url)
    headers = {}
    auth = httpx.BasicAuth(url.username, url.password) if url.username or url.password else None
    if settings.influx_token is not None:
        headers["Authorization"] = f"Token {settings.influx_token.get_secret_value()}"
    elif settings.influx_username:
        password = settings.influx_password.get_secret_value() if settings.influx_password else ""
        auth = httpx.BasicAuth(settings.influx_username, password)
    return {
        "base_url": url.copy_with(username=None, password=None),
        "headers": headers,
        "auth": auth,
        "timeout": httpx.Timeout(timeout or settings.influx_timeout),
    }


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text)).strip()
    except ValueError:
        return response.text.strip()[:500]


def _check(response: httpx.Response, what: str) -> None:
    """Raise InfluxUnavailable (worth retrying) or InfluxRejected for a non-2xx answer."""
    if response.is_success:
        return
    message = f"InfluxDB {what} failed with {response.status_code}: {_error_message(response)}"
    if response.status_code >= 500 or response.status_code == 429:
        raise InfluxUnavailable(message, retry_after=_retry_after(response))
    raise InfluxRejected(message, status_code=response.status_code)


def _version(ping: httpx.Response) -> str:
    """The server's version, from the answer to /ping."""
    return str(ping.headers.get("X-Influxdb-Version", "unknown"))


def _unavailable(exc: httpx.HTTPError, url: str) -> InfluxUnavailable:
    """The error to show, log and retry on; `url` is shown without its password."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
    return InfluxUnavailable(
        f"InfluxDB at {redact_url(url)} {kind} ({exc.__class__.__name__}: {exc})"
    )


def series_of(answer: dict[str, Any]) -> list[list[Series]]:
    """The series of each statement of a /query answer; an error in any statement raises."""
    results = answer.get("results", [])
    for result in results:
        if "error" in result:
            raise InfluxRejected(f"InfluxDB query failed: {result['error']}")
    return [result.get("series", []) for result in results]


class InfluxClient:
    """Blocking client with a pooled connection, for the processor and the CLI."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        self.database = settings.influx_database
        self._http = httpx.Client(transport=transport, **_client_options(settings))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _unavailable(exc, self.settings.influx_url) from exc
        _check(response, what)
        return response

    def ping(self) -> str:
        """The server's version; raises InfluxUnavailable when nothing answers."""
        return _version(self._send("GET", "/ping", "ping"))

    def write(self, body: bytes) -> None:
        """Write line protocol (nanosecond timestamps). A 400 is InfluxRejected."""
        self._send(
            "POST",
            "/write",
            "write",
            params={"db": self.database, "precision": "ns"},
            content=body,
        )

    def query(
        self, q: str, *, write: bool = False, timeout: float | None = None
    ) -> list[list[Series]]:
        """Run InfluxQL statements (`;`-separated); the series of each statement. `write`
        for statements that change something (CREATE, DROP, SELECT … INTO): they are POSTed."""
        params = {"db": self.database, "q": q, "epoch": "s"}
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        if write:
            response = self._send("POST", "/query", "query", data=params, **options)
        else:
            response = self._send("GET", "/query", "query", params=params, **options)
        return series_of(response.json())

    def ensure_database(self) -> None:
        """Create the database on 1.x when missing; elsewhere say how to create it."""
        name = self.database
        try:
            if _lists_database(self.query("SHOW DATABASES"), name):
                return
            self.query(f'CREATE DATABASE "{name}"', write=True)
        except InfluxRejected as exc:
            raise InfluxRejected(
                f"database {name!r} is missing and could not be created ({exc}). Create it with "
                f"`influx bucket create --name {name}` (InfluxDB 2.x) or "
                f"`influxdb3 create database {name}` (InfluxDB 3), then run again.",
                status_code=exc.status_code,
            ) from exc


def _lists_database(shown: list[list[Series]], name: str) -> bool:
    """Whether SHOW DATABASES's answer names `name`."""
    return any([name] in series.get("values", []) for statement in shown for series in statement)


class AsyncInfluxClient:
    """Non-blocking client for the API; one per app, opened and closed by its lifespan."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | None = None,
    ):
        self.settings = settings
        self.database = settings.influx_database
        options = _client_options(settings, timeout)
        # One pooled client for many concurrent requests of the app.
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self._http = httpx.AsyncClient(transport=transport, limits=limits, **options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.get(path, **kwargs)
        except httpx.HTTPError as exc:
            raise _unavailable(exc, self.settings.influx_url) from exc
        _check(response, what)
        return response

    async def query(self, q: str) -> list[list[Series]]:
        params = {"db": self.database, "q": q, "epoch": "s"}
        return series_of((await self._send("/query", "query", params=params)).json())

    async def database_exists(self) -> bool:
        return _lists_database(await self.query("SHOW DATABASES"), self.database)

    async def ping(self) -> str:
        return _version(await self._send("/ping", "ping"))
