import pytest

from logpipe.schema import (
    escape_field_string,
    escape_tag,
    influxql_string,
    is_valid_customer_id,
    point_line,
    point_timestamp,
    source_salt,
)


@pytest.mark.parametrize(
    "customer_id", ["cust_1", "Shop_42", "acme-corp.eu", "tenant:7", "x" * 128]
)
def test_valid_customer_ids(customer_id):
    assert is_valid_customer_id(customer_id)


@pytest.mark.parametrize(
    "customer_id", ["", "x" * 129, "a b", "a,b", "a'b", 'a"b', "a\\b", "ü", "a\nb", "a/b", "a=b"]
)
def test_invalid_customer_ids(customer_id):
    assert not is_valid_customer_id(customer_id)


def test_tag_escaping():
    assert escape_tag("a b,c=d\\e") == "a\\ b\\,c\\=d\\\\e"


def test_field_string_escaping():
    assert escape_field_string('say "hi" \\o/') == 'say \\"hi\\" \\\\o/'


def test_influxql_string_literal_cannot_be_broken_out_of():
    assert influxql_string("x' OR 1=1 --") == "'x\\' OR 1=1 --'"
    assert influxql_string("a\\") == "'a\\\\'"


def test_point_line_layout():
    line = point_line(
        customer_id="cust_1", status=503, latency=0.25, path='/a "b"', timestamp_ns=42
    )
    assert line == (
        "requests,customer_id=cust_1,status_class=5xx"
        ' status=503i,latency=0.25,path="/a \\"b\\"" 42'
    )


def test_timestamps_unique_within_a_second_and_stay_in_it():
    salt = source_salt("/var/log/api.log")
    stamps = {point_timestamp(100, salt=salt, offset=offset) for offset in range(0, 50_000, 50)}
    assert len(stamps) == 1000
    assert all(100 * 10**9 <= stamp < 101 * 10**9 for stamp in stamps)


def test_timestamps_differ_between_files_at_the_same_offset():
    a = point_timestamp(100, salt=source_salt("/logs/a.log"), offset=0)
    b = point_timestamp(100, salt=source_salt("/logs/b.log"), offset=0)
    assert a != b
