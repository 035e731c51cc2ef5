"""The API against a real InfluxDB: exact statistics, access control, cache, health, metrics,
and no 5xx for any input."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest
import schemathesis
from fastapi import Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from logpipe.config import load_settings
from logpipe.influx import InfluxClient
from logpipe.influxd import free_port
from logpipe.rollup import Rollups
from logpipe.serve import _caller, create_app
from tests.conftest import running_api, serving, wait_until, write_lines
from tests.reference import assert_same_days, daily_stats_of

NOW = datetime(2026, 10, 8, 0, 30, tzinfo=timezone.utc)  # yesterday may still change
DAY0 = date(2026, 10, 5)
ADMIN_KEY = "admin-0123456789abcdef"
ACME_KEY = "acme-0123456789abcdef"
_examples = itertools.count()


@pytest.fixture(scope="module")
def module_settings(influxd, tmp_path_factory):
    return load_settings(
        influx_url=influxd.url,
        influx_database="api_tests",
        state_dir=tmp_path_factory.mktemp("api"),
        cache_ttl=0,
    )


@pytest.fixture(scope="module")
def api(module_settings):
    with running_api(module_settings, now=lambda: NOW) as client:
        yield client


LINES = [
    "2026-10-05 09:00:00 acme-corp.eu /a 200 0.100",
    "2026-10-05 09:00:00 acme-corp.eu /a 503 0.300",  # same second: two requests
    "2026-10-05 10:00:00 acme-corp.eu /b 404 0.200",
    "2026-10-06 11:00:00 acme-corp.eu /b 200 0.400",
    "2026-10-05 12:00:00 tenant:7 /a 500 1.500",
    "2026-10-06 12:00:00 tenant:7 /a 200 0.500",
]


@pytest.fixture(scope="module")
def loaded(module_settings, api):
    write_lines(module_settings, LINES)
    return api


def test_stats_for_all_customers_together(loaded):
    response = loaded.get("/stats", params={"from_date": "2026-10-05", "to_date": "2026-10-06"})
    assert response.status_code == 200
    body = response.json()
    assert body["customer_id"] is None
    assert [(d["date"], d["total_requests"], d["failed_requests"]) for d in body["days"]] == [
        ("2026-10-05", 4, 2),
        ("2026-10-06", 2, 0),
    ]


def test_customers_are_listed_with_totals_and_paginated(loaded):
    first = loaded.get("/customers", params={"limit": 1}).json()
    assert first["customers"] == [{"customer_id": "acme-corp.eu", "total_requests": 4}]
    assert first["next_offset"] == 1
    second = loaded.get("/customers", params={"limit": 1, "offset": 1}).json()
    assert [c["customer_id"] for c in second["customers"]] == ["tenant:7"]
    last = loaded.get("/customers", params={"limit": 1, "offset": 2}).json()
    assert last["customers"] == [] and last["next_offset"] is None
    assert loaded.get("/customers", params={"limit": 0}).status_code == 422


def test_health_and_readiness(loaded):
    assert loaded.get("/healthz").json() == {"status": "ok"}
    ready = loaded.get("/readyz")
    assert ready.status_code == 200 and ready.json()["influxdb"].startswith("1.")


def test_metrics_count_requests_by_route(loaded):
    loaded.get("/customers/acme-corp.eu/stats", params={"from_date": "2026-10-05"})
    text = loaded.get("/metrics").text
    assert re.search(
        r'logpipe_api_requests_total\{method="GET",route="/customers/\{customer_id\}/stats",'
        r'status="200"\} [1-9]',
        text,
    )
    assert "logpipe_influx_query_seconds_count" in text
    assert 'logpipe_api_cache_lookups_total{result="miss"}' in text


def test_a_failure_threshold_of_400_counts_4xx_as_failed(module_settings, loaded):
    strict = module_settings.model_copy(update={"failure_status": 400})
    with running_api(strict, now=lambda: NOW) as client:
        body = client.get("/customers/acme-corp.eu/stats", params={"from": "2026-10-05"}).json()
    assert body["failure_status"] == 400
    assert body["days"][0]["failed_requests"] == 2  # the 503 and the 404
    inside = module_settings.model_copy(update={"failure_status": 450})
    with running_api(inside, now=lambda: NOW) as client:
        body = client.get("/customers/acme-corp.eu/stats", params={"from": "2026-10-05"}).json()
    assert body["days"][0]["failed_requests"] == 1  # the 503; 404 is below 450


# -- exact statistics, property-based --------------------------------------------------------

requests_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 2),  # day
        st.integers(0, 86399),  # second of the day
        st.sampled_from([200, 201, 204, 400, 404, 429, 500, 502, 503]),
        st.integers(0, 20_000),  # latency in ms
    ),
    min_size=1,
    max_size=80,
)


def _check_stats(api, lines: list[str]) -> None:
    """Every customer's answer over DAY0..2026-10-07 equals the reference's for `lines`."""
    expected = daily_stats_of(lines)
    expected.pop("*", None)
    for customer, days in expected.items():
        response = api.get(
            f"/customers/{customer}/stats",
            params={"from_date": str(DAY0), "to_date": "2026-10-07"},
        )
        assert response.status_code == 200, response.text
        got = response.json()["days"]
        assert [d["date"] for d in got] == sorted(days)
        for day in got:
            want = days[day["date"]]
            for name, value in want.items():
                assert day[name] == (
                    value
                    if isinstance(value, (int, str))
                    else pytest.approx(value, rel=1e-9, abs=1e-12)
                ), name


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests=requests_strategy, late=st.integers(0, 80))
def test_stats_equal_an_independent_computation(module_settings, api, requests, late):
    """From the requests; then from rollups of the closed days, with the requests after
    `late` written after the build (stale rollups: the points again); then rebuilt."""
    example = next(_examples)
    lines = []
    for customer, day, second, status, latency_ms in requests:
        clock = f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
        stamp = f"{DAY0 + timedelta(days=day)} {clock}"
        lines.append(f"{stamp} h{example}-{customer} /p {status} {latency_ms / 1000:.3f}")
    early, backfill = lines[:late], lines[late:]
    write_lines(module_settings, early, salt=example)
    _check_stats(api, early)
    with InfluxClient(module_settings) as client:
        rollups = Rollups(client, now=lambda: NOW)  # the days before 2026-10-07 are closed
        assert rollups.build_all(rollups.check()) == []
        write_lines(module_settings, backfill, salt=example + 10**6)
        _check_stats(api, lines)
        assert rollups.build_all(rollups.check()) == []
        assert rollups.check() == {}
    _check_stats(api, lines)


# -- no 5xx for any input (schemathesis, from the app's own OpenAPI schema) -------------------


@pytest.fixture(scope="module")
def api_schema(loaded):
    return schemathesis.openapi.from_url(f"{loaded.base_url}/openapi.json")


def test_no_input_gets_a_server_error(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/customers/{customer_id}/stats", "/stats"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def no_5xx(case):
            response = case.call()
            assert response.status_code < 500, (case.path, case.query, response.text)

        no_5xx()


# -- access control -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(module_settings, loaded):
    keys = f"{ADMIN_KEY}=*,{ACME_KEY}=acme-corp.eu"
    with running_api(
        module_settings.model_copy(update={"api_keys": SecretStr(keys)}), now=lambda: NOW
    ) as c:
        yield c


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_no_key_or_a_wrong_key_is_401(guarded):
    url = "/customers/acme-corp.eu/stats?from_date=2026-10-05"
    missing = guarded.get(url)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert guarded.get(url, headers=_as(ADMIN_KEY + "x")).status_code == 401
    assert ADMIN_KEY not in guarded.get(url, headers=_as("nope")).text


def test_a_customer_key_sees_only_its_customer(guarded):
    own = guarded.get("/customers/acme-corp.eu/stats?from_date=2026-10-05", headers=_as(ACME_KEY))
    assert own.status_code == 200
    other = guarded.get("/customers/tenant:7/stats?from_date=2026-10-05", headers=_as(ACME_KEY))
    assert other.status_code == 403
    assert guarded.get("/stats?from_date=2026-10-05", headers=_as(ACME_KEY)).status_code == 403
    listed = guarded.get("/customers", headers=_as(ACME_KEY)).json()["customers"]
    assert [c["customer_id"] for c in listed] == ["acme-corp.eu"]


def test_an_admin_key_sees_everything(guarded):
    assert (
        guarded.get(
            "/customers/tenant:7/stats?from_date=2026-10-05", headers=_as(ADMIN_KEY)
        ).status_code
        == 200
    )
    listed = guarded.get("/customers", headers=_as(ADMIN_KEY)).json()["customers"]
    assert len(listed) >= 2


def test_openapi_shows_the_bearer_scheme(guarded):
    schemes = guarded.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"


# -- cache -------------------------------------------------------------------------------------


def _misses(client: httpx.Client) -> float:
    found = re.search(
        r'logpipe_api_cache_lookups_total\{result="miss"\} (\S+)', client.get("/metrics").text
    )
    return float(found.group(1)) if found else 0.0


def test_100_concurrent_identical_requests_cause_one_query(module_settings, loaded):
    cached = module_settings.model_copy(update={"cache_ttl": 30})
    with running_api(cached, now=lambda: NOW) as client:
        before = _misses(client)

        async def burst():
            async with httpx.AsyncClient(base_url=str(client.base_url)) as http:
                url = "/customers/tenant:7/stats?from_date=2026-10-05"
                return await asyncio.gather(*(http.get(url) for _ in range(100)))

        responses = asyncio.run(burst())
        assert {r.status_code for r in responses} == {200}
        assert len({r.content for r in responses}) == 1
        assert responses[0].headers["Cache-Control"] == "max-age=30, stale-while-revalidate=30"
        assert _misses(client) - before == 1


def _counted(text: str, series: str) -> float:
    found = re.search(re.escape(series) + r" (\S+)", text)
    return float(found.group(1)) if found else 0.0


def _framework_calls(app) -> list[str]:
    """The paths of the requests that reach FastAPI's routes, from now on."""
    calls = []

    async def counting_caller(request: Request):
        calls.append(request.url.path)
        return await _caller(request)

    app.dependency_overrides[_caller] = counting_caller
    return calls


def test_a_request_answered_before_skips_the_framework_not_the_access_check(
    module_settings, loaded
):
    keys = f"{ADMIN_KEY}=*,{ACME_KEY}=acme-corp.eu"
    cached = module_settings.model_copy(update={"cache_ttl": 30, "api_keys": SecretStr(keys)})
    app = create_app(cached, now=lambda: NOW)
    framework = _framework_calls(app)
    own = "/customers/acme-corp.eu/stats?from_date=2026-10-05"
    other = "/customers/tenant:7/stats?from_date=2026-10-05"
    route = 'logpipe_api_requests_total{method="GET",route="/customers/{customer_id}/stats",'
    with serving(app) as client:
        before = client.get("/metrics").text
        first = client.get(own, headers=_as(ACME_KEY))
        again = client.get(own, headers=_as(ACME_KEY))
        assert framework == ["/customers/acme-corp.eu/stats"]  # the second one skipped it
        after = client.get("/metrics").text
        # the same answer, the same headers, the same metrics
        assert again.status_code == first.status_code == 200
        assert again.content == first.content
        for header in ("content-type", "content-length", "cache-control"):
            assert again.headers[header] == first.headers[header]
        assert first.headers["cache-control"].startswith("private, max-age=30")
        ok = route + 'status="200"}'
        assert _counted(after, ok) - _counted(before, ok) == 2
        hit = 'logpipe_api_cache_lookups_total{result="hit"}'
        assert _counted(after, hit) - _counted(before, hit) == 1
        # every caller is checked on every request, learned or not
        assert client.get(own).status_code == 401
        assert client.get(own, headers=_as(ACME_KEY + "x")).status_code == 401
        assert client.get(own, headers=_as(ADMIN_KEY)).status_code == 200
        assert client.get(other, headers=_as(ADMIN_KEY)).status_code == 200
        assert client.get(other, headers=_as(ACME_KEY)).status_code == 403
        assert client.get("/stats?from_date=2026-10-05", headers=_as(ADMIN_KEY)).status_code == 200
        assert client.get("/stats?from_date=2026-10-05", headers=_as(ACME_KEY)).status_code == 403
        framework.clear()
        for _ in range(2):  # learned by the admin's requests above
            assert client.get(other, headers=_as(ADMIN_KEY)).status_code == 200
            assert client.get(own, headers=_as(ADMIN_KEY)).status_code == 200
        assert framework == []


def test_answers_kept_for_short_requests_skip_the_framework(module_settings, loaded):
    quick = module_settings.model_copy(update={"cache_ttl": 1})  # and no keys
    app = create_app(quick, now=lambda: NOW)
    framework = _framework_calls(app)
    found = "/customers/tenant:7/stats?from_date=2026-10-05"
    nobody = "/customers/nobody/stats?from_date=2026-10-05"
    padded = found + "&pad=" + "x" * 300  # FastAPI ignores it; too long to be remembered
    with serving(app) as client:
        answers = [client.get(url) for url in (found, found, nobody, nobody, padded, padded)]
        assert framework == [
            "/customers/tenant:7/stats",
            "/customers/nobody/stats",
            "/customers/tenant:7/stats",
            "/customers/tenant:7/stats",
        ]
        assert [a.status_code for a in answers] == [200, 200, 404, 404, 200, 200]
        assert answers[3].content == answers[2].content and b"no requests" in answers[3].content
        assert answers[3].headers["cache-control"] == answers[2].headers["cache-control"]
        time.sleep(1.1)  # stale: still answered before FastAPI, and refreshed meanwhile
        assert client.get(found).content == answers[0].content
        assert framework[4:] == []
        time.sleep(2.1)  # two TTLs after that refresh began: too old, FastAPI's turn
        assert client.get(found).content == answers[0].content
        assert framework[4:] == ["/customers/tenant:7/stats"]


# -- InfluxDB down or slow ---------------------------------------------------------------------


def test_influxdb_down_makes_readyz_503(tmp_path):
    down = load_settings(influx_url=f"http://127.0.0.1:{free_port()}", state_dir=tmp_path)
    with running_api(down) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"


def test_a_slow_influxdb_is_a_503_after_the_query_timeout(tmp_path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        slow = load_settings(
            influx_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
            query_timeout=0.5,
            state_dir=tmp_path,
            influx_password="s3cret-password",
            influx_username="logpipe",
        )
        with running_api(slow) as client:
            response = client.get("/customers/c/stats", params={"from_date": "2026-10-01"})
    assert response.status_code == 503
    assert "s3cret" not in response.text


@pytest.mark.parametrize(
    ("now", "fresh_days"),
    [
        (NOW, {"2026-10-07": 2}),  # 00:30: yesterday may still get lines, asked for again
        (NOW.replace(hour=12), {}),  # noon: yesterday is history too, kept for 60 s
    ],
)
def test_recent_days_are_fresh_and_older_days_come_from_the_history_cache(
    module_settings, loaded, now, fresh_days
):
    quick = module_settings.model_copy(update={"cache_ttl": 0.2, "history_cache_ttl": 60})
    customer = f"hist-{now.hour}"
    lines = [
        f"2026-10-05 08:00:00 {customer} /a 200 0.1",
        f"2026-10-07 08:00:00 {customer} /a 200 0.1",
    ]
    write_lines(module_settings, lines, salt=1)
    url = f"/customers/{customer}/stats?from_date=2026-10-05"
    with running_api(quick, now=lambda: now) as client:
        before = {d["date"]: d["total_requests"] for d in client.get(url).json()["days"]}
        assert before == {"2026-10-05": 1, "2026-10-07": 1}
        write_lines(module_settings, [line.replace("08:00", "09:00") for line in lines], salt=2)
        time.sleep(0.5)  # past the TTL and the stale-while-revalidate window
        after = {d["date"]: d["total_requests"] for d in client.get(url).json()["days"]}
    assert after == {**before, **fresh_days}


def test_just_after_midnight_the_new_day_is_in_the_answer(module_settings, loaded):
    lines = ["2026-10-08 23:00:00 midnight /a 200 0.1", "2026-10-09 00:00:00 midnight /a 200 0.2"]
    write_lines(module_settings, lines)
    cached = module_settings.model_copy(update={"cache_ttl": 30})
    clock = [datetime(2026, 10, 8, 23, 59, 59, tzinfo=timezone.utc)]
    url = "/customers/midnight/stats?from_date=2026-10-08"
    with running_api(cached, now=lambda: clock[0]) as client:
        before = [d["date"] for d in client.get(url).json()["days"]]
        clock[0] += timedelta(seconds=2)  # the snapshot of 2026-10-08 is still fresh
        after = [d["date"] for d in client.get(url).json()["days"]]
    assert before == ["2026-10-08"]
    assert after == ["2026-10-08", "2026-10-09"]


def _serve_two_workers(module_settings, port: int, tmp: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "LOGPIPE_INFLUX_URL": module_settings.influx_url,
        "LOGPIPE_STATE_DIR": str(module_settings.state_dir),
        "LOGPIPE_CACHE_TTL": "30",
        "TMPDIR": tmp,  # where serve keeps its workers' metrics: nothing else may appear
    }
    return subprocess.Popen(
        [sys.executable, "-m", "logpipe", "serve", "--workers", "2", "--port", str(port),
         "--database", module_settings.influx_database],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_two_workers_answer_every_range_exactly(module_settings, loaded, tmp_path):
    """Issue 12, case 1: a worker asked days -5..-1, then -9..today; another then asked
    -9..today and answered 4 of 9 days (it took a file the first had written for other
    days), then 404 for -5..-1. Every answer of either worker must be exact, whichever
    computed it (they share answers by their whole key now), and no request may leave a
    file behind."""
    today = datetime.now(timezone.utc).date()
    days = [today - timedelta(days=n) for n in range(9, -1, -1)]
    lines = [f"{day} 08:00:0{n % 2} pair /a {200 + 300 * (n % 3 == 0)} 0.{n + 1}"
             for n, day in enumerate(days) for _ in range(2)]  # fmt: skip
    write_lines(module_settings, lines)
    expected = daily_stats_of(lines)["pair"]
    with InfluxClient(module_settings) as influx:  # rollups for some days, the others raw
        rollups = Rollups(influx)
        rollups.build_all(rollups.check())
    write_lines(module_settings, [f"{days[6]} 09:00:00 pair /b 200 0.9"], salt=9)
    expected = daily_stats_of([*lines, f"{days[6]} 09:00:00 pair /b 200 0.9"])["pair"]
    # an odd number of ranges: workers taking turns still see every one
    ranges = [(days[4], days[8]), (days[0], None), (days[0], days[9]), (days[2], days[5]),
              (days[9], None)]  # fmt: skip
    port, tmp = free_port(), tmp_path / "tmp"
    tmp.mkdir()
    server = _serve_two_workers(module_settings, port, str(tmp))
    base = f"http://127.0.0.1:{port}"
    sent = 0

    def ask(bounds: tuple[date, date | None]) -> None:
        first, last = bounds
        params = {"from_date": str(first)} | ({"to_date": str(last)} if last else {})
        with httpx.Client(base_url=base) as fresh:  # a new connection: any worker may take it
            answer = fresh.get("/customers/pair/stats", params=params)
        assert answer.status_code == 200, answer.text
        want = [v for k, v in sorted(expected.items())
                if first <= date.fromisoformat(k) <= (last or today)]  # fmt: skip
        assert_same_days(answer.json()["days"], want)

    try:
        wait_until(lambda: _answers(f"{base}/healthz"), timeout=30, what="serve --workers 2")
        with httpx.Client(base_url=base) as client, ThreadPoolExecutor(8) as pool:
            # Concurrent requests keep both workers busy, until both have computed answers
            # (one worker serving everything would miss once per range, no more)
            while sent < 100 or _misses(client) <= len(ranges):
                list(pool.map(ask, ranges * 2))
                sent += 2 * len(ranges)
                assert sent < 1000, "one worker took every connection"
            # both workers have answered: each has made its metrics files
            files_before = sorted(p.name for p in tmp.rglob("*"))
            for n in range(30):  # distinct ranges: no file per range any more (case 4)
                client.get("/customers/pair/stats", params={"from_date": str(days[n % 9])})
            files_after = sorted(p.name for p in tmp.rglob("*"))
            metrics = client.get("/metrics").text
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=20)
    assert files_after == files_before
    total = re.search(
        r'logpipe_api_requests_total\{method="GET",route="/customers/\{customer_id\}/stats",'
        r'status="200"\} (\S+)',
        metrics,
    )
    assert float(total.group(1)) == sent + 30  # both workers' requests, added up
    # each range was computed by one worker and taken by the other (SharedAnswers)
    shared = re.search(r"^logpipe_api_shared_answers_total (\S+)$", metrics, re.MULTILINE)
    assert float(shared.group(1)) >= 1


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_before_the_first_ingest_there_are_no_requests_not_an_error(module_settings):
    empty = module_settings.model_copy(update={"influx_database": "never_created"})
    with running_api(empty, now=lambda: NOW) as client:
        stats = client.get("/customers/acme-corp.eu/stats", params={"from_date": "2026-10-05"})
        listed = client.get("/customers")
    assert stats.status_code == 404 and "no requests" in stats.json()["detail"]
    assert listed.status_code == 200 and listed.json()["customers"] == []
