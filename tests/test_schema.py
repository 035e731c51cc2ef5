import pytest
from hypothesis import given
from hypothesis import strategies as st

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


@given(
    second=st.integers(-(10**9), 9 * 10**9),
    identity=st.text("0123456789abcdef", min_size=16, max_size=16),
    start=st.integers(0, 10**12),
    gaps=st.lists(st.integers(1, 10**6), max_size=50),
)
def test_a_file_s_lines_of_one_second_get_distinct_stamps_and_a_replay_the_same(
    second, identity, start, gaps
):
    """Distinct offsets less than 10**9 bytes apart never share a stamp, whatever the salt;
    the same (identity, offset) always gives the same one, inside its logged second."""
    salt = source_salt(identity)
    offsets = [start]
    for gap in gaps:
        offsets.append(offsets[-1] + gap)
    if offsets[-1] - offsets[0] >= 10**9:
        return
    stamps = [point_timestamp(second, salt=salt, offset=offset) for offset in offsets]
    assert len(set(stamps)) == len(offsets)
    assert all(second * 10**9 <= stamp < (second + 1) * 10**9 for stamp in stamps)
    assert stamps == [
        point_timestamp(second, salt=source_salt(identity), offset=o) for o in offsets
    ]
