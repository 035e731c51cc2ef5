from datetime import datetime, timezone

from logpipe.generate import GenerateOptions, run
from logpipe.process.parse import parse_text_line

NOW = datetime(2026, 10, 8, 12, 0, tzinfo=timezone.utc).timestamp()


class FakeClock:
    """Time moves only when the generator sleeps."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _generate(tmp_path, name="out.log", **options):
    clock = FakeClock(NOW)
    path = tmp_path / name
    written = run(path, GenerateOptions(**options), clock=clock, sleep=clock.sleep)
    return path, written, clock


def test_every_line_is_valid_seed_format(tmp_path):
    path, written, _ = _generate(tmp_path, total=2000, rate=0, seed=3, customers=5)
    lines = path.read_text().splitlines()
    assert written == len(lines) == 2000
    requests = [parse_text_line(line) for line in lines]
    assert {r.customer_id for r in requests} == {f"cust_{i}" for i in range(1, 6)}
    assert all(r.epoch_seconds == int(NOW) for r in requests)
    assert any(r.status >= 500 for r in requests) and any(r.status < 300 for r in requests)


def test_same_seed_same_lines(tmp_path):
    first, _, _ = _generate(tmp_path, "a.log", total=500, rate=0, seed=7, backfill_days=3)
    second, _, _ = _generate(tmp_path, "b.log", total=500, rate=0, seed=7, backfill_days=3)
    assert first.read_bytes() == second.read_bytes()


def test_backfill_spreads_ordered_timestamps_over_the_window(tmp_path):
    path, _, _ = _generate(tmp_path, total=7000, rate=0, seed=1, backfill_days=7)
    stamps = [parse_text_line(line).epoch_seconds for line in path.read_text().splitlines()]
    assert stamps == sorted(stamps)
    assert NOW - 7 * 86400 <= stamps[0] < NOW - 6.9 * 86400
    assert NOW - 0.1 * 86400 < stamps[-1] <= NOW
    days = {datetime.fromtimestamp(s, timezone.utc).date() for s in stamps}
    assert len(days) == 8  # a 7-day window that does not start at midnight touches 8 days


def test_rate_paces_lines_over_time(tmp_path):
    _, written, clock = _generate(tmp_path, total=50, rate=5, seed=1)
    assert written == 50
    # line k is due k/5 s after the start: the 50th (k=49) at 9.8 s
    assert abs((clock.now - NOW) - 9.8) < 0.01


def test_appends_to_an_existing_file(tmp_path):
    path = tmp_path / "out.log"
    path.write_text("existing\n")
    _generate(tmp_path, total=3, rate=0)
    assert path.read_text().startswith("existing\n") and len(path.read_text().splitlines()) == 4
