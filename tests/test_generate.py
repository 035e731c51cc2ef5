from datetime import date, datetime, timezone

import pytest
from typer.testing import CliRunner

from logpipe.cli import app
from logpipe.generate import GenerateOptions, run
from logpipe.process.formats import LineFormat
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


def test_same_seed_and_start_give_byte_identical_output_whatever_the_clock(tmp_path):
    options = dict(total=3000, rate=0, seed=5, start=date(2026, 3, 1), backfill_days=2)
    first, _, _ = _generate(tmp_path, "a.log", **options)
    clock = FakeClock(NOW + 12345.6)  # another day, another time
    second = tmp_path / "b.log"
    run(second, GenerateOptions(**options), clock=clock, sleep=clock.sleep)
    assert first.read_bytes() == second.read_bytes()
    stamps = [parse_text_line(line).epoch_seconds for line in first.read_text().splitlines()]
    start = datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp()
    assert start <= min(stamps) and max(stamps) < start + 2 * 86400


def test_20000_lines_per_second_for_200000_lines_take_10_seconds(tmp_path):
    _, written, clock = _generate(tmp_path, total=200_000, rate=20_000, seed=1)
    assert written == 200_000
    assert clock.now - NOW == pytest.approx(10.0, abs=0.001)  # the last line is due at 9.99995


def test_batch_size_and_interval_write_whole_batches_on_time(tmp_path):
    times: list[tuple[float, int]] = []
    clock = FakeClock(NOW)
    options = GenerateOptions(total=15, rate=5 / 2, batch_size=5, seed=1)
    run(tmp_path / "x.log", options, clock=clock, sleep=clock.sleep,
        on_batch=lambda written: times.append((round(clock.now - NOW, 2), written)))  # fmt: skip
    assert times == [(0.0, 5), (2.0, 10), (4.0, 15)]


@pytest.mark.parametrize("kind", ["json", "logfmt"])
def test_other_formats_are_what_process_reads(tmp_path, kind):
    path, _, _ = _generate(tmp_path, total=300, rate=0, seed=2, format=kind)
    parse = LineFormat(kind).parser()
    requests = [parse(line) for line in path.read_text().splitlines()]
    assert len(requests) == 300 and all(r.epoch_seconds == int(NOW) for r in requests)


def test_error_rates_shape_the_statuses(tmp_path):
    path, _, _ = _generate(
        tmp_path, total=4000, rate=0, seed=3, client_error_rate=0.2, server_error_rate=0.3
    )
    statuses = [parse_text_line(line).status for line in path.read_text().splitlines()]
    assert 0.27 < sum(s >= 500 for s in statuses) / 4000 < 0.33
    assert 0.17 < sum(400 <= s < 500 for s in statuses) / 4000 < 0.23


def test_rotate_bytes_rotates_like_logrotate_and_loses_no_line(tmp_path):
    path, _, _ = _generate(tmp_path, total=2000, rate=0, seed=4, rotate_bytes=25_000)
    rotated = sorted(tmp_path.glob("out.log.*"))
    assert [p.name for p in rotated] == [f"out.log.{n}" for n in range(1, 5)]
    assert all(25_000 <= p.stat().st_size < 25_200 for p in rotated)
    files = [path, *rotated]
    assert sum(len(p.read_text().splitlines()) for p in files) == 2000
    # the newest rotated file ends where the current one starts
    last_rotated = rotated[0].read_text().splitlines()[-1]
    assert (
        parse_text_line(last_rotated).epoch_seconds
        <= parse_text_line(path.read_text().splitlines()[0]).epoch_seconds
    )


def test_rotate_bytes_keeps_five_files(tmp_path):
    _generate(tmp_path, total=3000, rate=0, seed=4, rotate_bytes=10_000)
    assert sorted(p.name for p in tmp_path.glob("out.log.*")) == [
        f"out.log.{n}" for n in range(1, 6)
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "5"], "go together"),
        (["--format", "xml"], "is not one of"),
        (["--client-error-rate", "0.7", "--server-error-rate", "0.5"], "more than 1"),
        (["--rate", "5", "--batch-size", "5", "--interval", "1"], "not both"),
        (["--total", "5", "--max-lines", "6"], "different"),
    ],
)
def test_clashing_flags_are_one_clear_line(tmp_path, flags, message):
    result = CliRunner().invoke(app, ["generate", "--output", str(tmp_path / "x"), *flags])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
