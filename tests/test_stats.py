from datetime import date

from logpipe.stats import (
    DayStats,
    customer_totals,
    customers_query,
    day_spans,
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


def test_rollup_query_reads_one_customer_and_counts_its_requests_now():
    query = rollup_query("it's", date(2026, 10, 1), date(2026, 10, 2))
    where = (
        "WHERE customer_id = 'it\\'s'"
        " AND time >= 1790812800000000000 AND time < 1790985600000000000"
    )
    assert query == (
        f"SELECT * FROM requests_daily {where} GROUP BY status_class; "
        f"SELECT count(latency) AS n FROM requests {where} GROUP BY time(1d) fill(none)"
    )


def test_day_spans_are_runs_of_consecutive_days():
    days = [date(2026, 10, d) for d in (1, 2, 3, 5, 7, 8)] + [date(2026, 11, 1)]
    assert day_spans(days) == [
        (date(2026, 10, 1), date(2026, 10, 3)),
        (date(2026, 10, 5), date(2026, 10, 5)),
        (date(2026, 10, 7), date(2026, 10, 8)),
        (date(2026, 11, 1), date(2026, 11, 1)),
    ]
    assert day_spans([date(2026, 10, 31), date(2026, 11, 1)]) == [
        (date(2026, 10, 31), date(2026, 11, 1))
    ]
    assert day_spans([]) == []


def test_rollup_query_for_all_customers_reads_the_series_without_a_customer():
    query = rollup_query(None, date(2026, 10, 1), date(2026, 10, 2))
    days = "time >= 1790812800000000000 AND time < 1790985600000000000"
    assert query == (
        f"SELECT * FROM requests_daily WHERE customer_id = '' AND {days} GROUP BY status_class; "
        f"SELECT count(latency) AS n FROM requests WHERE {days} GROUP BY time(1d) fill(none)"
    )


OCT1, OCT2, OCT3, OCT4 = (1790812800 + n * 86400 for n in range(4))


def _rollups(rows: list[list], counts: dict[str, list[list[int]]], now: list[list[int]]):
    """A rollup_query answer: rollups (time, total, average, median, p99), class counts,
    and the requests counted now per day."""
    columns = ["time", "average", "covered", "dirty", "median", "n", "p99", "total"]

    def series(status_class: str, values: list[list]) -> dict:
        tags = {"status_class": status_class}
        return {"name": "requests_daily", "tags": tags, "columns": columns, "values": values}

    own = [[t, avg, 1, 1, med, None, p99, total] for t, total, avg, med, p99 in rows]
    rollups = [series("", own)] + [
        series(status_class, [[t] + [None] * 4 + [n, None, None] for t, n in values])
        for status_class, values in counts.items()
    ]
    return [rollups, [{"name": "requests", "columns": ["time", "n"], "values": now}]]


def test_rollups_count_only_where_they_cover_exactly_the_requests_stored_now():
    answer = _rollups(
        rows=[
            [OCT1, 4, 0.5, 0.4, 0.9],  # current
            [OCT2, 5, 0.5, 0.4, 0.9],  # a late request since the build: 6 now
            [OCT3, 3, 0.5, 0.4, 0.9],  # its class counts say 2: built while a write landed
        ],
        counts={"2xx": [[OCT1, 2], [OCT2, 5], [OCT3, 2]], "4xx": [[OCT1, 1]], "5xx": [[OCT1, 1]]},
        now=[[OCT1, 4], [OCT2, 6], [OCT3, 3], [OCT4, 7]],  # OCT4: no rollup yet
    )
    current, behind = rollup_days(answer, failure_status=500)
    assert current == [DayStats(date(2026, 10, 1), 4, 3, 1, 75.0, 0.5, 0.4, 0.9)]
    assert behind == [date(2026, 10, 2), date(2026, 10, 3), date(2026, 10, 4)]
    assert rollup_days(answer, failure_status=400)[0][0].failed_requests == 2


def test_a_rollup_of_a_day_without_requests_now_is_not_an_answer():
    answer = _rollups([[OCT1, 4, 0.5, 0.4, 0.9]], {"2xx": [[OCT1, 4]]}, now=[])
    assert rollup_days(answer, failure_status=500) == ([], [])
    assert rollup_days([], failure_status=500) == ([], [])
