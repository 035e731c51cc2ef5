"""The API's parts without a server: API keys, the coalescing TTL cache, the file workers
share."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from logpipe.config import load_settings
from logpipe.errors import ConfigError
from logpipe.serve.auth import find_key, parse_api_keys
from logpipe.serve.cache import HistoryCache, SharedFile, TTLCache
from tests.conftest import running_api

ADMIN_KEY = "admin-0123456789abcdef"
ACME_KEY = "acme-0123456789abcdef"


def test_api_keys_admin_and_scoped():
    keys = parse_api_keys(f"{ADMIN_KEY}=*, {ACME_KEY}=acme-corp.eu")
    assert find_key(keys, ADMIN_KEY).customer_id is None
    assert find_key(keys, ACME_KEY).customer_id == "acme-corp.eu"
    assert find_key(keys, ACME_KEY[:-1]) is None
    assert find_key(keys, "") is None
    assert ADMIN_KEY not in repr(keys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short=*", "at least 16"),
        ("0123456789abcdefgh", "at least 16"),  # no scope
        ("0123456789abcdefgh=bad/id", "not a customer id"),
        (" , ", "names no key"),
    ],
)
def test_bad_api_keys_setting(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_api_keys(text)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_identical_requests_share_one_computation():
    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0.05)
        return "answer"

    async def main():
        cache = TTLCache(5.0)
        return await asyncio.gather(*(cache.get("k", compute) for _ in range(100)))

    results = asyncio.run(main())
    assert len(calls) == 1
    assert [value for value, _ in results] == ["answer"] * 100
    assert sum(hit for _, hit in results) == 99


def test_stale_answers_are_served_while_one_refresh_runs_then_expire():
    clock = Clock()
    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0)
        return len(calls)

    async def main():
        cache = TTLCache(5.0, clock=clock, jitter=0)
        seen = [await cache.get("k", compute)]
        clock.now = 4.9
        seen.append(await cache.get("k", compute))  # fresh
        clock.now = 5.1
        seen.append(await cache.get("k", compute))  # stale, refresh starts
        seen.append(await cache.get("k", compute))  # stale, refresh already running
        await asyncio.sleep(0.01)
        seen.append(await cache.get("k", compute))  # the refreshed answer
        clock.now = 30.0
        seen.append(await cache.get("k", compute))  # too old to serve: wait for a new one
        return seen

    assert asyncio.run(main()) == [(1, False), (1, True), (1, True), (1, True), (2, True),
                                   (3, False)]  # fmt: skip
    assert len(calls) == 3


def test_fresh_gives_only_a_computed_answer_within_its_ttl():
    clock = Clock()
    release = asyncio.Event()

    async def compute():
        await release.wait()
        return "answer"

    async def failing():
        raise RuntimeError("InfluxDB down")

    async def main():
        cache = TTLCache(5.0, clock=clock, jitter=0)
        assert cache.fresh("k") is None  # never asked
        waiting = asyncio.ensure_future(cache.get("k", compute))
        await asyncio.sleep(0)
        seen = [cache.fresh("k")]  # being computed
        release.set()
        await waiting
        clock.now = 4.9
        seen.append(cache.fresh("k"))
        clock.now = 5.0
        seen.append(cache.fresh("k"))  # stale: left to `get`, which refreshes it
        with pytest.raises(RuntimeError):
            await cache.get("failed", failing)
        seen.append(cache.fresh("failed"))
        return seen

    assert asyncio.run(main()) == [None, "answer", None, None]


def test_fresh_gives_a_refreshed_answer_once_its_refresh_is_done():
    clock = Clock()
    answers = iter(["first", "second"])

    async def compute():
        await asyncio.sleep(0)
        return next(answers)

    async def main():
        cache = TTLCache(5.0, clock=clock, jitter=0)
        await cache.get("k", compute)
        clock.now = 6.0
        served, _ = await cache.get("k", compute)  # stale: served, refresh started
        seen = [served, cache.fresh("k")]
        await asyncio.sleep(0.01)
        seen.append(cache.fresh("k"))
        return seen

    assert asyncio.run(main()) == ["first", None, "second"]


def test_failures_are_not_kept_and_ttl_0_turns_the_cache_off():
    calls = []

    async def failing():
        calls.append(1)
        raise RuntimeError("InfluxDB down")

    async def main():
        cache = TTLCache(5.0)
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await cache.get("k", failing)
        off = TTLCache(0)

        async def value():
            calls.append(1)
            return 1

        await off.get("k", value)
        await off.get("k", value)

    asyncio.run(main())
    assert len(calls) == 4


def test_a_waiter_that_goes_away_does_not_cancel_the_shared_computation():
    async def main():
        cache = TTLCache(5.0)
        release = asyncio.Event()

        async def slow():
            await release.wait()
            return "done"

        leader = asyncio.ensure_future(cache.get("k", slow))
        await asyncio.sleep(0)
        follower = asyncio.ensure_future(cache.get("k", slow))
        await asyncio.sleep(0)
        leader.cancel()
        release.set()
        return await follower

    assert asyncio.run(main()) == ("done", True)


def test_history_cache_keeps_days_until_their_ttl():
    clock = Clock()
    history = HistoryCache(300, clock=clock, jitter=0)
    history.keep("acme", {"2026-10-01": "stats", "2026-10-02": None})  # None: no requests
    assert history.known("acme", ["2026-10-01", "2026-10-02", "2026-10-03"]) == {
        "2026-10-01": "stats",
        "2026-10-02": None,
    }
    assert history.known("other", ["2026-10-01"]) == {}
    clock.now = 300.1
    assert history.known("acme", ["2026-10-01"]) == {}
    off = HistoryCache(0)
    off.keep("acme", {"2026-10-01": "stats"})
    assert off.known("acme", ["2026-10-01"]) == {}


def test_customers_kept_together_expire_apart_and_each_one_s_days_together():
    clock = Clock()
    history = HistoryCache(300, clock=clock)
    for customer in range(100):
        history.keep(customer, {"2026-10-01": 1, "2026-10-02": 2})
    clock.now = 270.0  # 10 % short of the TTL: about half have expired, each whole
    held = [len(history.known(customer, ["2026-10-01", "2026-10-02"])) for customer in range(100)]
    assert set(held) == {0, 2} and 20 < held.count(2) < 80
    clock.now = 300.0
    assert all(not history.known(customer, ["2026-10-01"]) for customer in range(100))


def test_lifetimes_are_jittered_below_the_ttl():
    clock = Clock()

    async def compute():
        return 1

    async def main():
        cache = TTLCache(5.0, clock=clock)
        for key in range(200):
            await cache.get(key, compute)
        return [entry.fresh_until for entry in cache._entries.values()]

    lifetimes = asyncio.run(main())
    assert all(4.0 <= t <= 5.0 for t in lifetimes) and len(set(lifetimes)) > 100


def test_an_answer_that_arrives_already_old_is_fresh_for_less():
    clock = Clock()

    async def compute():
        return ("answer", 3.0)  # e.g. read from a file another worker wrote 3 s ago

    async def main():
        cache = TTLCache(5.0, clock=clock, jitter=0, age=lambda answer: answer[1])
        await cache.get("k", compute)
        return cache._entries["k"].fresh_until

    assert asyncio.run(main()) == 2.0


def test_workers_sharing_a_directory_compute_once_per_ttl(tmp_path):
    clock = Clock()
    calls = []

    async def compute():
        calls.append(clock.now)
        await asyncio.sleep(0.05)  # the other worker asks meanwhile, and waits for the file
        return {"figures": len(calls)}

    async def main():
        one, two = (SharedFile(tmp_path, 5.0, clock=clock, poll=0.005) for _ in range(2))
        together = await asyncio.gather(one.get("recent", compute), two.get("recent", compute))
        clock.now = 4.9
        still = await two.get("recent", compute)
        clock.now = 5.0
        renewed = await two.get("recent", compute)
        return together, still, renewed

    together, still, renewed = asyncio.run(main())
    assert together == [(0.0, {"figures": 1})] * 2
    assert still == (0.0, {"figures": 1})
    assert renewed == (5.0, {"figures": 2})
    assert calls == [0.0, 5.0]


def test_a_failed_computation_leaves_the_next_worker_free_to_try(tmp_path):
    async def fails():
        raise RuntimeError("InfluxDB down")

    async def works():
        return [1, 2]

    async def main():
        one, two = SharedFile(tmp_path, 5.0), SharedFile(tmp_path, 5.0)
        with pytest.raises(RuntimeError):
            await one.get("recent", fails)
        return await two.get("recent", works)

    assert asyncio.run(main())[1] == [1, 2]


def test_a_worker_that_waited_takes_the_file_even_when_the_query_outlasted_the_ttl(tmp_path):
    calls = []

    async def slow():
        calls.append(1)
        await asyncio.sleep(0.2)  # four TTLs
        return "figures"

    async def main():
        one, two = (SharedFile(tmp_path, 0.05, poll=0.005) for _ in range(2))
        return await asyncio.gather(one.get("recent", slow), two.get("recent", slow))

    first, second = asyncio.run(main())
    assert first == second and first[1] == "figures" and calls == [1]


def test_a_worker_stops_waiting_for_a_stuck_one_after_its_patience(tmp_path):
    async def never():
        await asyncio.Event().wait()

    async def mine():
        return "own"

    async def main():
        stuck = asyncio.ensure_future(SharedFile(tmp_path, 5.0).get("recent", never))
        await asyncio.sleep(0.02)  # it holds the lock now
        started = time.monotonic()
        found = await SharedFile(tmp_path, 5.0, patience=0.1, poll=0.01).get("recent", mine)
        stuck.cancel()
        return found, time.monotonic() - started

    (_, value), waited = asyncio.run(main())
    assert value == "own" and waited >= 0.1


def test_a_damaged_file_is_computed_again(tmp_path):
    (tmp_path / "recent.json").write_text('{"half": ')

    async def compute():
        return [1]

    assert asyncio.run(SharedFile(tmp_path, 5.0).get("recent", compute))[1] == [1]
    assert asyncio.run(SharedFile(tmp_path, 5.0).get("recent", compute))[1] == [1]


def _worker_process(directory: str, calls: str, start_at: float, out) -> None:
    async def compute():
        with open(calls, "a") as log:
            log.write(f"{os.getpid()}\n")
        await asyncio.sleep(0.3)
        return {"computed_by": os.getpid()}

    while time.time() < start_at:  # both processes ask at the same moment
        time.sleep(0.001)
    out.put(asyncio.run(SharedFile(Path(directory), 60.0).get("recent", compute))[1])


def test_two_processes_asking_at_once_cause_one_computation(tmp_path):
    spawn = multiprocessing.get_context("spawn")
    out = spawn.Queue()
    calls = tmp_path / "calls"
    start_at = time.time() + 2.0
    workers = [
        spawn.Process(target=_worker_process, args=(str(tmp_path), str(calls), start_at, out))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    answers = [out.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(10)
    assert len(calls.read_text().splitlines()) == 1
    assert answers[0] == answers[1]


@pytest.mark.parametrize(("version", "reads_rollups"), [("1.6.7", True), ("2.7.10", False)])
def test_rollups_are_asked_for_only_where_they_can_exist(version, reads_rollups, tmp_path):
    """InfluxDB 2.x and 3.x have no SELECT … INTO: one query over the requests, no rollups."""
    asked: list[str] = []

    def influx(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ping":
            return httpx.Response(204, headers={"X-Influxdb-Version": version})
        q = request.url.params["q"]
        asked.append(q)
        return httpx.Response(200, json={"results": [{} for _ in q.split(";")]})

    settings = load_settings(influx_url="http://influx.test", state_dir=tmp_path, cache_ttl=0)
    now = datetime(2026, 10, 8, 12, tzinfo=timezone.utc)
    with running_api(settings, transport=httpx.MockTransport(influx), now=lambda: now) as api:
        answer = api.get("/customers/acme/stats?from_date=2026-10-06&to_date=2026-10-08")
    assert answer.status_code == 404  # no requests (and no error)
    (query,) = asked
    assert ("requests_daily" in query) is reads_rollups
