"""Rotation, truncation, file identity and timestamp collisions, end to end: the real CLI
(`python -m logpipe process` as a child process) against a real influxd. Every case checks
the exact per-customer daily count, mean, median and p99 that InfluxDB holds against values
computed independently (tests/reference.py) from the lines the test actually wrote, so a
line stored twice, lost, or cut short (`15.25` stored as `15` or `1`) shows."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest

from logpipe.config import Settings
from logpipe.influx import InfluxClient
from tests.conftest import (
    count_points,
    logpipe_env,
    run_process,
    start_process,
    stop_process,
    wait_until,
)
from tests.reference import daily_stats_of

ROTATE_WAIT = "1"
"""--rotate-wait for the tests that follow files: a renamed-away file is done 1 s after its
last write."""
SETTLE = 2.5
"""Seconds to wait, once everything is stored, for anything that should not come (a rotate
wait and two listings of the inputs)."""
DAYS = ("2026-10-06", "2026-10-07")
CUSTOMERS = ("cust_1", "cust_2", "cust_3")
STATS = (
    "SELECT count(latency), mean(latency), median(latency), percentile(latency, 99)"
    " FROM requests WHERE time >= '2026-10-01' AND time < '2026-11-01'"
    " GROUP BY customer_id, time(1d)"
)
LONG_LINE_REASON = "line longer than 64 KiB"
LATENCIES = [f"{1 + (i * 7919) % 10007 / 1000:.3f}" for i in range(1000)]
"""Latencies that differ from line to line in every digit."""

# -- lines -----------------------------------------------------------------------------------


def request(
    i: int,
    *,
    customer: str | None = None,
    status: int | None = None,
    latency: str | None = None,
    day: str | None = None,
) -> str:
    """Request number `i` in the seed format, unique to `i` (its path), with a latency that
    differs from line to line in every digit (so a cut-short value changes the statistics)."""
    clock = f"{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}"
    return " ".join(
        [
            day or DAYS[i % len(DAYS)],
            clock,
            customer or CUSTOMERS[i % len(CUSTOMERS)],
            f"/api/v1/r{i}",
            str(status or (200, 201, 404, 503)[i % 4]),
            latency or LATENCIES[i % len(LATENCIES)],
        ]
    )


def requests(start: int, count: int) -> list[str]:
    return [request(i) for i in range(start, start + count)]


def text(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def append(path: Path, data: bytes | list[str]) -> None:
    with path.open("ab") as file:
        file.write(data if isinstance(data, bytes) else text(data))


# -- what InfluxDB holds ----------------------------------------------------------------------


Stats = dict[tuple[str, str], tuple[float, ...]]


def stored_stats(settings: Settings) -> Stats:
    """{(customer, day): (count, mean, median, p99)} as InfluxDB computes them."""
    with InfluxClient(settings) as client:
        (series,) = client.query(STATS)
    stats: Stats = {}
    for one in series:
        for epoch, count, mean, median, p99 in one["values"]:
            if count:
                day = datetime.fromtimestamp(epoch, timezone.utc).date().isoformat()
                stats[one["tags"]["customer_id"], day] = (count, mean, median, p99)
    return stats


def expected_stats(lines: list[str]) -> Stats:
    """The same, computed from seed-format lines by tests/reference.py."""
    return {
        (customer, day): (
            s["total_requests"],
            s["average_latency"],
            s["median_latency"],
            s["p99_latency"],
        )
        for customer, days in daily_stats_of(lines).items()
        if customer != "*"
        for day, s in days.items()
    }


def assert_stored_exactly(settings: Settings, lines: list[str]) -> None:
    """InfluxDB holds every one of `lines` once and nothing else, values exact."""
    stored, expected = stored_stats(settings), expected_stats(lines)
    assert count_points(settings) == len(lines)
    assert sorted(stored) == sorted(expected)
    for key, values in expected.items():
        assert stored[key] == pytest.approx(values, rel=1e-9), key


def dead_letters(settings: Settings) -> list[dict]:
    path = settings.dead_letter_path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- the processor ----------------------------------------------------------------------------


def wait_stored(
    settings: Settings, count: int, process: subprocess.Popen[str] | None = None
) -> None:
    """Until InfluxDB holds `count` requests; fails at once if the processor has exited."""

    def done() -> bool:
        if process is not None and process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"the processor exited ({process.returncode}):\n{output}")
        return count_points(settings) >= count

    wait_until(done, timeout=30, what=f"{count} stored requests")


@contextmanager
def following(settings: Settings, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`logpipe process ARGS --rotate-wait 1` following its inputs; Ctrl-C at the end."""
    process = start_process(settings, *args, "--rotate-wait", ROTATE_WAIT)
    try:
        yield process
    finally:
        if process.poll() is None:
            stop_process(process)


def run_once(settings: Settings, *args: str) -> str:
    return run_process(settings, *args, "--once", timeout=60)


def summary(output: str) -> str:
    """The processor's last words: `read N lines: stored N, rejected N …`."""
    return [line for line in output.splitlines() if line.startswith("read ")][-1]


# -- logrotate `create`: renamed under a writer ------------------------------------------------


def test_create_rotation_while_the_application_still_writes_to_its_old_descriptor(
    settings, tmp_path
):
    log = tmp_path / "api.log"
    written = requests(0, 50)
    app = log.open("ab")  # the application's descriptor, kept across the rename

    def say(data: bytes) -> None:
        app.write(data)
        app.flush()

    try:
        say(text(written))
        with following(settings, "--input", str(log)) as process:
            wait_stored(settings, 50, process)
            half = request(1000, customer="cust_1", latency="15.25")
            say(half[:-2].encode())  # "… cust_1 /api/v1/r1000 200 15." at the rename
            time.sleep(0.3)  # the processor has seen the half line
            log.rename(tmp_path / "api.log.1")
            log.touch()  # logrotate's `create`
            say(b"25\n")
            written.append(half)
            for start in (100, 110, 120):  # the application writes on, under a second apart
                say(text(requests(start, 10)))
                written += requests(start, 10)
                time.sleep(0.3)
            app.close()  # SIGHUP: the application reopens its log
            app = log.open("ab")
            say(text(requests(200, 30)))
            written += requests(200, 30)
            wait_stored(settings, len(written), process)
            time.sleep(SETTLE)
            assert_stored_exactly(settings, written)
    finally:
        app.close()
    assert dead_letters(settings) == []


# -- several rotations while stopped -----------------------------------------------------------


def _rotate(log: Path, new_lines: list[str]) -> None:
    """logrotate `create` with `rotate N`: shift api.log.K to api.log.K+1, api.log to
    api.log.1, and a new api.log (with `new_lines` written to it)."""
    rotated = sorted(
        (p for p in log.parent.glob(f"{log.name}.*") if p.name[len(log.name) + 1 :].isdigit()),
        key=lambda p: -int(p.name[len(log.name) + 1 :]),
    )
    for path in rotated:
        path.rename(log.with_name(f"{log.name}.{int(path.name[len(log.name) + 1 :]) + 1}"))
    log.rename(log.with_name(f"{log.name}.1"))
    log.write_bytes(text(new_lines))


def test_two_rotations_while_stopped_are_all_read_after_a_restart(settings, tmp_path):
    log = tmp_path / "api.log"
    written = requests(0, 40)
    log.write_bytes(text(written))
    with following(settings, "--input", str(log)) as process:
        wait_stored(settings, 40, process)
    append(log, requests(40, 15))  # written after the stop: never read before the rotations
    _rotate(log, requests(100, 30))  # api.log -> api.log.1
    _rotate(log, requests(200, 20))  # api.log.1 -> api.log.2, api.log -> api.log.1
    written += requests(40, 15) + requests(100, 30) + requests(200, 20)
    assert sorted(p.name for p in tmp_path.glob("api.log*")) == [
        "api.log",
        "api.log.1",
        "api.log.2",
    ]
    with following(settings, "--input", str(log)) as process:
        wait_stored(settings, len(written), process)
        time.sleep(SETTLE)
        assert_stored_exactly(settings, written)
    assert dead_letters(settings) == []


def assert_next_run_reads(settings, log: Path, written: list[str], lines: int) -> None:
    """A `--once` run reads `lines` new lines, and then exactly `written` is stored."""
    output = run_once(settings, "--input", str(log))
    assert_stored_exactly(settings, written)
    assert dead_letters(settings) == []
    assert summary(output).startswith(f"read {lines} lines"), output


def test_two_rotations_while_stopped_with_the_oldest_compressed(settings, tmp_path):
    log = tmp_path / "api.log"
    written = requests(0, 40)
    log.write_bytes(text(written))
    run_once(settings, "--input", str(log))
    append(log, requests(40, 25))  # part of the file that becomes api.log.2.gz, unread
    _rotate(log, requests(100, 30))
    _rotate(log, requests(200, 20))
    oldest = tmp_path / "api.log.2"
    with gzip.open(tmp_path / "api.log.2.gz", "wb") as compressed:
        compressed.write(oldest.read_bytes())
    oldest.unlink()
    written += requests(40, 25) + requests(100, 30) + requests(200, 20)
    assert_next_run_reads(settings, log, written, 25 + 30 + 20)


# -- unterminated lines -------------------------------------------------------------------------


def test_once_leaves_a_line_still_being_written_for_the_next_run(settings, tmp_path):
    log = tmp_path / "api.log"
    written = requests(0, 20)
    cut = request(500, customer="cust_2", latency="15.25")
    log.write_bytes(text(written) + cut[:-2].encode())  # "… 15." and no newline yet
    output = run_once(settings, "--input", str(log))
    assert_stored_exactly(settings, written)
    assert dead_letters(settings) == []
    assert "rejected 0" in summary(output)
    append(log, b"25\n" + text(requests(30, 5)))
    written += [cut, *requests(30, 5)]
    assert_next_run_reads(settings, log, written, 6)


def test_a_restart_inside_an_over_long_line_skips_it_to_its_end(settings, tmp_path):
    log = tmp_path / "api.log"
    written = requests(0, 10)
    log.write_bytes(text(written))
    with following(settings, "--input", str(log)) as process:
        wait_stored(settings, 10, process)
        append(log, b"x" * (200 * 1024))  # no newline yet
        time.sleep(1.5)  # snapshots (every 0.5 s) taken while inside the long line
    # the long line ends with what looks like a valid request, then valid lines follow
    append(log, b"2026-10-06 09:42:36 cust_evil /x 500 9.9\n" + text(requests(20, 10)))
    written += requests(20, 10)
    with following(settings, "--input", str(log)) as process:
        wait_stored(settings, len(written), process)
        time.sleep(SETTLE)
        assert_stored_exactly(settings, written)
    entries = dead_letters(settings)
    assert [entry["reason"] for entry in entries] == [LONG_LINE_REASON], entries
    assert entries[0]["offset"] == len(text(requests(0, 10)))
    assert entries[0]["raw"].startswith("xxxx")


# -- copytruncate while stopped ------------------------------------------------------------------


def test_copytruncate_while_stopped_reads_the_rest_from_the_copy(settings, tmp_path):
    log = tmp_path / "api.log"
    written = requests(0, 30)
    log.write_bytes(text(written))
    run_once(settings, "--input", str(log))
    append(log, requests(30, 20))  # not read before the copy
    shutil.copy(log, tmp_path / "api.log.1")  # logrotate's copytruncate
    with log.open("r+b") as file:
        file.truncate(0)
    append(log, requests(100, 25))  # the application writes on, into the truncated file
    written += requests(30, 20) + requests(100, 25)
    assert_next_run_reads(settings, log, written, 20 + 25)


def test_truncated_and_regrown_past_the_old_offset_is_read_from_its_start(settings, tmp_path):
    log = tmp_path / "api.log"
    old = requests(0, 20)
    log.write_bytes(text(old))
    run_once(settings, "--input", str(log))
    new = requests(100, 60)  # longer than the old content: reads at the old offset would work
    with log.open("r+b") as file:
        file.truncate(0)
    append(log, new)
    assert log.stat().st_size > len(text(old))
    assert_next_run_reads(settings, log, old + new, len(new))


# -- file identity --------------------------------------------------------------------------------


def test_a_file_is_one_file_whatever_names_it_and_whatever_its_inode(settings, tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    real = mount / "real.log"
    link = mount / "link.log"
    written = requests(0, 30)
    real.write_bytes(text(written))
    link.symlink_to(real)
    output = run_once(settings, "--input", str(real), "--input", str(link))
    assert_stored_exactly(settings, written)
    assert summary(output).startswith("read 30 lines"), output

    # a remount: the same bytes under the same name, another inode (and device, elsewhere)
    inode = real.stat().st_ino
    copy = mount / "copy.tmp"
    copy.write_bytes(real.read_bytes())
    real.unlink()
    copy.rename(real)
    assert real.stat().st_ino != inode
    output = run_once(settings, "--input", str(real), "--input", str(link))
    assert_stored_exactly(settings, written)
    assert summary(output).startswith("read 0 lines"), output

    # mounted again under another directory name: still the file read to its end
    moved = mount.rename(tmp_path / "mnt2")
    output = run_once(settings, "--input", str(moved / "real.log"))
    assert_stored_exactly(settings, written)
    assert summary(output).startswith("read 0 lines"), output
    assert dead_letters(settings) == []


# -- timestamp collisions ------------------------------------------------------------------------


def test_json_lines_with_the_same_microsecond_and_customer_are_all_stored(settings, tmp_path):
    stamp = 1791280956.123456  # 2026-10-06 10:02:36.123456 UTC
    latencies = LATENCIES[:300]
    log = tmp_path / "api.jsonl"
    log.write_text(
        "".join(
            json.dumps(
                {
                    "timestamp": stamp,
                    "customer_id": "cust_1",
                    "path": "/x",
                    "status": 200,
                    "latency": float(latency),
                }
            )
            + "\n"
            for latency in latencies
        )
    )
    output = run_once(settings, "--input", str(log), "--format", "json")
    as_seed = [f"2026-10-06 10:02:36 cust_1 /x 200 {latency}" for latency in latencies]
    assert_stored_exactly(settings, as_seed)
    assert "rejected 0" in summary(output), output


def test_iso_timestamps_with_the_same_nanosecond_are_all_stored(settings, tmp_path):
    latencies = LATENCIES[:300]
    log = tmp_path / "api.log"
    log.write_text(
        "".join(f"2026-10-06T09:42:36.123456789Z cust_1 /x 200 {lat}\n" for lat in latencies)
    )
    output = run_once(settings, "--input", str(log))
    assert_stored_exactly(settings, [f"2026-10-06 09:42:36 cust_1 /x 200 {x}" for x in latencies])
    assert "rejected 0" in summary(output), output


def test_two_files_identical_but_for_their_first_line_are_both_stored(settings, tmp_path):
    # one customer, one second: lines of one file differ only in offset, and line k of one
    # file is byte for byte line k of the other, at the same offset
    body = [f"2026-10-06 09:42:36 cust_1 /x 200 {latency}" for latency in LATENCIES[1:200]]
    head_a = "2026-10-06 09:42:35 cust_1 /x 200 1.111"
    head_b = "2026-10-06 09:42:35 cust_1 /x 200 2.222"
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(text([head_a, *body]))
    second.write_bytes(text([head_b, *body]))
    output = run_once(settings, "--input", str(first), "--input", str(second))
    assert_stored_exactly(settings, [head_a, *body, head_b, *body])
    assert "rejected 0" in summary(output), output


# -- globs and standard input ---------------------------------------------------------------------


def test_a_glob_is_watched_while_running_and_excludes_are_not_read(settings, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    written = requests(0, 20)
    (logs / "a.log").write_bytes(text(written))
    with following(
        settings, "--input", str(logs / "*.log"), "--exclude", str(logs / "debug-*.log")
    ) as process:
        wait_stored(settings, 20, process)
        (logs / "debug-a.log").write_bytes(text(requests(500, 10)))  # excluded
        (logs / "b.log").write_bytes(text(requests(100, 15)))  # created while running
        written += requests(100, 15)
        wait_stored(settings, len(written), process)
        time.sleep(SETTLE)  # the excluded file has been listed twice meanwhile
        assert_stored_exactly(settings, written)


def test_standard_input_is_read_to_its_end(settings, tmp_path):
    written = requests(0, 500)
    process = subprocess.Popen(
        [sys.executable, "-m", "logpipe", "process", "--input", "-", "--once"],
        env={**os.environ, **logpipe_env(settings)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = process.communicate(text(written), timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert_stored_exactly(settings, written)


# -- Debian's logrotate ---------------------------------------------------------------------------


class _Application(threading.Thread):
    """Appends requests to a log as an application does, each line in two writes (so a
    rotation can fall inside a line), and reopens the log when asked (its SIGHUP)."""

    def __init__(self, log: Path, start: int) -> None:
        super().__init__(daemon=True)
        self.log = log
        self.lock = threading.Lock()  # held by the test to pause writes (copytruncate)
        self.written: list[str] = []
        self._next = start
        self._reopen = threading.Event()
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            file = self.log.open("ab")
            try:
                while not self._halt.is_set():
                    with self.lock:
                        if self._reopen.is_set():
                            file.close()
                            file = self.log.open("ab")
                            self._reopen.clear()
                        line = request(self._next)
                        file.write(line[:-3].encode())
                        file.flush()
                        file.write(f"{line[-3:]}\n".encode())
                        file.flush()
                        self.written.append(line)
                        self._next += 1
                    time.sleep(0.003)
            finally:
                file.close()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def reopen(self) -> None:
        self._reopen.set()

    def stop(self) -> list[str]:
        self._halt.set()
        self.join(10)
        assert self.error is None, self.error
        return self.written


def _logrotate(tmp_path: Path, log: Path, options: str) -> list[str]:
    logrotate = shutil.which("logrotate")
    if logrotate is None:
        pytest.fail("these tests need Debian's logrotate: apt-get install -y logrotate")
    config = tmp_path / "logrotate.conf"
    config.write_text(f"{log} {{\n{options}\n}}\n")
    config.chmod(0o644)
    return [logrotate, "-f", "-s", str(tmp_path / "logrotate.state"), str(config)]


def _run_logrotate(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def _rotated_under_a_writer(
    settings: Settings,
    tmp_path: Path,
    options: str,
    rotate: Callable[[_Application, list[str]], None],
) -> None:
    """Five rotations by Debian's logrotate (`options`, `rotate 3`, `compress`,
    `delaycompress`) while an application writes and the processor follows: every line is
    stored once with exact values, nothing is dead-lettered."""
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    log = logs / "api.log"
    command = _logrotate(
        tmp_path, log, f"    {options}\n    rotate 3\n    compress\n    delaycompress"
    )
    app = _Application(log, start=0)
    app.start()
    try:
        with following(settings, "--input", str(log)) as process:
            for _ in range(5):
                time.sleep(0.7)
                rotate(app, command)
            time.sleep(0.5)
            written = app.stop()
            wait_stored(settings, len(written), process)
            time.sleep(SETTLE)
            assert_stored_exactly(settings, written)
    finally:
        app.stop()
    assert sorted(p.name for p in logs.iterdir()) == [
        "api.log",
        "api.log.1",
        "api.log.2.gz",
        "api.log.3.gz",
    ]
    assert dead_letters(settings) == []


def test_debian_logrotate_create_compress_delaycompress(settings, tmp_path):
    def rotate(app: _Application, command: list[str]) -> None:
        _run_logrotate(command)  # the application writes on to its old descriptor
        time.sleep(0.1)
        app.reopen()

    _rotated_under_a_writer(settings, tmp_path, "create 0644", rotate)


def test_debian_logrotate_copytruncate_compress_delaycompress(settings, tmp_path):
    def rotate(app: _Application, command: list[str]) -> None:
        # copytruncate loses what is written between the copy and the truncation: the
        # application pauses meanwhile, so that every line written is in a file
        with app.lock:
            _run_logrotate(command)

    _rotated_under_a_writer(settings, tmp_path, "copytruncate", rotate)


# -- what the writer and the dead-letter file make of it ---------------------------------------


def test_a_batch_over_influxdb_s_body_limit_is_stored_with_exact_values(settings, tmp_path):
    """Case 8: 5,000 lines with 6 KB URLs, one batch of them 30 MB (InfluxDB refuses bodies
    over 25 MB with 413); no snapshot or flush cuts the batch short here."""
    slow = settings.model_copy(update={"snapshot_interval": 60.0})
    query = "?q=" + "a" * 6000
    written = [
        line.replace(f"/api/v1/r{i} ", f"/api/v1/r{i}{query} ")
        for i, line in enumerate(requests(0, 5000))
    ]
    log = tmp_path / "huge.log"
    log.write_bytes(text(written))
    assert log.stat().st_size > 30_000_000
    output = run_process(slow, "--input", str(log), "--once", "--flush-interval", "60")
    assert summary(output) == "read 5000 lines: stored 5000, rejected 0", output
    assert_stored_exactly(settings, written)


def test_dead_letters_are_written_once_across_kill_9_and_replay(settings, tmp_path):
    """Case 9: every tenth line is invalid; the processor is killed before its first
    snapshot, so every line is read again; each invalid line is dead-lettered once."""
    lines = []
    for i in range(150_000):
        lines.append(request(i, status=600) if i % 10 == 3 else request(i))
    written = [line for i, line in enumerate(lines) if i % 10 != 3]
    log = tmp_path / "api.log"
    log.write_bytes(text(lines))
    no_snapshot = settings.model_copy(update={"snapshot_interval": 600.0})
    process = start_process(no_snapshot, "--input", str(log))
    try:
        wait_until(
            lambda: count_points(settings) >= 40_000 and dead_letters(settings),
            what="40,000 points and the first dead letters",
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert count_points(settings) < len(written)
    run_once(settings, "--input", str(log))
    assert_stored_exactly(settings, written)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    offsets = [entry["offset"] for entry in dead_letters(settings)]
    assert sorted(offsets) == starts[3 : len(lines) : 10]  # each once, none missing


def test_a_time_influxdb_cannot_store_and_line_breaks_in_a_dead_letter(settings, tmp_path):
    """Case 9: a line of 2263 is dead-lettered when parsed, not refused by InfluxDB and
    bisected; a rejected line holding U+2028, U+2029 and U+0085 stays one entry a line."""
    written = requests(0, 30)
    future = request(30, day="2263-01-01")
    breaks = request(31, status=600).replace("/api/v1/r31", "/a\u2028b\u2029c\u0085d")
    log = tmp_path / "api.log"
    log.write_bytes(text([*written[:10], future, *written[10:20], breaks, *written[20:]]))
    output = run_once(settings, "--input", str(log))
    assert summary(output).startswith("read 32 lines: stored 30, rejected 2"), output
    assert_stored_exactly(settings, written)
    raw = settings.dead_letter_path.read_text(encoding="utf-8")
    assert len(raw.splitlines()) == 2  # str.splitlines breaks on all three
    first, second = dead_letters(settings)
    assert "outside what InfluxDB stores" in first["reason"] and first["raw"] == future
    assert second["raw"] == breaks
