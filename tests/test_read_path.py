"""The read path's hardening against a real influxd (issue 12): a point rewritten under a
rollup, key settings that name no key, one caller's limit, and /customers' time bound."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone

import httpx
import pytest

from logpipe.config import load_settings
from logpipe.errors import ConfigError
from logpipe.influx import InfluxClient
from logpipe.influxd import free_port
from logpipe.rollup import Rollups
from logpipe.serve import create_app
from tests.conftest import logpipe_env, running_api, start_process, write_lines
from tests.reference import assert_same_days, daily_stats_of

NOW = datetime(2026, 10, 8, 12, 0, tzinfo=timezone.utc)
LINES = [
    "2026-10-01 10:00:00 cust_1 /a 200 0.100",
    "2026-10-01 11:00:00 cust_1 /a 500 0.200",
    "2026-10-01 11:30:00 cust_1 /a 200 0.250",
    "2026-10-01 12:00:00 cust_2 /a 200 0.300",
]
ADMIN_KEY = "admin-0123456789abcdef"
OTHER_KEY = "other-0123456789abcdef"


def _check_oct1(client: httpx.Client, lines: list[str]) -> None:
    """cust_1's and everyone's answers for 2026-10-01 equal the reference's for `lines`."""
    expected = daily_stats_of(lines)
    for url, who in (("/customers/cust_1/stats", "cust_1"), ("/stats", "*")):
        response = client.get(url, params={"from_date": "2026-10-01", "to_date": "2026-10-02"})
        assert response.status_code == 200, response.text
        assert_same_days(response.json()["days"], [expected[who]["2026-10-01"]])


def _stored_median(settings, customer: str) -> float:
    with InfluxClient(settings) as client:
        (series,) = client.query(
            f"SELECT median FROM requests_daily WHERE customer_id = '{customer}'"
            " AND status_class = ''"
        )
    return float(series[0]["values"][0][1])


def test_a_point_rewritten_under_a_rollup_is_never_served_stale(settings):
    """Issue 12, case 2: a point rewritten with another latency at the same timestamp keeps
    the day's count; the API and `logpipe rollup` both took the old rollup as current."""
    write_lines(settings, LINES, salt=1)
    with InfluxClient(settings) as influx:
        rollups = Rollups(influx, now=lambda: NOW)
        rollups.build_all(rollups.check())
        assert rollups.check() == {}
    assert _stored_median(settings, "cust_1") == pytest.approx(0.2)
    rewritten = [line.replace("0.100", "0.900") for line in LINES]  # same length: same time
    uncached = settings.model_copy(update={"cache_ttl": 0})
    with running_api(uncached, now=lambda: NOW) as client:
        write_lines(settings, rewritten, salt=1)
        _check_oct1(client, rewritten)
        with InfluxClient(settings) as influx:
            (counted,) = influx.query("SELECT count(latency) FROM requests")
            assert counted[0]["values"][0][1] == len(LINES)  # replaced, not added
            rollups = Rollups(influx, now=lambda: NOW)
            # the write marked cust_2's day too (its point was written again, unchanged)
            assert rollups.check() == {1790812800: ["cust_1", "cust_2"]}
        process = start_process(settings, command="rollup")
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
        assert "1 day: 2 customer-days" in output
        assert _stored_median(settings, "cust_1") == pytest.approx(0.25)  # rebuilt
        with InfluxClient(settings) as influx:
            assert Rollups(influx, now=lambda: NOW).check() == {}
        _check_oct1(client, rewritten)


def test_rollup_rebuild_builds_every_closed_day_current_or_not(settings):
    write_lines(settings, LINES, salt=1)
    with InfluxClient(settings) as influx:
        rollups = Rollups(influx, now=lambda: NOW)
        rollups.build_all(rollups.check())
        assert rollups.check(rebuild=True) == {1790812800: ["cust_1", "cust_2"]}


@pytest.mark.parametrize("keys", ["", "   ", " , ,", "short=*", "admin-0123456789abcdef=bad id"])
def test_key_settings_that_name_no_valid_key_refuse_to_start(tmp_path, keys):
    """Issue 12, case 3: LOGPIPE_API_KEYS="" turned access control off."""
    with pytest.raises(ConfigError):
        create_app(load_settings(api_keys=keys, state_dir=tmp_path))


def test_serve_with_an_empty_key_setting_exits_with_one_clear_line(settings):
    env = {**os.environ, **logpipe_env(settings), "LOGPIPE_API_KEYS": ""}
    port = str(free_port())
    finished = subprocess.run(
        [sys.executable, "-m", "logpipe", "serve", "--port", port, "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert finished.returncode == 1
    (line,) = finished.stderr.strip().splitlines()
    assert line.startswith("Error:") and "api_keys" in line and "no key" in line


class _Slow(httpx.AsyncHTTPTransport):
    """The real InfluxDB, each query answered `delay` seconds late."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/query":
            await asyncio.sleep(self.delay)
        return await super().handle_async_request(request)


def test_one_caller_cannot_hold_every_query_slot(settings):
    """Issue 12, case 5: one key could hold both query slots of a worker with slow queries.
    Now its second uncached question waits for its first (up to the query timeout), then
    is a 429, while another key's question is answered."""
    write_lines(settings, LINES)
    limited = load_settings(
        influx_url=settings.influx_url,
        influx_database=settings.influx_database,
        state_dir=settings.state_dir,
        api_keys=f"{ADMIN_KEY}=*,{OTHER_KEY}=*",
        query_timeout=1.0,
    )
    answers: dict[str, httpx.Response] = {}

    def ask(name: str, key: str, day: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            answers[name] = client.get(
                "/customers/cust_1/stats",
                params={"from_date": day},
                headers={"Authorization": f"Bearer {key}"},
            )

    with running_api(limited, now=lambda: NOW, transport=_Slow(3.0)) as api:
        base = str(api.base_url)
        first = threading.Thread(target=ask, args=("first", ADMIN_KEY, "2026-10-01"))
        first.start()
        time.sleep(0.3)  # the first is in its query now
        others = [
            threading.Thread(target=ask, args=("second", ADMIN_KEY, "2026-10-02")),
            threading.Thread(target=ask, args=("other", OTHER_KEY, "2026-10-03")),
        ]
        for thread in others:
            thread.start()
        for thread in [first, *others]:
            thread.join(30)
        again = api.get(
            "/customers/cust_1/stats",
            params={"from_date": "2026-10-04"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
    assert answers["first"].status_code == 200
    assert answers["second"].status_code == 429, answers["second"].text
    assert answers["second"].headers["Retry-After"] == "1"
    assert "already has 1 uncached" in answers["second"].json()["detail"]
    assert answers["other"].status_code == 404  # answered: no requests from 2026-10-03
    assert again.status_code == 404  # the first is done: this key may ask again


def test_customers_counts_only_the_days_asked(settings):
    """Issue 12, case 5: /customers counted all time, without bound."""
    lines = [
        "2026-08-29 10:00:00 old /a 200 0.1",  # 41 days before NOW
        "2026-10-06 10:00:00 new /a 200 0.1",
        "2026-10-06 11:00:00 new /a 200 0.1",
        "2026-10-06 11:00:00 old /a 200 0.1",
    ]
    write_lines(settings, lines)
    with running_api(settings, now=lambda: NOW) as client:
        month = client.get("/customers").json()
        longer = client.get("/customers", params={"days": 41}).json()
    assert month["days"] == 30
    assert month["customers"] == [
        {"customer_id": "new", "total_requests": 2},
        {"customer_id": "old", "total_requests": 1},
    ]
    assert longer["customers"][1] == {"customer_id": "old", "total_requests": 2}
    assert (month["from_date"], month["to_date"]) == ("2026-09-09", "2026-10-08")


def test_customers_counts_a_range_of_days_when_asked(settings):
    lines = [
        "2026-10-01 10:00:00 a /a 200 0.1",
        "2026-10-02 10:00:00 a /a 200 0.1",
        "2026-10-02 11:00:00 b /a 200 0.1",
        "2026-10-03 11:00:00 b /a 200 0.1",
    ]
    write_lines(settings, lines)
    with running_api(settings, now=lambda: NOW) as client:
        one_day = client.get(
            "/customers", params={"from_date": "2026-10-02", "to_date": "2026-10-02"}
        )
        since = client.get("/customers", params={"from_date": "2026-10-03"}).json()
        both = client.get("/customers", params={"from_date": "2026-10-03", "days": 3})
        backwards = client.get(
            "/customers", params={"from_date": "2026-10-03", "to_date": "2026-10-01"}
        )
    assert one_day.json()["customers"] == [
        {"customer_id": "a", "total_requests": 1},
        {"customer_id": "b", "total_requests": 1},
    ]
    assert (one_day.json()["from_date"], one_day.json()["days"]) == ("2026-10-02", 1)
    assert since["customers"] == [{"customer_id": "b", "total_requests": 1}]
    assert (since["to_date"], since["days"]) == ("2026-10-08", 6)
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    assert backwards.status_code == 422 and "before" in backwards.json()["detail"]


def test_the_service_answers_without_http(settings):
    """StatsService is the read path without the web: a test calls it directly."""
    from logpipe.influx import AsyncInfluxClient
    from logpipe.serve.service import StatsService

    lines = [*LINES, "2026-10-08 09:00:00 cust_1 /a 503 0.700"]  # today: live
    write_lines(settings, lines)
    with InfluxClient(settings) as influx:
        rollups = Rollups(influx, now=lambda: NOW)
        rollups.build_all(rollups.check())

    async def ask() -> tuple[list, list, list]:
        client = AsyncInfluxClient(settings, timeout=5)
        try:
            service = StatsService(client, settings, now=lambda: NOW)
            one = await service.stats("cust_1", date(2026, 10, 1), date(2026, 10, 8))
            everyone = await service.stats(None, date(2026, 10, 1), date(2026, 10, 8))
            seen = await service.customers(
                None, date(2026, 9, 9), date(2026, 10, 8), limit=10, offset=0
            )
        finally:
            await client.aclose()
        return [vars(day) for day in one], [vars(day) for day in everyone], seen

    one, everyone, seen = asyncio.run(ask())
    expected = daily_stats_of(lines)
    for got, who in ((one, "cust_1"), (everyone, "*")):
        want = [expected[who][day] for day in sorted(expected[who])]
        assert_same_days([{**day, "date": str(day["date"])} for day in got], want)
    assert seen == [("cust_1", 4), ("cust_2", 1)]
