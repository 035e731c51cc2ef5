"""The InfluxQL of the API's statistics and the parsing of its answers: pure, no server."""

from __future__ import annotations

from datetime import date

from logpipe.stats import (
    DayStats,
    Query,
    customers_query,
    stats_query,
    together,
)

OCT1, OCT2 = date(2026, 10, 1), date(2026, 10, 2)
OCT1_S, OCT2_S = 1790812800, 1790899200  # their first seconds (InfluxDB answers with epoch=s)
WHOLE_OCT1_TO_OCT2 = "time >= 1790812800000000000 AND time < 1790985600000000000"


# -- Query and together --------------------------------------------------------------------


def _recording(name: str, statements: int, seen: list) -> Query[str]:
    """A query of `statements` made-up statements whose parser records what it was given."""

    def parse(answer):
        seen.append((name, list(answer)))
        return name

    return Query(tuple(f"SELECT {name}{n}" for n in range(statements)), parse)


def test_a_missing_database_answers_no_statement_and_the_query_pads_it_with_no_series():
    seen: list = []
    query = _recording("q", 3, seen)
    assert query.answer([]) == "q"
    assert query.answer([[{"name": "x"}]]) == "q"
    assert seen == [("q", [[], [], []]), ("q", [[{"name": "x"}], [], []])]


def test_together_gives_each_parser_only_its_own_statements():
    seen: list = []
    joined = together(_recording("a", 3, seen), _recording("b", 2, seen))
    assert joined.statements == ("SELECT a0", "SELECT a1", "SELECT a2", "SELECT b0", "SELECT b1")
    assert joined.text == "SELECT a0; SELECT a1; SELECT a2; SELECT b0; SELECT b1"
    answer = [[{"n": n}] for n in range(5)]
    assert joined.answer(answer) == ("a", "b")
    assert seen == [("a", answer[:3]), ("b", answer[3:])]
    seen.clear()
    assert joined.answer([]) == ("a", "b")  # no database: each still gets its own, empty
    assert seen == [("a", [[], [], []]), ("b", [[], []])]


# -- stats_query ---------------------------------------------------------------------------


def test_query_covers_whole_utc_days_and_escapes_the_customer():
    statements = stats_query("cust_1", OCT1, OCT2, failure_status=500).statements
    assert len(statements) == 2  # a threshold of 500 needs no per-point status filter
    for statement in statements:
        assert WHOLE_OCT1_TO_OCT2 in statement
        assert "customer_id = 'cust_1'" in statement
    assert "percentile(latency, 99)" in statements[0] and "median(latency)" in statements[0]
    assert statements[1].endswith("GROUP BY time(1d), status_class fill(none)")
    assert not any("status >=" in statement for statement in statements)


def test_a_threshold_inside_a_class_counts_that_class_by_status():
    statements = stats_query("c", OCT1, OCT1, failure_status=450).statements
    assert len(statements) == 3
    assert "status_class = '4xx' AND status >= 450" in statements[2]


def test_all_customers_query_has_no_customer_filter():
    query = stats_query(None, OCT1, OCT1, failure_status=500)
    assert "customer_id" not in query.text
    assert query.text.count("GROUP BY time(1d)") == 2


def test_a_hostile_customer_id_stays_inside_its_string_literal():
    # never valid in the API (422 first), but the query builder escapes it all the same
    query = stats_query("x' OR customer_id =~ /.*/ --", OCT1, OCT1, failure_status=500)
    assert "customer_id = 'x\\' OR customer_id =~ /.*/ --' AND time" in query.text


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
        "values": [[OCT1_S, 0.5, 0.4, 0.9], [OCT2_S, 1.0, 1.0, 1.5]],
    }
]
COUNTS = _series({"2xx": [[OCT1_S, 2], [OCT2_S, 2]], "4xx": [[OCT1_S, 1]], "5xx": [[OCT1_S, 1]]})


def _parsed(answer: list, failure_status: int) -> dict[date, DayStats]:
    return stats_query("c", OCT1, OCT2, failure_status=failure_status).parse(answer)


def test_rows_become_days_with_failures_from_the_status_classes():
    assert _parsed([LATENCIES, COUNTS], 500) == {
        OCT1: DayStats(OCT1, 4, 3, 1, 75.0, 0.5, 0.4, 0.9),
        OCT2: DayStats(OCT2, 2, 2, 0, 100.0, 1.0, 1.0, 1.5),
    }
    assert _parsed([LATENCIES, COUNTS], 400)[OCT1].failed_requests == 2


def test_a_threshold_inside_a_class_adds_the_partial_count():
    partial = [{"name": "requests", "columns": ["time", "n"], "values": [[OCT1_S, 1]]}]
    days = _parsed([LATENCIES, COUNTS, partial], 450)
    # the 5xx and the one 4xx at or above 450
    assert days[OCT1] == DayStats(OCT1, 4, 2, 2, 50.0, 0.5, 0.4, 0.9)
    assert days[OCT2].failed_requests == 0  # no partial row: none of its requests fail


def test_no_series_means_no_days():
    assert _parsed([[], []], 500) == {}
    assert stats_query("c", OCT1, OCT2, failure_status=450).answer([]) == {}


def test_a_day_with_latencies_but_no_counts_is_no_day():
    assert list(_parsed([LATENCIES, _series({"2xx": [[OCT2_S, 2]]})], 500)) == [OCT2]


# -- customers_query -----------------------------------------------------------------------


def test_customers_query_counts_the_days_asked_and_pages_by_series():
    query = customers_query(None, OCT1, OCT2, limit=10, offset=20)
    assert query.statements == (
        f"SELECT count(latency) AS total FROM requests WHERE {WHOLE_OCT1_TO_OCT2}"
        " GROUP BY customer_id SLIMIT 10 SOFFSET 20",
    )
    scoped = customers_query("acme-corp.eu", OCT1, OCT2, limit=5, offset=0).text
    assert f"WHERE customer_id = 'acme-corp.eu' AND {WHOLE_OCT1_TO_OCT2} GROUP BY" in scoped
    assert scoped.endswith("SLIMIT 5 SOFFSET 0")


def test_customer_totals_in_id_order():
    series = [
        {"name": "requests", "tags": {"customer_id": "b"}, "columns": ["time", "total"],
         "values": [[0, 7]]},
        {"name": "requests", "tags": {"customer_id": "a"}, "columns": ["time", "total"],
         "values": [[0, 3]]},
        {"name": "requests", "tags": {"customer_id": "c"}, "columns": ["time", "total"]},
    ]  # fmt: skip
    query = customers_query(None, OCT1, OCT2, limit=10, offset=0)
    assert query.parse([series]) == [("a", 3), ("b", 7)]
    assert query.parse([[]]) == []
    assert query.answer([]) == []
