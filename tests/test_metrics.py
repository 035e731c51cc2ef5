"""The API's Prometheus metrics, through MetricsMiddleware around a tiny ASGI app (no
InfluxDB): a made-up HTTP method cannot add a series."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from logpipe.serve.metrics import MetricsMiddleware, exposition, method_label


async def _teapot(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _request(method: str, middleware: MetricsMiddleware | None = None) -> None:
    """One request through the middleware; its route is unmatched (no router set one)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = {"type": "http", "method": method, "path": "/", "headers": []}
    asyncio.run((middleware or MetricsMiddleware(_teapot))(scope, receive, send))


def _count(exposed: bytes, method: str) -> float:
    """The exposition's count of this test's requests made with `method`."""
    labels = {"route": "unmatched", "method": method, "status": "418"}
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposed.decode())
        for sample in family.samples
        if sample.name == "logpipe_api_requests_total" and sample.labels == labels
    )


@pytest.mark.parametrize(
    ("method", "label"),
    [("GET", "GET"), ("OPTIONS", "OPTIONS"), ("BREW", "other"), ("get", "other"), ("", "other")],
)
def test_method_label_keeps_the_standard_methods_only(method, label):
    assert method_label(method) == label


def test_made_up_methods_are_counted_together_as_other():
    before, _ = exposition()
    for method in ["BREW", "PROPFIND", "X" * 200, "GET"]:
        _request(method)
    after, content_type = exposition()
    assert content_type.startswith("text/plain")
    assert _count(after, "other") - _count(before, "other") == 3
    assert _count(after, "GET") - _count(before, "GET") == 1
    assert b"BREW" not in after and b"PROPFIND" not in after and b"XXXX" not in after


def test_the_series_one_middleware_keeps_are_bounded_by_their_labels():
    """The middleware keeps each labelled series it used, by label values: made-up methods
    share one, so a client cannot grow what it keeps."""
    middleware = MetricsMiddleware(_teapot)
    before, _ = exposition()
    for n in range(50):
        _request(f"M{n}", middleware)
    _request("GET", middleware)
    after, _ = exposition()
    assert _count(after, "other") - _count(before, "other") == 50
    assert set(middleware._counted) == {("unmatched", "other", 418), ("unmatched", "GET", 418)}
    assert set(middleware._timed) == {"unmatched"}
