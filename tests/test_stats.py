from datetime import date

from logpipe.stats import DayStats, day_stats, stats_query


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
