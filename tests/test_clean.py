"""`logpipe clean`: removes run-all's files and nothing else, never under a running influxd."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import httpx

from logpipe.clean import Found, find, private_influxd_stopped, remove
from logpipe.config import load_settings
from logpipe.influxd import LocalInfluxd


def _write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def _leave_run_all_files(data: Path, state: Path) -> list[tuple[Path, int]]:
    """What a run-all leaves in logpipe's data dir `data` and in `state`; (path, bytes) of
    what clean should remove, in the order it lists them."""
    _write(data / "influxdb/data/logpipe/autogen/1/000000001-000000001.tsm", 100)
    _write(data / "influxdb/meta/meta.db", 20)
    return [(data / "influxdb", 120), *_leave_state_files(state)]


def _leave_state_files(state: Path) -> list[tuple[Path, int]]:
    _write(state / "recovery/part-0.sqlite3", 50)
    _write(state / "logs/process.log", 30)
    _write(state / "logs/serve.log", 10)
    return [
        (state / "recovery", 50),
        (_write(state / "recovery.lock", 0), 0),
        (_write(state / "dead-letter.jsonl", 7), 7),
        (state / "logs", 40),
        (_write(state / "api_requests.log", 1000), 1000),
        (_write(state / "generate-status.json", 3), 3),
        (_write(state / "process-status.json", 4), 4),
    ]


def _leave_other_files(data: Path, state: Path) -> list[Path]:
    """Files beside run-all's that are not clean's to remove."""
    return [
        _write(state / "my-notes.txt", 5),
        _write(state / "process-1.json", 5),  # a cluster's process, not run-all's
        _write(data / "influxdb-backup/meta.db", 5),
    ]


def test_find_lists_run_alls_paths_with_their_sizes(tmp_path):
    expected = _leave_run_all_files(tmp_path / "data", tmp_path / "state")
    _leave_other_files(tmp_path / "data", tmp_path / "state")
    settings = load_settings(state_dir=tmp_path / "state")
    found = find(settings, data_dir=tmp_path / "data")
    assert found == [Found(path, size) for path, size in expected]
    assert [item.size for item in found] == [120, 50, 0, 7, 40, 1000, 3, 4]


def test_nothing_left_is_an_empty_list(tmp_path):
    assert find(load_settings(state_dir=tmp_path / "state"), data_dir=tmp_path / "data") == []


def test_links_are_removed_as_links_and_what_they_point_to_stays(tmp_path):
    outside = _write(tmp_path / "elsewhere/precious.txt", 9)
    (tmp_path / "state/recovery").mkdir(parents=True)
    (tmp_path / "state/recovery/link").symlink_to(outside)
    (tmp_path / "state/logs").symlink_to(outside.parent, target_is_directory=True)
    (tmp_path / "state/dead-letter.jsonl").symlink_to(outside)
    settings = load_settings(state_dir=tmp_path / "state")
    found = find(settings, data_dir=tmp_path / "data")
    assert found == [
        Found(tmp_path / "state/recovery", 0),
        Found(tmp_path / "state/dead-letter.jsonl", 0),
        Found(tmp_path / "state/logs", 0),
    ]
    for item in found:
        remove(item.path)
    assert not os.path.lexists(tmp_path / "state/logs")
    assert not os.path.lexists(tmp_path / "state/dead-letter.jsonl")
    assert not (tmp_path / "state/recovery").exists()
    assert outside.read_bytes() == b"x" * 9
    assert sorted(os.listdir(tmp_path / "elsewhere")) == ["precious.txt"]


def test_a_linked_influxdb_directory_is_not_locked_through_the_link(tmp_path):
    target = _write(tmp_path / "elsewhere/meta.db", 1).parent
    (tmp_path / "data").mkdir()
    (tmp_path / "data/influxdb").symlink_to(target, target_is_directory=True)
    with private_influxd_stopped(tmp_path / "data"):
        pass
    assert os.listdir(target) == ["meta.db"]  # no lock file made through the link


def _clean(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m logpipe clean` on tmp_path's data and state dirs, stdin not a terminal."""
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("LOGPIPE_")},
        "XDG_DATA_HOME": str(tmp_path / "xdg"),  # logpipe's data dir: tmp_path/xdg/logpipe
    }
    return subprocess.run(
        [sys.executable, "-m", "logpipe", "clean", "--state-dir", str(tmp_path / "state"), *args],
        env=environment, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip


def _leave_files_for_the_cli(tmp_path: Path) -> list[tuple[Path, int]]:
    """run-all's files where the CLI run by `_clean` looks."""
    return _leave_run_all_files(tmp_path / "xdg/logpipe", tmp_path / "state")


def test_without_yes_and_no_terminal_nothing_is_removed(tmp_path):
    paths = [path for path, _ in _leave_files_for_the_cli(tmp_path)]
    result = _clean(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: nothing removed: no terminal to ask for confirmation, pass --yes"
    )
    assert all(path.exists() for path in paths)


def test_yes_removes_run_alls_files_and_says_how_many_bytes(tmp_path):
    expected = _leave_files_for_the_cli(tmp_path)
    others = _leave_other_files(tmp_path / "xdg/logpipe", tmp_path / "state")
    result = _clean(tmp_path, "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        *(f"removed {path} ({size:,} bytes)" for path, size in expected),
        "removed 8 paths, 1,224 bytes in all",
    ]
    assert not [path for path, _ in expected if os.path.lexists(path)]
    assert all(path.read_bytes() == b"x" * 5 for path in others)
    assert (tmp_path / "state").is_dir() and (tmp_path / "xdg/logpipe").is_dir()

    again = _clean(tmp_path, "--yes")
    assert again.returncode == 0
    assert again.stdout.strip() == "nothing to remove: run-all left no files"


def test_a_running_private_influxd_is_refused_and_nothing_removed(tmp_path):
    server = LocalInfluxd(tmp_path / "xdg/logpipe/influxdb").start()
    try:
        paths = [path for path, _ in _leave_state_files(tmp_path / "state")]
        paths += list((tmp_path / "xdg/logpipe/influxdb").rglob("*"))  # the server's own
        result = _clean(tmp_path, "--yes")
        assert httpx.get(f"{server.url}/ping").status_code == 204  # untouched, still up
    finally:
        server.stop()
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: run-all's private InfluxDB is running on {tmp_path}/xdg/logpipe/influxdb:"
        " stop run-all first (Ctrl-C)"
    )
    assert result.stdout == ""
    assert all(path.exists() for path in paths)

    stopped = _clean(tmp_path, "--yes")  # the server is gone: its files can go
    assert stopped.returncode == 0, stopped.stderr
    assert not os.path.lexists(tmp_path / "xdg/logpipe/influxdb")


def _read(controller: int) -> bytes:
    """What the terminal holds; b"" once it is empty and nobody has it open (Linux: EIO)."""
    try:
        return os.read(controller, 65536)
    except OSError:
        return b""


def test_on_a_terminal_it_lists_then_asks(tmp_path):
    expected = _leave_files_for_the_cli(tmp_path)
    controller, terminal = pty.openpty()
    environment = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "COLUMNS": "200"}
    asked = subprocess.Popen(
        [sys.executable, "-m", "logpipe", "clean", "--state-dir", str(tmp_path / "state")],
        env=environment, cwd=tmp_path, stdin=terminal, stdout=terminal, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    os.write(controller, b"n\n")  # the terminal keeps it until the prompt reads it
    try:
        assert asked.wait(timeout=60) == 1
        shown = b"".join(iter(lambda: _read(controller), b"")).decode().replace("\r\n", "\n")
    finally:
        os.close(controller)
    assert [f"would remove {path} ({size:,} bytes)" for path, size in expected] + [
        "would remove 8 paths, 1,224 bytes in all",
        "Remove them? [y/N]: nothing removed",
    ] == shown.strip().splitlines()[-10:]
    assert all(path.exists() for path, _ in expected)
