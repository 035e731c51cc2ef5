"""The API's parts without a server: API keys, the per-caller limit, the response cache and
the closed days' cache."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timezone

import httpx
import pytest
from fastapi import HTTPException

from logpipe.config import load_settings
from logpipe.errors import ConfigError
from logpipe.serve.auth import PerCaller, find_key, parse_api_keys
from logpipe.serve.cache import ClosedDays, ResponseCache
from logpipe.stats import DayStats
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
    assert find_key(keys, ADMIN_KEY).may_see("anyone") and find_key(keys, ADMIN_KEY).may_see(None)
    acme = find_key(keys, ACME_KEY)
    assert acme.may_see("acme-corp.eu") and not acme.may_see("other") and not acme.may_see(None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short=*", "at least 16"),
        ("0123456789abcdefgh", "at least 16"),  # no scope
        ("0123456789abcdefgh=bad/id", "not a customer id"),
        (" , ", "names no key"),
        ("", "names no key"),
    ],
)
def test_bad_api_keys_setting(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_api_keys(text)


# -- PerCaller -----------------------------------------------------------------------------


def _answers(value):
    """Work that answers `value` at once."""

    async def work():
        return value

    return work


def _after(release: asyncio.Event, value):
    """Work that answers `value` once `release` is set."""

    async def work():
        await release.wait()
        return value

    return work


def test_a_caller_over_its_limit_waits_for_its_own_query_to_finish():
    async def main():
        limiter = PerCaller(1, patience=60)
        release = asyncio.Event()
        first = asyncio.ensure_future(limiter.run("acme", _after(release, "first")))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(limiter.run("acme", _answers("second")))
        await asyncio.sleep(0.01)
        waited = not second.done()
        release.set()
        return waited, await first, await second, dict(limiter._held)

    assert asyncio.run(main()) == (True, "first", "second", {})


def test_a_caller_over_its_limit_gets_a_429_after_its_patience_while_others_run():
    async def main():
        limiter = PerCaller(1, patience=0.05)
        release = asyncio.Event()
        quick = _answers("quick")
        first = asyncio.ensure_future(limiter.run("acme", _after(release, "slow")))
        await asyncio.sleep(0)
        assert await limiter.run("other", quick) == "quick"  # another caller is not held up
        with pytest.raises(HTTPException) as refused:
            await limiter.run("acme", quick)
        assert refused.value.status_code == 429
        assert refused.value.headers == {"Retry-After": "1"}
        assert list(limiter._held) == ["acme"]  # only the caller with something in flight
        release.set()
        assert await first == "slow"
        assert limiter._held == {}  # nothing in flight: nothing held
        assert await limiter.run("acme", quick) == "quick"  # its slot was given back
        assert limiter._held == {}

    asyncio.run(main())


def test_a_failing_computation_gives_its_slot_back():
    async def main():
        limiter = PerCaller(1, patience=0.05)

        async def failing():
            raise RuntimeError("InfluxDB down")

        with pytest.raises(RuntimeError):
            await limiter.run("acme", failing)
        assert limiter._held == {}
        return await limiter.run("acme", _answers("quick"))

    assert asyncio.run(main()) == "quick"


# -- ResponseCache -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _cache(ttl: float, **options) -> ResponseCache:
    return ResponseCache(
        ttl, keys=None, today=lambda: date(2026, 10, 1), cache_control="max-age=5", **options
    )


def test_concurrent_identical_requests_share_one_computation():
    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0.05)
        return (200, b"answer")

    async def main():
        cache = _cache(5.0)
        return await asyncio.gather(*(cache.get("k", compute) for _ in range(100)))

    results = asyncio.run(main())
    assert len(calls) == 1
    assert [answer for answer, _ in results] == [(200, b"answer")] * 100
    assert sum(hit for _, hit in results) == 99


def test_stale_answers_are_served_while_one_refresh_runs_then_expire():
    clock = Clock()
    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0)
        return len(calls)

    async def main():
        cache = _cache(5.0, clock=clock, jitter=0)
        seen = [await cache.get("k", compute)]
        clock.now = 4.9
        seen.append(await cache.get("k", compute))  # fresh
        clock.now = 5.0
        seen.append(await cache.get("k", compute))  # stale, refresh starts
        seen.append(await cache.get("k", compute))  # stale, refresh already running
        await asyncio.sleep(0.01)
        seen.append(await cache.get("k", compute))  # the refreshed answer, fresh from 5.0
        clock.now = 19.9  # more than 2 * ttl after the refresh began
        seen.append(await cache.get("k", compute))  # too old to serve: wait for a new one
        return seen

    assert asyncio.run(main()) == [(1, False), (1, True), (1, True), (1, True), (2, True),
                                   (3, False)]  # fmt: skip
    assert len(calls) == 3


def test_an_answer_is_never_served_2_ttl_after_its_computation_began():
    clock = Clock()
    calls = []

    async def compute():
        calls.append(1)
        return len(calls)

    async def main():
        cache = _cache(5.0, clock=clock, jitter=0)
        await cache.get("a", compute)
        await cache.get("b", compute)
        clock.now = 9.99
        stale = await cache.get("a", compute)  # served; a refresh starts
        clock.now = 10.0
        expired = await cache.get("b", compute)  # not served: computed again
        return stale, expired

    assert asyncio.run(main()) == ((1, True), (4, False))  # 3: the refresh of "a"


def test_the_front_door_serves_a_kept_answer_and_starts_its_one_refresh():
    """`kept` (what the middleware serves before routing) gives fresh answers, and stale ones
    for one more ttl while the refresh it starts with the stored computation runs."""
    clock = Clock()
    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0)
        return len(calls)

    async def main():
        cache = _cache(5.0, clock=clock, jitter=0)
        seen = [cache.kept("k")]  # nothing yet: routing computes it
        await cache.get("k", compute)
        seen.append(cache.kept("k"))
        clock.now = 6.0
        seen += [cache.kept("k"), cache.kept("k")]  # stale: one refresh started
        await asyncio.sleep(0.01)
        seen.append(cache.kept("k"))  # refreshed, fresh from 6.0
        clock.now = 16.0
        seen.append(cache.kept("k"))  # two ttls after that refresh began: not served
        return seen

    assert asyncio.run(main()) == [None, 1, 1, 1, 2, None]
    assert len(calls) == 2


def test_waited_runs_only_for_a_computation_a_request_waits_for():
    """The caller's limit (`waited`) applies to first computations, not to refreshes."""
    clock = Clock()
    runs = []

    async def compute():
        runs.append("refresh")
        return 1

    async def waited():
        runs.append("waited")
        return 0

    async def main():
        cache = _cache(5.0, clock=clock, jitter=0)
        first = await cache.get("k", compute, waited=waited)
        clock.now = 6.0
        stale = await cache.get("k", compute, waited=waited)
        await asyncio.sleep(0.01)
        return first, stale, await cache.get("k", compute, waited=waited)

    assert asyncio.run(main()) == ((0, False), (0, True), (1, True))
    assert runs == ["waited", "refresh"]


def test_freshness_counts_from_when_the_computation_began():
    clock = Clock()
    calls = []

    async def slow():
        calls.append(clock.now)
        await asyncio.sleep(0)
        clock.now += 6.0  # the query took longer than the ttl
        return len(calls)

    async def main():
        cache = _cache(5.0, clock=clock, jitter=0)
        first = await cache.get("k", slow)
        fresh = cache.fresh("k")  # at 6.0: its points were read from 0.0 on
        again = await cache.get("k", slow)  # stale: served, refreshed
        return first, fresh, again

    assert asyncio.run(main()) == ((1, False), None, (1, True))
    assert calls == [0.0, 6.0]


def test_fresh_gives_only_a_computed_answer_within_its_ttl():
    clock = Clock()
    release = asyncio.Event()

    async def compute():
        await release.wait()
        return "answer"

    async def failing():
        raise RuntimeError("InfluxDB down")

    async def main():
        cache = _cache(5.0, clock=clock, jitter=0)
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
        cache = _cache(5.0, clock=clock, jitter=0)
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
        await asyncio.sleep(0)
        raise RuntimeError("InfluxDB down")

    async def value():
        calls.append(1)
        return 1

    async def main():
        cache = _cache(5.0)
        together = await asyncio.gather(
            cache.get("k", failing), cache.get("k", failing), return_exceptions=True
        )
        assert [type(error) for error in together] == [RuntimeError] * 2  # one shared failure
        with pytest.raises(RuntimeError):
            await cache.get("k", failing)  # not kept: tried again
        off = _cache(0)
        seen = [await off.get("k", value), await off.get("k", value)]
        return seen, off.fresh("k")

    assert asyncio.run(main()) == ([(1, False), (1, False)], None)
    assert len(calls) == 4


def test_a_failed_refresh_keeps_the_stale_answer_and_is_tried_again():
    clock = Clock()
    outcomes = iter(["first", RuntimeError("InfluxDB down"), "third"])

    async def compute():
        await asyncio.sleep(0)
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def main():
        cache = _cache(5.0, clock=clock, jitter=0)
        await cache.get("k", compute)
        clock.now = 6.0
        seen = [await cache.get("k", compute)]  # stale: refresh fails in the background
        await asyncio.sleep(0.01)
        seen.append(await cache.get("k", compute))  # still the stale one; a new refresh
        await asyncio.sleep(0.01)
        seen.append(await cache.get("k", compute))
        return seen

    assert asyncio.run(main()) == [("first", True), ("first", True), ("third", True)]


def test_a_waiter_that_goes_away_does_not_cancel_the_shared_computation():
    async def main():
        cache = _cache(5.0)
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
        shared = await follower
        return shared, cache.fresh("k")

    assert asyncio.run(main()) == (("done", True), "done")


def test_the_only_waiter_going_away_leaves_the_answer_for_the_next_request():
    calls = []

    async def slow():
        calls.append(1)
        await asyncio.sleep(0.01)
        return "done"

    async def main():
        cache = _cache(5.0)
        alone = asyncio.ensure_future(cache.get("k", slow))
        await asyncio.sleep(0)
        alone.cancel()
        return await cache.get("k", slow)

    assert asyncio.run(main()) == ("done", True)
    assert len(calls) == 1


def test_lifetimes_are_jittered_below_the_ttl():
    clock = Clock()

    async def compute():
        return 1

    async def main():
        cache = _cache(5.0, clock=clock)
        for key in range(200):
            await cache.get(key, compute)
        return [entry.fresh_until for entry in cache._entries.values()]

    lifetimes = asyncio.run(main())
    assert all(4.0 <= t <= 5.0 for t in lifetimes) and len(set(lifetimes)) > 100


def test_the_oldest_answers_are_dropped_beyond_max_entries():
    calls = []

    async def compute():
        calls.append(1)
        return len(calls)

    async def main():
        cache = _cache(5.0, max_entries=2)
        for key in ("a", "b", "c"):
            await cache.get(key, compute)
        kept = [cache.fresh(key) for key in ("a", "b", "c")]
        again = await cache.get("a", compute)  # dropped: computed again, and "b" goes
        return kept, again, cache.fresh("b"), len(cache._entries)

    assert asyncio.run(main()) == ([None, 2, 3], (4, False), None, 2)


# -- ClosedDays ----------------------------------------------------------------------------

OCT1, OCT2, OCT3 = date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3)
STATS = DayStats(OCT1, 4, 3, 1, 75.0, 0.5, 0.4, 0.9)


def test_closed_days_are_kept_until_ttl_after_they_were_asked_for():
    clock = Clock()
    closed = ClosedDays(300, clock=clock)
    clock.now = 50.0  # the answer arrives well after its query was sent, at 10.0
    closed.keep("acme", {OCT1: STATS, OCT2: None}, asked=10.0)  # None: no requests
    assert closed.known("acme", [OCT1, OCT2, OCT3]) == {OCT1: STATS, OCT2: None}
    assert closed.known("other", [OCT1]) == {}
    assert closed.known(None, [OCT1]) == {}  # all customers together are another entry
    clock.now = 309.9
    assert closed.known("acme", [OCT1, OCT2]) == {OCT1: STATS, OCT2: None}
    clock.now = 310.0  # the days of one answer expire together
    assert closed.known("acme", [OCT1, OCT2]) == {}
    closed.keep("acme", {OCT1: STATS}, asked=310.0)  # asked again: renewed
    assert closed.known("acme", [OCT1]) == {OCT1: STATS}


def test_a_ttl_of_0_keeps_no_closed_day():
    off = ClosedDays(0)
    off.keep("acme", {OCT1: STATS}, asked=0.0)
    assert off.known("acme", [OCT1]) == {}


def test_closed_days_hold_at_most_max_entries_dropping_the_oldest():
    closed = ClosedDays(300, max_entries=3, clock=Clock())
    closed.keep("acme", {OCT1: STATS, OCT2: None}, asked=0.0)
    closed.keep("other", {OCT1: None, OCT2: None}, asked=0.0)
    assert closed.known("acme", [OCT1, OCT2]) == {OCT2: None}
    assert closed.known("other", [OCT1, OCT2]) == {OCT1: None, OCT2: None}


# -- the app against a made-up InfluxDB ----------------------------------------------------


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
