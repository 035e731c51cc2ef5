"""The fast text path against the careful one, on random chunks: the same points byte for
byte and in order, the same rejects (offsets and reasons) and the same days."""

from datetime import date

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from logpipe.process.parse import MAX_LINE_BYTES, Chunk, parse_chunk
from tests.fast_paths import FAST_PATHS


def mostly(valid, odd):
    """Valid three times in four: lines with every field valid must be common."""
    return st.one_of(valid, valid, valid, odd)


valid_dates = st.dates(date(1678, 1, 1), date(2261, 12, 31)).map(str)
dates = mostly(
    valid_dates,
    st.one_of(
        st.dates().map(str),  # 0001..9999: outside what InfluxDB stores too
        st.sampled_from(
            [
                "2026-02-30",
                "2026-13-01",
                "2026-1-06",
                "2026-10-6",
                "\uff12\uff10\uff12\uff16-10-06",
            ]
        ),
    ),
)
valid_clocks = st.times().map(lambda t: t.strftime("%H:%M:%S"))
clocks = mostly(
    valid_clocks,
    st.sampled_from(["24:00:00", "23:60:00", "23:59:60", "9:42:36", "09:42", "٠٩:42:36"]),
)
valid_customers = st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True)
customers = mostly(
    valid_customers,
    st.sampled_from(["cust$2", "a,b", "a=b", "ü", "c" * 129, "c\x00"]),
)
valid_paths = st.from_regex(r"/[a-z0-9/._-]{0,12}", fullmatch=True)
paths = mostly(
    valid_paths,
    st.one_of(
        st.text(st.characters(codec="ascii"), min_size=1, max_size=12),
        st.text(st.sampled_from('/ab"\\ =,\x00\t\x7f\x1cé'), min_size=1, max_size=12),
        st.just("/" + "p" * 2100),
    ),
)
valid_statuses = st.integers(100, 599).map(str)
statuses = mostly(
    valid_statuses,
    st.one_of(
        st.integers(0, 1000).map(str),
        st.sampled_from(["2O1", "+20", "099", "٢٠١", "201.0"]),
    ),
)
valid_latencies = st.one_of(
    st.decimals(min_value=0, max_value=100, places=3).map(str),  # 0.500, 7.000
    st.from_regex(r"[0-9]{1,10}(\.[0-9]{0,10})?", fullmatch=True),  # 1., 007, 1.00001
    # around 1e-4, below which repr writes an exponent (1e-05)
    st.from_regex(r"0\.0000?[0-9]{1,5}", fullmatch=True),
)
latencies = mostly(
    valid_latencies,
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(
            ["1.", ".5", "1e3", "nan", "-0", "-0.5", "1_0", "0.00001", "0." + "0" * 40]
        ),
    ),
)
seed_lines = st.builds(
    lambda *fields: " ".join(fields), dates, clocks, customers, paths, statuses, latencies
)
valid_seed_lines = st.builds(
    lambda *fields: " ".join(fields),
    valid_dates,
    valid_clocks,
    valid_customers,
    valid_paths,
    valid_statuses,
    valid_latencies,
)
"""Lines with every field valid: nine in ten of seed_lines have an odd field somewhere."""
lines = st.one_of(
    seed_lines,
    seed_lines,
    seed_lines.map(lambda line: line.replace(" ", "  ", 1)),
    seed_lines.map(lambda line: line + " extra"),
    st.sampled_from(["", "   ", "\r", "junk", "x" * (MAX_LINE_BYTES + 1)]),
    st.text(max_size=30),
)
endings = st.sampled_from(["\n", "\r\n"])


@FAST_PATHS
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.lists(st.tuples(lines, endings), max_size=25),
    last_newline=st.booleans(),
    offset=st.integers(0, 2**40),
    salt=st.integers(0, 2**32 - 1),
)
@example(
    body=[("2026-10-06 09:42:36 cust_2 /a\x00b 201 0.500", "\n")],
    last_newline=True,
    offset=0,
    salt=0,
)
# a line of a character str.strip takes for whitespace and bytes.strip does not: a reject
@example(body=[("\x1f", "\n")], last_newline=False, offset=0, salt=0)
def test_the_fast_text_path_is_the_careful_path(fast_path, body, last_newline, offset, salt):
    text = "".join(line + ending for line, ending in body)
    if not last_newline and text.endswith("\n"):
        text = text[:-1]
    chunk = Chunk("/logs/a.log", offset, text.encode("utf-8", "surrogatepass"), salt, "id")
    assert fast_path(chunk) == parse_chunk(chunk)


@FAST_PATHS
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.lists(valid_seed_lines, min_size=1, max_size=30),
    offset=st.integers(0, 2**40),
    salt=st.integers(0, 2**32 - 1),
)
def test_the_fast_text_path_is_the_careful_path_on_valid_lines(fast_path, body, offset, salt):
    chunk = Chunk("/logs/a.log", offset, "".join(f"{line}\n" for line in body).encode(), salt)
    careful = parse_chunk(chunk)
    assert fast_path(chunk) == careful
    assert len(careful.points) == len(body)  # valid fields make a valid line
