from datetime import date

from logpipe.stats import (
    DayStats,
    customer_totals,
    customers_query,
    day_stats,
    day_stats_by_customer,
    rollup_days,
    rollup_query,
    stats_query,
)


def test_query_covers_whole_utc_days_and_escapes_the_customer():
    query = stats_query("cust_1", date(2026, 10, 1), date(2026, 10, 2), failure_status=500)
    statements = query.split("; ")
    assert len(statements) == 2  # a threshold of 500 needs no per-point status filter
    day1, day3 = 1790812800 * 10**9, 1790985600 * 10**9  # 2026-10-01 and 2026-10-03, 00:00Z
    for statement in statements:
        assert f"time >= {day1} AND time < {day3}" in statement
        assert "customer_id = 'cust_1'" in statement
    assert "percentile(latency, 99)" in statements[0] and "median(latency)" in statements[0]
    assert statements[1].endswith("GROUP BY time(1d), status_class fill(none)")
    assert "status >=" not in query


def test_a_threshold_inside_a_class_counts_that_class_by_status():
    query = stats_query("c", date(2026, 1, 1), date(2026, 1, 1), failure_status=450)
    assert "status_class = '4xx' AND status >= 450" in query.split("; ")[2]


def _series(class_counts: dict[str, list[list[int]]]) -> list[dict]:
    return [
        {"name": "requests", "tags": {"status_class": klass}, "columns": ["time", "n"],
         "values": values}
        for klass, values in class_counts.items()
    ]  # fmt: skip


LATENCIES = [
    {
        "name": "requests",
        "columns": ["time", "average", "median", "p99"],
        "values": [[1790812800, 0.5, 0.4, 0.9], [1790899200, 1.0, 1.0, 1.5]],
    }
]
COUNTS = _series(
    {"2xx": [[1790812800, 2], [1790899200, 2]], "4xx": [[1790812800, 1]], "5xx": [[1790812800, 1]]}
)


def test_rows_become_days_with_failures_from_the_status_classes():
    assert day_stats([LATENCIES, COUNTS], failure_status=500) == [
        DayStats(date(2026, 10, 1), 4, 3, 1, 75.0, 0.5, 0.4, 0.9),
        DayStats(date(2026, 10, 2), 2, 2, 0, 100.0, 1.0, 1.0, 1.5),
    ]
    assert day_stats([LATENCIES, COUNTS], failure_status=400)[0].failed_requests == 2


def test_a_threshold_inside_a_class_adds_the_partial_count():
    partial = [{"name": "requests", "columns": ["time", "n"], "values": [[1790812800, 1]]}]
    (first, _) = day_stats([LATENCIES, COUNTS, partial], failure_status=450)
    assert first.failed_requests == 2  # the 5xx and the one 4xx at or above 450


def test_no_series_means_no_days():
    assert day_stats([[], []], failure_status=500) == []


def test_all_customers_query_has_no_customer_filter():
    query = stats_query(None, date(2026, 10, 1), date(2026, 10, 1), failure_status=500)
    assert "customer_id" not in query
    assert query.count("GROUP BY time(1d)") == 2


def test_customers_query_pages_by_series():
    assert customers_query(customer_id=None, limit=10, offset=20) == (
        "SELECT count(latency) AS total FROM requests GROUP BY customer_id SLIMIT 10 SOFFSET 20"
    )
    scoped = customers_query(customer_id="acme-corp.eu", limit=5, offset=0)
    assert "WHERE customer_id = 'acme-corp.eu' GROUP BY customer_id" in scoped


def test_a_hostile_customer_id_stays_inside_its_string_literal():
    # never valid in the API (422 first), but the query builder escapes it all the same
    query = stats_query("x' OR customer_id =~ /.*/ --", date(2026, 1, 1), date(2026, 1, 1),
                        failure_status=500)  # fmt: skip
    assert "customer_id = 'x\\' OR customer_id =~ /.*/ --' AND time" in query


def test_customer_totals_in_id_order():
    series = [
        {"name": "requests", "tags": {"customer_id": "b"}, "columns": ["time", "total"],
         "values": [[0, 7]]},
        {"name": "requests", "tags": {"customer_id": "a"}, "columns": ["time", "total"],
         "values": [[0, 3]]},
    ]  # fmt: skip
    assert customer_totals([series]) == [("a", 3), ("b", 7)]
    assert customer_totals([[]]) == []


def test_by_customer_query_and_rows():
    query = stats_query(None, date(2026, 10, 1), date(2026, 10, 2), failure_status=500,
                        by_customer=True)  # fmt: skip
    assert "GROUP BY time(1d), customer_id fill(none)" in query
    assert "GROUP BY time(1d), customer_id, status_class fill(none)" in query

    def tagged(series, customer):
        return [
            {**one, "tags": {**one.get("tags", {}), "customer_id": customer}} for one in series
        ]

    latencies = tagged(LATENCIES, "a") + tagged(LATENCIES[:1], "b")
    counts = tagged(COUNTS, "a") + tagged(_series({"2xx": [[1790812800, 9]]}), "b")
    grouped = day_stats_by_customer([latencies, counts], failure_status=500)
    assert grouped["a"] == day_stats([LATENCIES, COUNTS], failure_status=500)
    assert [(d.date, d.total_requests, d.failed_requests) for d in grouped["b"]] == [
        (date(2026, 10, 1), 9, 0)
    ]


def test_rollup_query_reads_one_customer_and_the_complete_marks():
    query = rollup_query("it's", date(2026, 10, 1), date(2026, 10, 2))
    assert query == (
        "SELECT * FROM requests_daily WHERE (customer_id = 'it\\'s' OR customer_id = '')"
        " AND time >= 1790812800000000000 AND time < 1790985600000000000"
        " GROUP BY customer_id, status_class"
    )


OCT1, OCT2, OCT3, OCT4 = (1790812800 + n * 86400 for n in range(4))


def _rollups(rows: list[list], counts: dict[str, list[list[int]]], complete: list[int]) -> list:
    """A rollup_query answer: the customer's rollups (time, average, covered, dirty, median,
    p99), its counts by class and the days marked complete."""
    columns = ["time", "average", "complete", "covered", "dirty", "median", "n", "p99"]

    def series(customer: str, status_class: str, values: list[list]) -> dict:
        tags = {"customer_id": customer, "status_class": status_class}
        return {"name": "requests_daily", "tags": tags, "columns": columns, "values": values}

    own = [[t, avg, None, cov, dirty, med, None, p99] for t, avg, cov, dirty, med, p99 in rows]
    answer = [series("", "", [[t, None, 1, None, None, None, None, None] for t in complete])]
    answer.append(series("c", "", own))
    for status_class, values in counts.items():
        answer.append(series("c", status_class, [[t] + [None] * 5 + [n, None] for t, n in values]))
    return answer


def test_current_rollups_become_days_and_stale_or_missing_ones_are_left_out():
    answer = _rollups(
        rows=[
            [OCT1, 0.5, 7, 7, 0.4, 0.9],  # current
            [OCT2, 0.5, 7, 8, 0.4, 0.9],  # a backfill since the build
            [OCT3, None, None, 9, None, None],  # marked, never built
        ],
        counts={"2xx": [[OCT1, 2], [OCT2, 5]], "4xx": [[OCT1, 1]], "5xx": [[OCT1, 1]]},
        complete=[OCT1, OCT2, OCT4],
    )
    assert rollup_days(answer, "c", failure_status=500) == {
        date(2026, 10, 1): DayStats(date(2026, 10, 1), 4, 3, 1, 75.0, 0.5, 0.4, 0.9),
        date(2026, 10, 4): None,  # complete, and nothing of this customer: no requests
    }
    assert rollup_days(answer, "c", failure_status=400)[date(2026, 10, 1)].failed_requests == 2
    assert rollup_days(answer, "other", failure_status=500) == {
        date(2026, 10, d): None for d in (1, 2, 4)
    }


def test_without_a_complete_mark_a_day_without_rollup_is_unknown():
    assert rollup_days(_rollups([], {}, complete=[]), "c", failure_status=500) == {}
    assert rollup_days([], "c", failure_status=500) == {}
