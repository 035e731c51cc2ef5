"""The sink's writer: batching, retries and refusals, against httpx.MockTransport (retry logic
only; the integration tests use a real influxd)."""

from __future__ import annotations

import json

import httpx
import pytest

from logpipe.config import load_settings
from logpipe.errors import LogpipeError
from logpipe.process.counters import Counters
from logpipe.process.sink import MAX_BATCH_BYTES, DeadLetters, _Writer, backoff_delay


def _points(n: int, start: int = 0) -> list[str]:
    return [f"requests,customer_id=c{i} latency=0.1 {i}" for i in range(start, start + n)]


def _chunk(n: int, start: int = 0) -> tuple[list[str], set[tuple[str, int]]]:
    """What the sink partition queues: points and their (customer, day) pairs."""
    return _points(n, start), {(f"c{i}", 0) for i in range(start, start + n)}


class FakeInflux:
    """Answers /write from a script of statuses; records the bodies it was sent."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.bodies: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content.decode().split("\n"))
        return self.answers.pop(0) if self.answers else httpx.Response(204)


@pytest.fixture
def make_writer(tmp_path):
    writers = []

    def make(fake, *, batch_size: int = 3, sleeps: list | None = None, **options):
        """A started writer talking to `fake` (a function from request to response)."""
        settings = load_settings(
            influx_url="http://influx.test", batch_size=batch_size, state_dir=tmp_path
        )
        counters = Counters()
        dead = DeadLetters(tmp_path / "dead.jsonl")
        writer = _Writer(
            settings,
            counters,
            dead,
            transport=httpx.MockTransport(fake),
            sleep=(sleeps.append if sleeps is not None else lambda _: None),
            **options,
        )
        writer.start()
        writers.append((writer, dead))
        return writer, counters, dead

    yield make
    for writer, dead in writers:
        writer.stop()
        dead.close()


def test_points_are_cut_into_batches_and_flush_writes_the_rest(make_writer):
    fake = FakeInflux()
    writer, counters, _ = make_writer(fake)
    writer.put(_chunk(4))
    writer.put(_chunk(3, start=4))
    writer.flush()
    assert sorted(len(body) for body in fake.bodies) == [1, 3, 3]
    assert sorted(p for body in fake.bodies for p in body) == sorted(_points(7))
    assert counters.stored == 7


def test_unavailable_is_retried_honouring_retry_after(make_writer):
    fake = FakeInflux(
        httpx.Response(503, json={"error": "busy"}, headers={"Retry-After": "7"}),
        httpx.Response(429, json={"error": "slow down"}),
    )
    sleeps: list[float] = []
    writer, counters, _ = make_writer(fake, sleeps=sleeps)
    writer.put(_chunk(3))
    writer.flush()
    assert len(fake.bodies) == 3 and fake.bodies[0] == fake.bodies[2]
    assert sleeps[0] == 7 and 0 <= sleeps[1] <= 0.8  # then backoff with jitter
    assert (counters.write_retries, counters.stored) == (2, 3)


def test_a_refused_point_is_found_by_halving_and_dead_lettered(make_writer):
    bad = "requests,customer_id=c1 latency=0.1 1"

    def influx(request: httpx.Request) -> httpx.Response:
        if bad in request.content.decode():
            return httpx.Response(400, json={"error": "partial write: field type conflict"})
        return httpx.Response(204)

    writer, counters, dead = make_writer(influx, batch_size=8)
    writer.put(_chunk(8))
    writer.flush()
    dead.flush()
    (letter,) = [json.loads(line) for line in dead.path.read_text().splitlines()]
    assert letter["raw"] == bad and "field type conflict" in letter["reason"]
    assert (counters.stored, counters.rejected) == (7, 1)


def test_a_rejection_that_is_not_about_points_stops_the_pipeline(make_writer):
    fake = FakeInflux(httpx.Response(401, json={"error": "authorization failed"}))
    writer, _, _ = make_writer(fake)
    writer.put(_chunk(3))
    with pytest.raises(LogpipeError, match="authorization failed"):
        writer.flush()


def test_every_write_marks_the_days_of_its_points_afresh(make_writer):
    """Rollup marks travel in the body of every write (and every retry) that carries points
    of their days, each time with a new token: a build that read the old one stays stale."""
    fake = FakeInflux(httpx.Response(503, json={"error": "busy"}))
    tokens = iter(range(1, 100))
    writer, counters, _ = make_writer(fake, marks=True, token=lambda: next(tokens))
    day = 1_793_491_200
    writer.put((_points(4), {("c0", day), ("Shop 42", day)}))  # 2 batches of 3 and 1
    writer.flush()
    assert len(fake.bodies) == 3  # the first body was refused with 503 and sent again
    seen_tokens = set()
    for body in fake.bodies:
        marks = [line for line in body if line.startswith("requests_daily")]
        token = marks[0].split("dirty=")[1].split("i ")[0]
        assert marks == [
            f"requests_daily,customer_id=Shop\\ 42 dirty={token}i {day}000000000",
            f"requests_daily,customer_id=c0 dirty={token}i {day}000000000",
        ]
        assert body[len(marks) :] and not any(
            line.startswith("requests_daily") for line in body[2:]
        )
        seen_tokens.add(token)
    assert seen_tokens == {"1", "2", "3"}
    stored = [line for body in fake.bodies[1:] for line in body if line.startswith("requests,")]
    assert sorted(stored) == sorted(_points(4)) and counters.stored == 4


def test_a_batch_carries_the_marks_of_its_own_points_only(make_writer):
    """A backfill keeps the buffer busy for hours: marks must not pile up in it."""
    fake = FakeInflux()
    writer, _, _ = make_writer(fake, marks=True, token=lambda: 5)
    writer.put((_points(2), {("a", 0)}))
    writer.put((_points(4, start=2), {("b", 0)}))  # batches: 2 of a + 1 of b, then 3 of b
    writer.put((_points(1, start=6), {("c", 0)}))
    writer.flush()
    marked = sorted(
        (
            len([p for p in body if p.startswith("requests,")]),
            sorted(p.split(",")[1].split(" ")[0] for p in body if p.startswith("requests_daily")),
        )
        for body in fake.bodies
    )
    assert marked == [
        (1, ["customer_id=c"]),
        (3, ["customer_id=a", "customer_id=b"]),
        (3, ["customer_id=b"]),
    ]


def test_a_refused_mark_costs_no_point(make_writer, tmp_path):
    """A retention policy ending on a day refuses the mark at its 00:00, not the points."""

    def influx(request: httpx.Request) -> httpx.Response:
        if b"requests_daily" in request.content:
            return httpx.Response(400, json={"error": "partial write: beyond retention"})
        return httpx.Response(204)

    writer, counters, dead = make_writer(influx, marks=True)
    writer.put((_points(3), {("c0", 86400), ("c1", 0)}))
    writer.flush()
    dead.flush()
    assert (counters.stored, counters.rejected) == (3, 0)
    assert not dead.path.exists()
    # InfluxDB keeps the valid lines of a body refused in part, marks included: the rollup
    # follower is told of the days all the same
    assert counters.take_written_from() == 0


def test_every_write_with_marks_tells_the_follower_its_first_day(make_writer):
    fake = FakeInflux(httpx.Response(503))
    writer, counters, _ = make_writer(fake, marks=True, batch_size=2)
    writer.put((_points(2), {("c0", 2 * 86400)}))
    writer.flush()
    assert counters.take_written_from() == 2 * 86400
    writer.put((_points(2), {("c0", 86400), ("c0", 3 * 86400)}))
    writer.flush()
    assert counters.take_written_from() == 86400
    assert counters.take_written_from() is None


def test_without_marks_only_points_are_written(make_writer):
    fake = FakeInflux()
    writer, _, _ = make_writer(fake)
    writer.put(_chunk(3))
    writer.flush()
    assert fake.bodies == [_points(3)]


def test_a_batch_is_cut_at_max_batch_bytes(make_writer):
    """400 points of 50 KB (20 MB) in one batch by count: sent as bodies of at most
    MAX_BATCH_BYTES, every point exactly once."""
    points = [f'requests,customer_id=c path="{i:05d}{"x" * 50_000}" {i}' for i in range(400)]
    fake = FakeInflux()
    writer, counters, _ = make_writer(fake, batch_size=400)
    writer.put((points[:150], set()))
    writer.put((points[150:], set()))
    writer.flush()
    sizes = [len("\n".join(body).encode()) for body in fake.bodies]
    assert len(sizes) == 3 and max(sizes) <= MAX_BATCH_BYTES
    assert sorted(p for body in fake.bodies for p in body) == points
    assert counters.stored == 400


def test_a_body_too_large_for_influxdb_is_halved_until_it_fits(make_writer):
    """A server whose max-body-size is below MAX_BATCH_BYTES answers 413: nothing is lost,
    nothing is dead-lettered."""
    stored: list[str] = []

    def influx(request: httpx.Request) -> httpx.Response:
        if len(request.content) > 1000:
            return httpx.Response(413, json={"error": "Request Entity Too Large"})
        stored.extend(request.content.decode().split("\n"))
        return httpx.Response(204)

    writer, counters, dead = make_writer(influx, batch_size=100)
    writer.put(_chunk(100))  # about 3.8 KB
    writer.flush()
    dead.flush()
    assert sorted(stored) == sorted(_points(100))
    assert (counters.stored, counters.rejected) == (100, 0)
    assert not dead.path.exists()


def test_a_point_too_large_for_influxdb_is_dead_lettered(make_writer):
    big = 'requests,customer_id=c3 path="' + "x" * 5000 + '" 3'
    points = [*_points(3), big, *_points(4, start=4)]
    stored: list[str] = []

    def influx(request: httpx.Request) -> httpx.Response:
        if big in request.content.decode():
            return httpx.Response(413, json={"error": "Request Entity Too Large"})
        stored.extend(p for p in request.content.decode().split("\n") if p.startswith("requests,"))
        return httpx.Response(204)

    writer, counters, dead = make_writer(influx, batch_size=8, marks=True, token=lambda: 1)
    writer.put((points, {("c0", 0)}))
    writer.flush()
    dead.flush()
    (letter,) = [json.loads(line) for line in dead.path.read_text().splitlines()]
    assert letter["raw"] == big
    assert letter["reason"] == (
        "refused by InfluxDB: InfluxDB write failed with 413: Request Entity Too Large"
    )
    assert (letter["file"], letter["offset"]) == ("", -1)
    assert sorted(stored) == sorted(_points(3) + _points(4, start=4))
    assert (counters.stored, counters.rejected) == (7, 1)


def test_backoff_grows_and_is_capped():
    for attempt in range(1, 12):
        assert 0 <= backoff_delay(attempt) <= min(10.0, 0.2 * 2**attempt)
