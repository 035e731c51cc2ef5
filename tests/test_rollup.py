"""Daily rollups: the pure parts, then the processor's marks, `logpipe rollup`, the following
processor and the API's reading of them, against a real influxd."""

from __future__ import annotations

import dataclasses
import random
import threading
from datetime import date, datetime, timezone

import pytest

from logpipe.errors import InfluxRejected
from logpipe.influx import InfluxClient
from logpipe.process.counters import Counters
from logpipe.process.follower import Follower
from logpipe.rollup import (
    EVERYONE,
    DayState,
    Rollup,
    Rollups,
    Stored,
    build_query,
    covered_lines,
    is_current,
    marker_lines,
    marks_digest,
    marks_query,
    read_marks,
    read_query,
    read_scan,
    scan_query,
    to_build,
    to_check,
)
from logpipe.stats import DayStats
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
    digest = marks_digest({"a": 42})
    assert covered_lines(OCT1, {"a": digest, EVERYONE: 7}) == [
        f"requests_daily covered=7i {OCT1}000000000",  # all customers: no customer_id
        f"requests_daily,customer_id=a covered={digest}i {OCT1}000000000",
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


# -- marks_digest and is_current: the one rule -----------------------------------------------


def test_the_digest_of_marks_does_not_depend_on_their_order():
    marks = {"a": 5, "b": 7, "c": 9}
    assert marks_digest(marks) == marks_digest(dict(reversed(marks.items())))


def test_the_digest_changes_when_any_mark_changes():
    marks = {"a": 5, "b": 7, "c": 9}
    digests = {marks_digest(marks), marks_digest({})}
    for customer in marks:
        digests.add(marks_digest({**marks, customer: marks[customer] + 1}))
        digests.add(marks_digest({c: m for c, m in marks.items() if c != customer}))
    digests.add(marks_digest({**marks, "d": 1}))
    assert len(digests) == 9  # every one different


def test_the_digest_changes_when_two_customers_get_the_same_new_mark():
    # one write marks every customer-day it touches with the same token: an xor of the marks
    # would cancel them out, and the write would go unseen
    old, new = 12345, 67890
    assert old ^ old == new ^ new
    assert marks_digest({"a": old, "b": old}) != marks_digest({"a": new, "b": new})


def test_the_digest_is_a_non_negative_influxdb_integer():
    rng = random.Random(7)
    for _ in range(1000):
        marks = {f"c{n}": rng.getrandbits(62) + 1 for n in range(rng.randrange(4))}
        assert 0 <= marks_digest(marks) < 2**62


MARKS = {"a": 5, "b": 7}
CURRENT = Rollup(
    total=4,
    latencies={"average": 0.5, "median": 0.4, "p99": 0.9},
    by_class={"2xx": 2, "4xx": 1, "5xx": 1},
    covered=marks_digest(MARKS),
)


def test_a_rollup_is_current_when_its_marks_counts_and_latencies_agree():
    assert is_current(CURRENT, marks=MARKS, requests=4)


@pytest.mark.parametrize(
    ("rollup", "marks", "requests"),
    [
        pytest.param(Rollup(), MARKS, 4, id="never-built"),
        pytest.param(dataclasses.replace(CURRENT, covered=None), MARKS, 4, id="not-covered"),
        pytest.param(CURRENT, {**MARKS, "b": 8}, 4, id="a-mark-changed"),
        pytest.param(CURRENT, {**MARKS, "c": 1}, 4, id="a-customer-marked-since"),
        pytest.param(CURRENT, {"a": 5}, 4, id="a-mark-gone"),
        pytest.param(CURRENT, MARKS, 5, id="more-requests-now"),
        pytest.param(CURRENT, MARKS, 3, id="fewer-requests-now"),
        pytest.param(dataclasses.replace(CURRENT, total=5), MARKS, 4, id="total-differs"),
        pytest.param(
            dataclasses.replace(CURRENT, by_class={"2xx": 2, "5xx": 1}), MARKS, 4,
            id="classes-short",
        ),
        pytest.param(
            dataclasses.replace(CURRENT, by_class={"2xx": 4, "5xx": 1}), MARKS, 4,
            id="classes-over",
        ),
        pytest.param(
            dataclasses.replace(CURRENT, latencies={"average": 0.5, "median": None, "p99": 0.9}),
            MARKS, 4, id="no-median",
        ),
        pytest.param(dataclasses.replace(CURRENT, latencies={}), MARKS, 4, id="no-latencies"),
    ],
)  # fmt: skip
def test_each_condition_alone_makes_a_rollup_not_current(rollup, marks, requests):
    assert not is_current(rollup, marks=marks, requests=requests)


# -- the scan and what the follower builds ---------------------------------------------------


def _scan(rows: dict[str, list[list]]) -> list[dict]:
    """A scan_query answer: rows of (time, dirty, covered) per customer."""
    return [
        {"name": "requests_daily", "tags": {"customer_id": who, "status_class": ""},
         "columns": ["time", "dirty", "covered"], "values": values}
        for who, values in rows.items()
    ]  # fmt: skip


def _covers(customer: str, mark: int) -> int:
    """The `covered` a build of the customer's day stores after reading `mark`."""
    return marks_digest({customer: mark})


def test_what_to_build_is_the_stale_customers_of_closed_days_that_stayed_quiet():
    a5, b3 = _covers("a", 5), _covers("b", 3)
    days = read_scan(
        _scan(
            {
                "a": [[OCT1, 5, a5], [OCT1 + DAY, 6, a5], [OCT1 + 2 * DAY, 7, None]],
                "b": [[OCT1, 3, b3], [OCT1 + 3 * DAY, 8, None]],
            }
        )
    )
    assert days[OCT1] == DayState({"a": (5, a5), "b": (3, b3)})
    assert days[OCT1].stale() == []
    assert days[OCT1 + DAY].stale() == ["a"]
    before = OCT1 + 3 * DAY  # the fourth day is not closed
    assert to_build(days, before=before, previous=days) == {
        OCT1 + DAY: ["a"],
        OCT1 + 2 * DAY: ["a"],
    }
    # a day whose marks changed since the last look is still being written: later
    changed = {**days, OCT1 + DAY: DayState({"a": (9, a5), "b": (3, b3)})}
    assert to_build(days, before=before, previous=changed) == {OCT1 + 2 * DAY: ["a"]}
    assert to_build(days, before=before, previous={}) == {}  # the first look


def test_a_scan_skips_class_counts_and_the_rollup_of_all_customers():
    answer = [
        *_scan({"a": [[OCT1, 5, None]], "": [[OCT1, None, 9]]}),
        {"tags": {"customer_id": "a", "status_class": "2xx"}, "columns": ["time", "dirty",
         "covered"], "values": [[OCT1, None, None]]},
    ]  # fmt: skip
    assert read_scan(answer) == {OCT1: DayState({"a": (5, None)})}


def test_the_covered_mark_is_the_digest_of_the_customer_s_own_mark():
    assert DayState({"a": (5, 5)}).stale() == ["a"]  # a raw mark is not its digest
    assert DayState({"a": (5, _covers("b", 5))}).stale() == ["a"]  # another customer's
    assert DayState({"a": (None, 5), "b": (3, _covers("b", 3))}).stale() == []


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
    answer = [
        {"tags": {"customer_id": "a"}, "columns": ["time", "dirty"], "values": [[OCT1, 4]]},
        {"tags": {"customer_id": ""}, "columns": ["time", "dirty"], "values": [[OCT1, None]]},
    ]
    assert read_marks(answer) == {"a": 4}


# -- the API's read: read_query ------------------------------------------------------------

ROW_COLUMNS = ["time", "total", "average", "median", "p99", "covered", "dirty"]


def _stored_answer(
    rollups: dict[str, list[list]], classes: dict[tuple[str, str], list[list[int]]]
) -> list[list[dict]]:
    """The two statements of stored rollups: rows (time, total, average, median, p99,
    covered, dirty) per customer (EVERYONE: all together), class counts per (customer,
    class)."""
    rows = [
        {"name": "requests_daily", "tags": {"customer_id": customer}, "columns": ROW_COLUMNS,
         "values": values}
        for customer, values in rollups.items()
    ]  # fmt: skip
    counts = [
        {"name": "requests_daily", "tags": {"customer_id": customer, "status_class": klass},
         "columns": ["time", "n"], "values": values}
        for (customer, klass), values in classes.items()
    ]  # fmt: skip
    return [rows, counts]


def _requests_now(counts: list[list[int]]) -> list[dict]:
    return [{"name": "requests", "columns": ["time", "n"], "values": counts}]


OCT = [date(2026, 10, d) for d in range(1, 6)]
OCT_S = [OCT1 + n * DAY for n in range(5)]


def test_read_query_reads_one_customer_s_rollups_and_its_requests_now():
    statements = read_query("it's", OCT[0], OCT[1], failure_status=500).statements
    days = "time >= 1790812800000000000 AND time < 1790985600000000000"
    assert len(statements) == 3
    assert statements[0].startswith("SELECT total, average, median, p99, covered, dirty FROM")
    assert f"WHERE customer_id = 'it\\'s' AND status_class = '' AND {days}" in statements[0]
    assert f"WHERE customer_id = 'it\\'s' AND status_class != '' AND {days}" in statements[1]
    assert statements[2] == (
        f"SELECT count(latency) AS n FROM requests WHERE customer_id = 'it\\'s' AND {days}"
        " GROUP BY time(1d) fill(none)"
    )


def test_read_query_for_all_customers_reads_every_customer_s_marks():
    statements = read_query(None, OCT[0], OCT[1], failure_status=500).statements
    # the rows of every customer (their marks), the class counts of all customers together
    assert "WHERE status_class = '' AND time >=" in statements[0]
    assert "WHERE customer_id = '' AND status_class != '' AND time >=" in statements[1]
    assert "customer_id" not in statements[2]


def test_read_query_serves_a_current_day_and_lists_the_days_behind():
    a = "acme"
    rollups = {
        a: [
            [OCT_S[0], 4, 0.5, 0.4, 0.9, _covers(a, 5), 5],  # current
            [OCT_S[1], 2, 0.5, 0.4, 0.9, _covers(a, 5), 6],  # marked since: a point replaced
            [OCT_S[2], 5, 0.5, 0.4, 0.9, _covers(a, 5), 5],  # a late request: 6 now
            [OCT_S[3], 3, 0.5, 0.4, 0.9, _covers(a, 5), 5],  # no requests now: deleted
        ]
    }
    classes = {
        (a, "2xx"): [[OCT_S[0], 2], [OCT_S[1], 2], [OCT_S[2], 5], [OCT_S[3], 3]],
        (a, "4xx"): [[OCT_S[0], 1]],
        (a, "5xx"): [[OCT_S[0], 1]],
    }
    now = _requests_now([[OCT_S[0], 4], [OCT_S[1], 2], [OCT_S[2], 6], [OCT_S[4], 7]])
    answer = [*_stored_answer(rollups, classes), now]  # OCT 5: never built
    current, behind = read_query(a, OCT[0], OCT[4], failure_status=500).parse(answer)
    assert current == {OCT[0]: DayStats(OCT[0], 4, 3, 1, 75.0, 0.5, 0.4, 0.9)}
    assert behind == [OCT[1], OCT[2], OCT[4]]  # OCT 4 is in neither: no requests
    current, _ = read_query(a, OCT[0], OCT[4], failure_status=400).parse(answer)
    assert current[OCT[0]].failed_requests == 2


def test_read_query_of_all_customers_is_behind_when_any_customer_s_mark_changes():
    marks = {"a": 5, "b": 7}
    rollups = {
        EVERYONE: [[OCT_S[0], 3, 0.5, 0.4, 0.9, marks_digest(marks), None]],
        "a": [[OCT_S[0], 2, 0.5, 0.4, 0.9, _covers("a", 5), 5]],
        "b": [[OCT_S[0], 1, 0.5, 0.4, 0.9, _covers("b", 7), 7]],
    }
    classes = {(EVERYONE, "2xx"): [[OCT_S[0], 2]], (EVERYONE, "5xx"): [[OCT_S[0], 1]]}
    now = _requests_now([[OCT_S[0], 3]])
    query = read_query(None, OCT[0], OCT[0], failure_status=500)
    current, behind = query.parse([*_stored_answer(rollups, classes), now])
    assert current == {OCT[0]: DayStats(OCT[0], 3, 2, 1, 100 * 2 / 3, 0.5, 0.4, 0.9)}
    assert behind == []
    # b's point replaced (same count): b's own rollup and all customers' are behind
    rollups["b"] = [[OCT_S[0], 1, 0.5, 0.4, 0.9, _covers("b", 7), 8]]
    assert query.parse([*_stored_answer(rollups, classes), now]) == ({}, [OCT[0]])
    # a customer never built before, marked since: behind too
    rollups["b"] = [[OCT_S[0], 1, 0.5, 0.4, 0.9, _covers("b", 7), 7]]
    rollups["c"] = [[OCT_S[0], None, None, None, None, None, 1]]
    assert query.parse([*_stored_answer(rollups, classes), now]) == ({}, [OCT[0]])


def test_read_query_of_nothing_stored_is_nothing_to_serve():
    query = read_query("acme", OCT[0], OCT[1], failure_status=500)
    assert query.answer([]) == ({}, [])  # no database yet
    assert query.parse([[], [], _requests_now([[OCT_S[1], 2]])]) == ({}, [OCT[1]])


def test_rollups_cannot_count_failures_from_inside_a_class():
    with pytest.raises(ValueError, match="450"):
        read_query("acme", OCT[0], OCT[1], failure_status=450)


# -- `logpipe rollup`: what to check --------------------------------------------------------


def _counts(per_customer: dict[str, list[list[int]]]) -> list[dict]:
    """Requests counted now: count … GROUP BY time(1d), customer_id."""
    return [
        {"tags": {"customer_id": customer}, "columns": ["time", "count"], "values": values}
        for customer, values in per_customer.items()
    ]


def _rollup(total: int, covered: int | None) -> Rollup:
    return Rollup(total, {"average": 0.5, "median": 0.4, "p99": 0.9}, {"2xx": total}, covered)


def test_the_check_finds_rollups_missing_or_behind_the_requests():
    counts = _counts({"a": [[OCT1, 3], [OCT1 + DAY, 2]], "b": [[OCT1, 1]]})
    stored = Stored(
        rollups={
            ("a", OCT1): _rollup(3, _covers("a", 5)),
            ("a", OCT1 + DAY): _rollup(1, _covers("a", 6)),  # a request since: 2 now
            (EVERYONE, OCT1): _rollup(4, marks_digest({"a": 5})),  # b never marked or built
            (EVERYONE, OCT1 + DAY): _rollup(2, marks_digest({"a": 6})),
        },
        marks={OCT1: {"a": 5}, OCT1 + DAY: {"a": 6}},
    )
    assert to_check(counts, stored, rebuild=False) == {OCT1: ["b"], OCT1 + DAY: ["a"]}
    assert to_check(counts, stored, rebuild=True) == {OCT1: ["a", "b"], OCT1 + DAY: ["a"]}
    assert to_check([], stored, rebuild=True) == {}  # no requests, nothing to build


def test_the_check_lists_a_day_whose_only_all_customers_rollup_is_behind():
    counts = _counts({"a": [[OCT1, 3]], "b": [[OCT1, 1]]})
    customers = {
        ("a", OCT1): _rollup(3, _covers("a", 5)),
        ("b", OCT1): _rollup(1, _covers("b", 7)),
    }
    marks = {OCT1: {"a": 5, "b": 7}}
    everyone = {(EVERYONE, OCT1): _rollup(4, marks_digest(marks[OCT1]))}
    assert to_check(counts, Stored({**customers, **everyone}, marks), rebuild=False) == {}
    assert to_check(counts, Stored(customers, marks), rebuild=False) == {OCT1: []}
    stale_everyone = {(EVERYONE, OCT1): _rollup(4, marks_digest({"a": 5}))}  # built before b
    assert to_check(counts, Stored({**customers, **stale_everyone}, marks), rebuild=False) == {
        OCT1: []
    }
    assert to_check(counts, Stored({**customers, **everyone}, marks), rebuild=True) == {
        OCT1: ["a", "b"]
    }


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
    # still no marks: each build covered the digest of none, and the counts check the rollups
    unmarked = DayState({"acme": (None, marks_digest({})), "tenant:7": (None, marks_digest({}))})
    assert _state(settings) == {
        OCT1: unmarked,
        OCT1 + DAY: unmarked,
        OCT1 + 2 * DAY: DayState({"acme": (None, marks_digest({}))}),
    }
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
