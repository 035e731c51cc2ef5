"""The API's parts without a server: API keys, the per-caller limit, the response cache (with
the answers its workers share) and the closed days' cache."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import subprocess
import sys
from datetime import date, datetime, timezone

import httpx
import pytest
from fastapi import HTTPException

from logpipe.config import load_settings
from logpipe.errors import ConfigError
from logpipe.serve.auth import PerCaller, find_key, parse_api_keys
from logpipe.serve.cache import ClosedDays, ResponseCache, SharedAnswers, _Computed
from logpipe.serve.metrics import SHARED_ANSWERS
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


# -- SharedAnswers: the workers of one server compute for each other -------------------------


def _workers(tmp_path, clock, count: int = 2, **options) -> list[ResponseCache]:
    """The response caches of `count` workers of one server."""
    path = tmp_path / "answers.sqlite3"
    SharedAnswers.create(path)
    return [_cache(5.0, clock=clock, shared=path, **options) for _ in range(count)]


def _counting(clock, computed: list):
    async def compute():
        computed.append(clock.now)
        await asyncio.sleep(0)
        return 200, f"answer {len(computed)}".encode()

    return compute


def test_a_worker_takes_another_ones_answer_with_the_age_it_has(tmp_path):
    """A taken answer counts from when the other worker began computing it: it is never
    served 2 ttl after that, whichever worker serves it."""
    clock, computed = Clock(), []
    compute = _counting(clock, computed)

    async def main():
        a, b = _workers(tmp_path, clock, jitter=0)
        seen = [await a.get("k", compute)]
        clock.now = 3.0
        seen.append(await b.get("k", compute))  # taken: computed at 0.0
        clock.now = 5.0
        seen.append(b.fresh("k"))  # fresh until 0.0 + ttl, not 3.0 + ttl
        clock.now = 10.0
        seen.append(b.kept("k"))  # 2 ttl after a began computing it: not served
        return seen

    assert asyncio.run(main()) == [
        ((200, b"answer 1"), False),
        ((200, b"answer 1"), False),
        None,
        None,
    ]
    assert computed == [0.0]


def test_two_workers_under_load_compute_each_answer_once_per_lifetime(tmp_path):
    """With jittered lifetimes (4 to 5 s here) the worker that computed an answer expires
    first and computes the next one (with the closed days it holds); the other takes it.
    Alone, each would compute its own."""
    clock, computed = Clock(), []

    def compute_in(worker: int):
        async def compute():
            computed.append((worker, clock.now))
            return 200, b"answer"

        return compute

    async def main():
        workers = _workers(tmp_path, clock)
        for _ in range(1000):  # 100 s, both workers asked every 0.1 s
            for n, cache in enumerate(workers):
                if cache.kept("k") is None:
                    await cache.get("k", compute_in(n))
            await asyncio.sleep(0)
            clock.now = round(clock.now + 0.1, 1)

    taken_before = SHARED_ANSWERS._value.get()
    asyncio.run(main())
    assert 100 / 5 <= len(computed) <= 100 / 4 + 1
    assert {worker for worker, _ in computed} == {0}
    times = [when for _, when in computed]
    assert all(later - earlier >= 4.0 for earlier, later in itertools.pairwise(times))
    # each answer taken once, by the other worker
    assert len(computed) - 1 <= SHARED_ANSWERS._value.get() - taken_before <= len(computed)


def test_a_worker_never_takes_the_answer_it_holds(tmp_path):
    clock, computed = Clock(), []
    compute = _counting(clock, computed)

    async def main():
        a, _ = _workers(tmp_path, clock, jitter=0)
        await a.get("k", compute)
        clock.now = 5.0  # expired this instant: its own answer is still in the table
        stale = a.kept("k")  # served while its refresh runs
        await asyncio.sleep(0.01)
        return stale, a.fresh("k")

    assert asyncio.run(main()) == ((200, b"answer 1"), (200, b"answer 2"))
    assert computed == [0.0, 5.0]


def test_a_worker_waits_for_the_computation_another_one_is_making(tmp_path):
    clock, release, calls = Clock(), asyncio.Event(), []

    async def compute():
        calls.append(1)
        await release.wait()
        return 200, b"computed once"

    async def main():
        a, b = _workers(tmp_path, clock)
        first = asyncio.ensure_future(a.get("k", compute))
        await asyncio.sleep(0.01)  # a has claimed it
        second = asyncio.ensure_future(b.get("k", compute))
        await asyncio.sleep(0.05)  # b is waiting for a's
        release.set()
        return await first, await second

    assert asyncio.run(main()) == (((200, b"computed once"), False),) * 2
    assert calls == [1]


def test_a_failed_computation_gives_up_its_claim_at_once(tmp_path):
    clock, failing = Clock(), asyncio.Event()

    async def fails():
        await failing.wait()
        raise RuntimeError("InfluxDB down")

    async def works():
        return 200, b"from b"

    async def main():
        a, b = _workers(tmp_path, clock, patience=3600.0)  # b would wait for an hour
        first = asyncio.ensure_future(a.get("k", fails))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(b.get("k", works))
        await asyncio.sleep(0.05)
        failing.set()
        with pytest.raises(RuntimeError):
            await first
        return await asyncio.wait_for(second, 10)

    assert asyncio.run(main()) == ((200, b"from b"), False)


def _table(tmp_path, name: str, clock, **options) -> SharedAnswers:
    path = tmp_path / f"{name}.sqlite3"
    if not path.exists():
        SharedAnswers.create(path)
    return SharedAnswers(path, max_age=5.0, clock=clock, **options)


def test_shared_answers_keep_at_most_max_entries_and_nothing_too_old(tmp_path):
    clock = Clock()
    small = _table(tmp_path, "small", clock, max_entries=3)
    for n in range(5):
        small.offer(("stats", n), _Computed(0.0, (200, b"%d" % n)))
    other = _table(tmp_path, "small", clock)  # another worker's view
    assert [other.claim(("stats", n), since=0.0, now=0.0) for n in (4, 3, 2)] == [
        _Computed(0.0, (200, b"%d" % n), taken=True) for n in (4, 3, 2)
    ]
    assert other.claim(("stats", 0), since=0.0, now=0.0) is None  # dropped: claimed now
    roomy = _table(tmp_path, "roomy", clock)
    roomy.offer(("stats", "old"), _Computed(0.0, (200, b"old")))
    clock.now = 6.0
    roomy.offer(("stats", "new"), _Computed(6.0, (200, b"new")))  # "old" is over max_age
    other = _table(tmp_path, "roomy", clock)
    assert other.claim(("stats", "old"), since=-1.0, now=6.0) is None
    assert other.claim(("stats", "new"), since=-1.0, now=6.0) == (
        _Computed(6.0, (200, b"new"), taken=True)
    )


def test_a_claim_of_a_process_that_died_is_nobodys(tmp_path):
    clock = Clock()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    path = tmp_path / "answers.sqlite3"
    SharedAnswers.create(path)
    with sqlite3.connect(path) as db:  # what a worker killed while computing leaves
        db.execute(
            "INSERT INTO answers (key, started, owner, pid) VALUES (?, 0.0, 1, ?)",
            (SharedAnswers._hash("k"), int(dead.stdout)),
        )
    alive = _table(tmp_path, "answers", clock)
    assert alive.claim("k", since=0.0, now=1.0) is None  # no wait: claimed here
    later = _table(tmp_path, "answers", clock)
    assert later.claim("k", since=0.0, now=1.5) == 1.0  # a live claim: wait for it


def test_a_busy_table_skips_one_write_and_sharing_goes_on(tmp_path, caplog):
    clock = Clock()
    table = _table(tmp_path, "answers", clock, busy_timeout=0.01)
    holder = sqlite3.connect(tmp_path / "answers.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another worker in the middle of a write
    with caplog.at_level(logging.WARNING, logger="logpipe.serve.cache"):
        assert table.claim("k", since=0.0, now=0.0) is None  # computed without a claim
        table.offer("k", _Computed(0.0, (200, b"skipped")))
    holder.execute("ROLLBACK")
    table.offer("k", _Computed(0.0, (200, b"shared")))
    other = _table(tmp_path, "answers", clock)
    assert other.claim("k", since=0.0, now=0.0) == _Computed(0.0, (200, b"shared"), taken=True)
    assert caplog.text == ""


def test_a_cancelled_computation_gives_up_its_claim(tmp_path):
    clock = Clock()

    async def forever():
        await asyncio.Event().wait()

    async def works():
        return 200, b"from b"

    async def main():
        a, b = _workers(tmp_path, clock, patience=3600.0)
        first = asyncio.ensure_future(a._computed("k", forever, -1.0))
        await asyncio.sleep(0.01)  # a has claimed it
        second = asyncio.ensure_future(b.get("k", works))
        await asyncio.sleep(0.05)
        first.cancel()  # the server stopping, say
        return await asyncio.wait_for(second, 10)

    assert asyncio.run(main()) == ((200, b"from b"), False)


def test_a_broken_shared_file_costs_sharing_not_answers(tmp_path, caplog):
    path = tmp_path / "answers.sqlite3"
    path.write_bytes(b"not a database " * 100)
    clock, computed = Clock(), []
    cache = _cache(5.0, clock=clock, shared=path)
    with caplog.at_level(logging.WARNING, logger="logpipe.serve.cache"):
        answer = asyncio.run(cache.get("k", _counting(clock, computed)))
    assert answer == ((200, b"answer 1"), False)
    assert "shared answers: file is not a database" in caplog.text


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
