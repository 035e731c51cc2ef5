"""Nothing lost, nothing doubled: crashes, rotation, half lines, outages, refusals, clusters.
Every test runs the real processor against a real influxd."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import Counter

import pytest
from typer.testing import CliRunner

from logpipe.cli import app
from logpipe.errors import InfluxUnavailable
from logpipe.generate import GenerateOptions
from logpipe.generate import run as generate
from logpipe.influx import InfluxClient
from logpipe.influxd import LocalInfluxd, free_port, lock_data_dir
from logpipe.process.files import fingerprint
from logpipe.process.source import partition_of
from tests.conftest import count_points, run_process, start_process, stop_process, wait_until

runner = CliRunner()


def _log(tmp_path, name: str, lines: int, seed: int = 1):
    path = tmp_path / name
    generate(path, GenerateOptions(rate=0, total=lines, seed=seed, customers=5, backfill_days=3))
    return path


def _customers_in(paths) -> Counter:
    return Counter(line.split(" ")[2] for path in paths for line in path.read_text().splitlines())


def _customers_stored(settings) -> Counter:
    with InfluxClient(settings) as client:
        (series,) = client.query("SELECT count(latency) FROM requests GROUP BY customer_id")
    return Counter({s["tags"]["customer_id"]: s["values"][0][1] for s in series})


def test_kill_9_at_any_moment_then_restart_stores_every_line_once(settings, tmp_path):
    total = 300_000
    log = _log(tmp_path, "api.log", total)
    # Each run is killed once it has stored points of its own, so mid-file: a fixed count
    # to wait for can be passed before the next run even starts (the parser is fast).
    for _ in range(3):
        before = count_points(settings)
        process = start_process(settings, "--input", str(log))
        wait_until(lambda b=before: count_points(settings) > b, what="points of this run")
        process.send_signal(signal.SIGKILL)
        process.communicate()
        assert count_points(settings) < total
    run_process(settings, "--input", str(log), "--once")
    assert count_points(settings) == total
    assert _customers_stored(settings) == _customers_in([log])


def test_rename_rotation_and_copytruncate_lose_and_double_nothing(settings, tmp_path):
    log = tmp_path / "api.log"
    first, second, third = (_log(tmp_path, f"part{i}", 2000, seed=i) for i in (1, 2, 3))
    log.write_bytes(first.read_bytes())
    process = start_process(settings, "--input", str(log))
    try:
        wait_until(lambda: count_points(settings) == 2000, what="the first file")
        log.rename(tmp_path / "api.log.1")  # logrotate's default: rename, then a new file
        log.write_bytes(second.read_bytes())
        wait_until(lambda: count_points(settings) == 4000, what="the rotated-in file")
        shutil.copy(log, tmp_path / "api.log.2")  # copytruncate
        with log.open("r+b") as f:
            f.truncate(0)
        time.sleep(0.5)
        with log.open("ab") as f:
            f.write(third.read_bytes())
        wait_until(lambda: count_points(settings) == 6000, what="the truncated file's new lines")
        time.sleep(1.5)  # nothing more arrives
        assert count_points(settings) == 6000
        assert _customers_stored(settings) == _customers_in([first, second, third])
    finally:
        stop_process(process)


def test_a_line_written_in_two_halves_is_stored_once_whole(settings, tmp_path):
    log = tmp_path / "api.log"
    log.write_text("2026-10-06 09:42:35 cust_1 /a 200 0.1\n")
    process = start_process(settings, "--input", str(log))
    try:
        wait_until(lambda: count_points(settings) == 1, what="the first line")
        with log.open("a") as f:
            f.write("2026-10-06 09:42:36 cust_1 /api/v1/or")
            f.flush()
            time.sleep(1.5)  # longer than the flush interval and a snapshot
            assert count_points(settings) == 1
            f.write("ders 503 0.75\n")
        wait_until(lambda: count_points(settings) == 2, what="the completed line")
        with InfluxClient(settings) as client:
            (series,) = client.query(
                "SELECT path, status, latency FROM requests WHERE status = 503"
            )
        assert series[0]["values"][0][1:] == ["/api/v1/orders", 503, 0.75]
    finally:
        output = stop_process(process)
    assert "rejected 0" in output


def test_a_private_influxd_started_twice_is_one_server(tmp_path):
    with LocalInfluxd(tmp_path / "influxd").start() as server:  # start(), then `with`
        first = server.pid
        assert server.start().pid == first
        assert server.version.startswith("1.")
    assert server.pid is None


def test_a_second_private_influxd_on_the_same_data_directory_is_refused(tmp_path):
    first = LocalInfluxd(tmp_path / "influxd").start()
    try:
        with pytest.raises(InfluxUnavailable, match="another influxd uses"):
            LocalInfluxd(tmp_path / "influxd").start()
        assert lock_data_dir(tmp_path / "influxd") is None  # influxd holds it, not us
        os.kill(first.pid, signal.SIGKILL)  # however it ends, the lock goes with it
        first.stop()
        lock = lock_data_dir(tmp_path / "influxd")
        assert lock is not None
        os.close(lock)
        with LocalInfluxd(tmp_path / "influxd") as second:
            assert second.version.startswith("1.")
    finally:
        first.stop()


def test_influxdb_stopped_mid_stream_then_back_loses_nothing(settings, tmp_path):
    server = LocalInfluxd(tmp_path / "influxd").start()
    own = settings.model_copy(update={"influx_url": server.url, "influx_timeout": 2.0})
    log = tmp_path / "api.log"
    log.touch()
    process = start_process(own, "--input", str(log))
    try:
        source = _log(tmp_path, "source.log", 20_000).read_text().splitlines(keepends=True)
        with log.open("a") as f:
            f.writelines(source[:10_000])
        wait_until(lambda: count_points(own) == 10_000, what="the first half")
        server.stop()
        with log.open("a") as f:  # written while InfluxDB is down
            f.writelines(source[10_000:])
        time.sleep(4)
        server.start()
        wait_until(lambda: count_points(own) == 20_000, timeout=90, what="the second half")
    finally:
        try:
            output = stop_process(process)
        finally:
            server.stop()  # even when the processor did not stop cleanly
    assert "unreachable" in output and "retry" in output


def test_points_influxdb_refuses_go_to_the_dead_letter_file(settings_env, tmp_path):
    # latency as a string in 2026-10-05's shard: float latencies there are refused (400)
    with InfluxClient(settings_env) as client:
        client.ensure_database()
        client.write(b'requests,customer_id=x latency="slow" 1791158400000000000')
    log = tmp_path / "api.log"
    log.write_text(
        "2026-10-05 10:00:00 cust_1 /a 200 0.1\n"  # refused: type conflict
        "2026-10-20 10:00:00 cust_1 /a 200 0.2\n"  # another shard: stored
        "2026-10-21 10:00:00 cust_2 /a 200 0.3\n"
    )
    result = runner.invoke(app, ["process", "--input", str(log), "--once"])
    assert result.exit_code == 0, result.output
    assert "read 3 lines: stored 2, rejected 1" in result.output
    (dead,) = [json.loads(line) for line in settings_env.dead_letter_path.read_text().splitlines()]
    assert "refused by InfluxDB" in dead["reason"] and "conflict" in dead["reason"]
    assert "customer_id=cust_1" in dead["raw"]


INVALID = [
    b"2026-10-06 09:42:36 cust_1 /x 201",  # too few fields
    b"2026-10-06 09:42:36 cust_1 /x 201 0.5 extra",  # too many
    b"2026-02-30 09:42:36 cust_1 /x 201 0.5",  # impossible date
    b"2026-10-06 09:61:36 cust_1 /x 201 0.5",  # impossible time
    b"2026-10-06 09:42:36 cust_1 /x 600 0.5",  # status out of range
    b"2026-10-06 09:42:36 cust_1 /x abc 0.5",  # status not a number
    b"2026-10-06 09:42:36 cust_1 /x 201 -1",  # negative latency
    b"2026-10-06 09:42:36 cust_1 /x 201 NaN",
    b"2026-10-06 09:42:36 cust_1 /x 201 inf",
    b"2026-10-06 09:42:36 cust_1 /x 201 quick",
    b"2026-10-06 09:42:36 cust/1 /x 201 0.5",  # customer id outside the character set
    b"2026-10-06 09:42:36 cust_1 /x 201 0.5 " + b"y" * 70_000,  # over 64 KiB
    b"2026-10-06 09:42:36 cust_\xff /x 201 0.5",  # invalid UTF-8
    b"2026-10-06 09:42:36 cust_1 /x\x00 201 0.5",  # NUL byte
]


def test_a_file_of_invalid_lines_rejects_each_with_a_reason_and_stores_the_valid(
    settings_env, tmp_path
):
    valid = [f"2026-10-06 09:42:{i:02d} cust_{i % 3} /ok 200 0.{i}".encode() for i in range(20)]
    assert len(INVALID) == 14
    lines = [line for pair in zip(valid, INVALID, strict=False) for line in pair] + valid[14:]
    log = tmp_path / "bad.log"
    log.write_bytes(b"\r\n".join(lines) + b"\r\n")  # Windows line endings are fine
    result = runner.invoke(app, ["process", "--input", str(log), "--once"])
    assert result.exit_code == 0, result.output
    assert count_points(settings_env) == 20
    dead = [json.loads(line) for line in settings_env.dead_letter_path.read_text().splitlines()]
    assert len(dead) == len(INVALID)
    offsets = {r["offset"] for r in dead}
    assert offsets == {log.read_bytes().index(line) for line in INVALID}
    assert all(r["reason"] and r["source"] == str(log) for r in dead)
    assert all(len(r["raw"]) <= 1024 for r in dead)


def _process_of(log) -> int:
    """Which of two cluster processes reads `log`."""
    with log.open("rb") as f:
        return partition_of(fingerprint(f.readline())) % 2


def test_two_process_cluster_over_four_files_stores_exact_counts(settings, tmp_path):
    # two files for each process: process p reads the partitions p mod 2, by file identity
    logs = [_log(tmp_path, f"api-{i}.log", 25_000, seed=i) for i in range(4)]
    seed = 4
    while sorted(_process_of(log) for log in logs) != [0, 0, 1, 1]:
        taken = [_process_of(log) for log in logs]
        spare = next(log for log in logs if taken.count(_process_of(log)) > 2)
        spare.unlink()
        _log(tmp_path, spare.name, 25_000, seed=seed)
        seed += 1
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    pattern = str(tmp_path / "api-*.log")
    processes = [
        start_process(
            settings,
            "--input",
            pattern,
            "--once",
            "--process-id",
            str(i),
            "--addresses",
            addresses,
        )
        for i in range(2)
    ]
    outputs = [process.communicate(timeout=180)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    stored = [int(o.rsplit("stored ", 1)[1].split(",")[0]) for o in outputs]
    assert sum(stored) == 100_000 and all(n > 0 for n in stored)  # both processes worked
    assert count_points(settings) == 100_000
    assert _customers_stored(settings) == _customers_in(logs)


def test_two_workers_in_one_process_store_exact_counts(settings_env, tmp_path):
    logs = [_log(tmp_path, f"w-{i}.log", 10_000, seed=10 + i) for i in range(3)]
    args = ["process", "--workers", "2", "--once"]
    for log in logs:
        args += ["--input", str(log)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert count_points(settings_env) == 30_000
    assert _customers_stored(settings_env) == _customers_in(logs)


def test_ctrl_c_while_busy_is_a_clean_stop_and_a_restart_loses_nothing(settings, tmp_path):
    total = 200_000
    log = _log(tmp_path, "busy.log", total)
    for _ in range(2):  # Ctrl-C lands wherever the running processor is: parsing too
        before = count_points(settings)
        process = start_process(settings, "--input", str(log))
        wait_until(lambda b=before: count_points(settings) > b, what="points of this run")
        output = stop_process(process)  # asserts exit code 0
        assert "Traceback" not in output
    run_process(settings, "--input", str(log), "--once")
    assert count_points(settings) == total
