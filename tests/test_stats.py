from datetime import date

from logpipe.stats import DayStats, customer_totals, customers_query, day_stats, stats_query


def test_query_covers_whole_utc_days_and_escapes_the_customer():
    query = stats_query("cust_1", date(2026, 10, 1), date(2026, 10, 2), failure_status=500)
    first, second = query.split(";")
    day1, day3 = 1790812800 * 10**9, 1790985600 * 10**9  # 2026-10-01 and 2026-10-03, 00:00Z
    for statement in (first, second):
        assert f"time >= {day1} AND time < {day3}" in statement
        assert "customer_id = 'cust_1'" in statement
        assert statement.rstrip().endswith("GROUP BY time(1d) fill(none)")
    assert "percentile(latency, 99)" in first and "median(latency)" in first
    assert "status >= 500" in second and "status" not in first


def test_failure_threshold_is_the_setting():
    query = stats_query("c", date(2026, 1, 1), date(2026, 1, 1), failure_status=400)
    assert "status >= 400" in query


def test_rows_become_days_with_failed_count_defaulting_to_zero():
    totals = [
        {
            "name": "requests",
            "columns": ["time", "total", "average", "median", "p99"],
            "values": [[1790812800, 4, 0.5, 0.4, 0.9], [1790899200, 2, 1.0, 1.0, 1.5]],
        }
    ]
    failed = [{"name": "requests", "columns": ["time", "failed"], "values": [[1790812800, 1]]}]
    assert day_stats([totals, failed]) == [
        DayStats(date(2026, 10, 1), 4, 3, 1, 75.0, 0.5, 0.4, 0.9),
        DayStats(date(2026, 10, 2), 2, 2, 0, 100.0, 1.0, 1.0, 1.5),
    ]


def test_no_series_means_no_days():
    assert day_stats([[], []]) == []


def test_all_customers_query_has_no_customer_filter():
    query = stats_query(None, date(2026, 10, 1), date(2026, 10, 1), failure_status=500)
    assert "customer_id" not in query
    assert query.count("GROUP BY time(1d) fill(none)") == 2


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
