"""Daily rollups: the pure parts, then the processor's marks, `logpipe rollup`, the following
processor and the API's reading of them, against a real influxd."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from logpipe.errors import InfluxRejected
from logpipe.influx import InfluxClient
from logpipe.process.counters import Counters
from logpipe.rollup import (
    DayState,
    Follower,
    Rollups,
    behind,
    build_query,
    covered_lines,
    everyone_behind,
    marker_lines,
    marks_query,
    read_marks,
    read_scan,
    scan_query,
    to_build,
)
from tests.conftest import (
    run_process,
    running_api,
    start_process,
    stop_process,
    wait_until,
    write_lines,
)
from tests.reference import daily_stats_of

OCT1 = 1790812800  # 2026-10-01, 00:00Z
DAY = 86400


def test_marks_are_one_point_per_customer_and_day_with_escaped_tags():
    assert marker_lines({("b c", OCT1), ("a", OCT1 + DAY)}, 42) == [
        f"requests_daily,customer_id=a dirty=42i {OCT1 + DAY}000000000",
        f"requests_daily,customer_id=b\\ c dirty=42i {OCT1}000000000",
    ]
    assert covered_lines(OCT1, {"a": 42}) == [
        f"requests_daily,customer_id=a covered=42i {OCT1}000000000"
    ]


def test_a_scan_reads_every_day_or_the_days_from_one_on():
    assert "WHERE" not in scan_query()
    assert f"WHERE time >= {OCT1}s GROUP BY" in scan_query(OCT1)


def test_the_counters_give_the_first_day_written_since_they_were_last_asked():
    counters = Counters()
    assert counters.take_written_from() is None
    for day in (OCT1 + DAY, OCT1, OCT1 + 2 * DAY):
        counters.note_written(day)
    assert counters.take_written_from() == OCT1
    assert counters.take_written_from() is None
    counters.note_written(OCT1 + DAY)
    assert counters.take_written_from() == OCT1 + DAY


def _scan(rows: dict[str, list[list]]) -> list[dict]:
    """A scan_query answer: rows of (time, dirty, covered) per customer."""
    return [
        {"name": "requests_daily", "tags": {"customer_id": who, "status_class": ""},
         "columns": ["time", "dirty", "covered"], "values": values}
        for who, values in rows.items()
    ]  # fmt: skip


def test_what_to_build_is_the_stale_customers_of_closed_days_that_stayed_quiet():
    days = read_scan(
        _scan(
            {
                "a": [[OCT1, 5, 5], [OCT1 + DAY, 6, 5], [OCT1 + 2 * DAY, 7, None]],
                "b": [[OCT1, 3, 3], [OCT1 + 3 * DAY, 8, None]],
            }
        )
    )
    assert days[OCT1] == DayState({"a": (5, 5), "b": (3, 3)})
    assert days[OCT1 + DAY].stale() == ["a"]
    before = OCT1 + 3 * DAY  # the fourth day is not closed
    assert to_build(days, before=before, previous=days) == {
        OCT1 + DAY: ["a"],
        OCT1 + 2 * DAY: ["a"],
    }
    # a day whose marks changed since the last look is still being written: later
    changed = {**days, OCT1 + DAY: DayState({"a": (9, 5), "b": (3, 3)})}
    assert to_build(days, before=before, previous=changed) == {OCT1 + 2 * DAY: ["a"]}
    assert to_build(days, before=before, previous={}) == {}  # the first look


def test_a_build_computes_each_customer_and_all_together_from_the_day_s_requests():
    day = f"time >= {OCT1}000000000 AND time < {OCT1 + DAY}000000000"
    assert (
        marks_query(OCT1) == f"SELECT dirty FROM requests_daily WHERE {day} GROUP BY customer_id"
    )
    statements = build_query(OCT1, [None, "it's"]).split("; ")
    assert len(statements) == 4
    # all customers together: the series without a customer_id
    assert statements[0].endswith(
        f"INTO requests_daily FROM requests WHERE {day} GROUP BY time(1d)"
    )
    assert statements[1].endswith(f"WHERE {day} GROUP BY time(1d), status_class")
    assert "INTO requests_daily FROM requests WHERE customer_id = 'it\\'s'" in statements[2]
    # the total the API checks comes from the same statement as the latencies
    assert statements[2].startswith("SELECT count(latency) AS total, mean(latency) AS average,")
    assert statements[3].endswith("GROUP BY time(1d), customer_id, status_class")
    answer = [{"tags": {"customer_id": "a"}, "columns": ["time", "dirty"], "values": [[OCT1, 4]]}]
    assert read_marks(answer) == {"a": 4}


def test_the_check_finds_rollups_missing_or_behind_the_requests():
    def series(customer: str, values: list[list[int]]) -> dict:
        return {"tags": {"customer_id": customer}, "columns": ["time", "n"], "values": values}

    counts = [series("a", [[OCT1, 3], [OCT1 + DAY, 2]]), series("b", [[OCT1, 1]])]
    totals = [series("a", [[OCT1, 3], [OCT1 + DAY, 1]])]
    assert behind(counts, totals) == {OCT1: ["b"], OCT1 + DAY: ["a"]}
    everyone = [{"columns": ["time", "count"], "values": [[OCT1, 4], [OCT1 + DAY, 2]]}]
    rolled = [{"columns": ["time", "total"], "values": [[OCT1, 4]]}]
    assert everyone_behind(everyone, rolled) == [OCT1 + DAY]


# -- against a real influxd -----------------------------------------------------------------

LINES = [
    "2026-10-01 08:00:00 acme /a 200 0.25",
    "2026-10-01 08:00:01 acme /a 503 1.5",
    "2026-10-01 09:00:00 tenant:7 /b 404 0.125",
    "2026-10-02 10:00:00 acme /a 200 0.5",
    "2026-10-02 10:00:00 acme /a 201 0.75",
    "2026-10-02 23:59:59 tenant:7 /b 500 2.0",
    "2026-10-03 00:00:00 acme /a 200 0.1",
]
BACKFILL = ["2026-10-02 12:00:00 acme /late 500 3.0", "2026-10-02 12:00:00 acme /late 200 0.01"]


def _run_rollup(settings) -> str:
    process = start_process(settings, command="rollup")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def _state(settings) -> dict[int, DayState]:
    with InfluxClient(settings) as client:
        return Rollups(client).scan()


def _check_api(settings, lines: list[str]) -> None:
    """The API's answers for every customer, cache off, equal the reference's."""
    expected = daily_stats_of(lines)  # "*": all customers together, /stats
    uncached = settings.model_copy(update={"cache_ttl": 0})
    with running_api(uncached) as client:
        for customer, days in expected.items():
            path = "/stats" if customer == "*" else f"/customers/{customer}/stats"
            answer = client.get(path, params={"from": "2026-10-01", "to": "2026-10-04"})
            assert answer.status_code == 200, answer.text
            got = {day["date"]: day for day in answer.json()["days"]}
            assert got.keys() == days.keys()
            for date_text, want in days.items():
                for name, value in want.items():
                    close = pytest.approx(value, rel=1e-12) if isinstance(value, float) else value
                    assert got[date_text][name] == close, name


def _log(tmp_path, lines: list[str]):
    log = tmp_path / "api.log"
    with log.open("a") as out:
        out.writelines(f"{line}\n" for line in lines)
    return log


def test_a_backfill_is_exact_before_during_and_after_its_rollups(settings, tmp_path):
    log = _log(tmp_path, LINES)
    run_process(settings, "--input", str(log), "--once")
    # the processor marked every customer and day it wrote; nothing is built yet
    assert {day: state.stale() for day, state in _state(settings).items()} == {
        OCT1: ["acme", "tenant:7"],
        OCT1 + DAY: ["acme", "tenant:7"],
        OCT1 + 2 * DAY: ["acme"],
    }
    _check_api(settings, LINES)

    assert "rollups built for 3 days: 5 customer-days" in _run_rollup(settings)
    assert not any(day.stale() for day in _state(settings).values())
    _check_api(settings, LINES)

    # a late line for a closed day: that customer's day is stale, the answer still exact
    _log(tmp_path, BACKFILL)
    run_process(settings, "--input", str(log), "--once")
    assert {day: s.stale() for day, s in _state(settings).items() if s.stale()} == {
        OCT1 + DAY: ["acme"]
    }
    _check_api(settings, LINES + BACKFILL)
    assert "rollups built for 1 day: 1 customer-days" in _run_rollup(settings)
    _check_api(settings, LINES + BACKFILL)

    # a late line from a writer without marks: the marks say current, the counts do not
    unmarked = ["2026-10-01 13:00:00 tenant:7 /c 200 0.02"]
    write_lines(settings, unmarked, salt=7, marks=False)
    assert not any(day.stale() for day in _state(settings).values())
    _check_api(settings, LINES + BACKFILL + unmarked)
    assert "rollups built for 1 day: 1 customer-days" in _run_rollup(settings)
    _check_api(settings, LINES + BACKFILL + unmarked)

    # two days behind with a current one between them: each is read from the requests
    apart = ["2026-10-01 14:00:00 acme /d 200 0.03", "2026-10-03 14:00:00 acme /d 500 0.04"]
    write_lines(settings, apart, salt=8, marks=False)
    _check_api(settings, LINES + BACKFILL + unmarked + apart)


def _oct2_median(settings, path: str) -> float:
    uncached = settings.model_copy(update={"cache_ttl": 0})
    with running_api(uncached) as client:
        answer = client.get(f"{path}?from_date=2026-10-02&to_date=2026-10-02")
    return answer.json()["days"][0]["median_latency"]


@pytest.mark.parametrize(
    ("path", "series", "median"),
    [
        ("/customers/acme/stats", "requests_daily,customer_id=acme", 0.625),
        ("/stats", "requests_daily", 0.75),  # all customers together
    ],
)
def test_the_api_takes_rollups_only_while_they_cover_the_requests_stored(
    settings, tmp_path, path, series, median
):
    log = _log(tmp_path, LINES)
    run_process(settings, "--input", str(log), "--once")
    _run_rollup(settings)
    assert _oct2_median(settings, path) == median
    with InfluxClient(settings) as client:
        # a rollup says 9.0: the API shows it, so it reads the rollup, not the requests
        client.write(f"{series} median=9.0 {OCT1 + DAY}000000000".encode())
    assert _oct2_median(settings, path) == 9.0
    # one more request that day, even unmarked: the rollup no longer counts
    write_lines(settings, ["2026-10-02 11:00:00 acme /a 200 0.6"], salt=3, marks=False)
    assert _oct2_median(settings, path) == (0.6 if series.endswith("acme") else 0.675)


def test_rollup_adopts_days_written_without_marks(settings):
    write_lines(settings, LINES, marks=False)  # as an earlier version stored them
    assert _state(settings) == {}
    assert "rollups built for 3 days: 5 customer-days" in _run_rollup(settings)
    assert _state(settings) == {}  # still no marks: the rollups are checked by their counts
    _check_api(settings, LINES)
    assert "rollups built for 0 days: 0 customer-days" in _run_rollup(settings)
    # all customers' rollup of a day behind (an earlier version built none): only it is built
    with InfluxClient(settings) as client:
        client.write(f"requests_daily total=999i {OCT1 + DAY}000000000".encode())
    assert "rollups built for 1 day: 0 customer-days" in _run_rollup(settings)
    _check_api(settings, LINES)
    assert "rollups built for 0 days: 0 customer-days" in _run_rollup(settings)


def test_the_following_processor_builds_closed_days_once_caught_up(
    settings, tmp_path, monkeypatch
):
    monkeypatch.setenv("LOGPIPE_ROLLUP_INTERVAL", "0.2")
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    live = [f"{today} 00:00:00 acme /a 200 0.5"]
    log = _log(tmp_path, LINES + live)
    process = start_process(settings, "--input", str(log))
    try:

        def built() -> bool:
            try:
                state = _state(settings)
            except InfluxRejected:  # no database before the processor's start
                return False
            return len(state) == 4 and all(
                not s.stale() for day, s in state.items() if day < OCT1 + 3 * DAY
            )

        wait_until(built, timeout=60, what="the rollups of the closed days")
        # today is not closed: marked, never built
        (today_state,) = [s for day, s in _state(settings).items() if day >= OCT1 + 3 * DAY]
        assert today_state.stale() == ["acme"]
    finally:
        stop_process(process)
    _check_api(settings, LINES)


def _record_looks(monkeypatch) -> list[int | None]:
    """The first day each look of a Follower reads (None: every day), from now on."""
    looks: list[int | None] = []
    scan = Rollups.scan

    def recorded(rollups, since=None):
        found = scan(rollups, since)
        if threading.current_thread().name == "logpipe-rollup":  # not the test's own reads
            looks.append(since)
        return found

    monkeypatch.setattr(Rollups, "scan", recorded)
    return looks


def test_a_follower_not_told_what_is_written_reads_every_day_at_every_look(settings, monkeypatch):
    write_lines(settings, LINES)
    looks = _record_looks(monkeypatch)
    follower = Follower(settings.model_copy(update={"rollup_interval": 0.1}), lambda: 0)
    follower.start()
    try:
        wait_until(lambda: len(looks) >= 4, timeout=30, what="four looks")
    finally:
        follower.stop()
    assert set(looks) == {None}
    assert not any(state.stale() for state in _state(settings).values())


def test_after_its_first_look_the_follower_reads_only_the_days_written_since(
    settings, monkeypatch
):
    write_lines(settings, LINES)
    looks = _record_looks(monkeypatch)
    noted: list[int] = []
    quick = settings.model_copy(update={"rollup_interval": 0.1})
    follower = Follower(quick, lambda: 0, lambda: noted.pop() if noted else None)
    follower.start()
    try:
        # every day: what an earlier run left stale is built on the second look; the third
        # finds it current, and there the looks stop, with nothing written or stale
        wait_until(lambda: len(looks) == 3, timeout=30, what="three looks")
        assert looks == [None, OCT1, OCT1]
        assert not any(state.stale() for state in _state(settings).values())
        # a backfill of two days, of which this process wrote the second one
        write_lines(settings, ["2026-10-01 12:00:00 acme /late 200 0.1"], salt=1)
        write_lines(settings, ["2026-10-02 12:00:00 acme /late 200 0.1"], salt=1)
        noted.append(OCT1 + DAY)
        wait_until(lambda: not _state(settings)[OCT1 + DAY].stale(), timeout=30, what="a build")
        assert set(looks[3:]) == {OCT1 + DAY}
        # the day before it was not read: left to `logpipe rollup` (the API reads it from
        # the requests meanwhile, as it does every day whose rollup is behind)
        assert _state(settings)[OCT1].stale() == ["acme"]
    finally:
        follower.stop()
