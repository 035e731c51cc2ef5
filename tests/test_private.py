"""logpipe's own files and directories (state, dead letters, status files, run-all's child
logs, a private influxd's files) are its owner's only, 0700 and 0600 whatever the umask, and
are never written through a symbolic link."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from logpipe.config import Settings
from logpipe.errors import StatePathError
from logpipe.influxd import LocalInfluxd
from logpipe.private import open_private, private_dir
from logpipe.process import _recovery
from logpipe.process.parse import Reject
from logpipe.process.sink import DeadLetters
from logpipe.run_all import Child
from logpipe.status import write_status
from tests.conftest import logpipe_env


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(params=[0o022, 0o277], ids=["umask022", "umask277"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """A usual umask, and one that takes bits from the owner too."""
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def test_private_dir_makes_each_missing_directory_0700(tmp_path, umask):
    tmp_path.chmod(0o755)
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs").chmod(0o755)
    private_dir(tmp_path / "theirs" / "a" / "b")
    assert _mode(tmp_path / "theirs" / "a") == _mode(tmp_path / "theirs" / "a" / "b") == 0o700
    assert _mode(tmp_path / "theirs") == _mode(tmp_path) == 0o755  # there before: left alone


def test_private_dir_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "state").write_text("")
    with pytest.raises(StatePathError, match="state is in the way of a directory"):
        private_dir(tmp_path / "state" / "logs")


def test_open_private_creates_0600_and_leaves_an_existing_file_its_mode(tmp_path, umask):
    with open_private(tmp_path / "new.log") as file:
        file.write("one\n")
    with open_private(tmp_path / "new.log") as file:
        file.write("two\n")
    assert (tmp_path / "new.log").read_text() == "one\ntwo\n"
    assert _mode(tmp_path / "new.log") == 0o600
    os.umask(0o022)
    (tmp_path / "old.log").write_text("old\n")
    with open_private(tmp_path / "old.log", "w") as file:
        file.write("new\n")
    assert (tmp_path / "old.log").read_text() == "new\n" and _mode(tmp_path / "old.log") == 0o644


@pytest.mark.parametrize("target_exists", [True, False])
def test_open_private_refuses_a_symbolic_link(tmp_path, target_exists):
    target = tmp_path / "elsewhere"
    if target_exists:
        target.write_text("theirs\n")
    (tmp_path / "dead-letter.jsonl").symlink_to(target)
    with pytest.raises(StatePathError, match=r"dead-letter\.jsonl: it is a symbolic link"):
        open_private(tmp_path / "dead-letter.jsonl")
    if target_exists:
        assert target.read_text() == "theirs\n"
    else:
        assert not target.exists()


def test_dead_letters_are_private_and_refuse_a_symbolic_link(tmp_path, umask):
    state = tmp_path / "state"
    dead = DeadLetters(state / "dead-letter.jsonl")
    dead.add([Reject("a.log", 0, "no timestamp", "garbage")])
    dead.close()
    assert _mode(state) == 0o700 and _mode(state / "dead-letter.jsonl") == 0o600
    (state / "dead-letter.jsonl").unlink()
    (state / "dead-letter.jsonl").symlink_to(tmp_path / "target")
    linked = DeadLetters(state / "dead-letter.jsonl")
    with pytest.raises(StatePathError, match="symbolic link"):
        linked.add([Reject("a.log", 0, "no timestamp", "garbage")])
    assert not (tmp_path / "target").exists()


def test_status_files_and_the_recovery_store_are_private(tmp_path, umask):
    settings = Settings(state_dir=tmp_path / "state")
    _recovery(settings)
    write_status(settings.state_dir / "process-status.json", {"read": 1})
    assert _mode(settings.state_dir) == _mode(settings.recovery_dir) == 0o700
    assert _mode(settings.state_dir / "recovery.lock") == 0o600
    assert _mode(settings.state_dir / "process-status.json") == 0o600


def test_run_all_child_logs_are_private(tmp_path, umask):
    logs = private_dir(tmp_path / "state" / "logs")
    child = Child("version", ["--version"], env=dict(os.environ), log_dir=logs)
    assert child.process.wait(30) == 0
    assert child.log_path.read_text().startswith("logpipe ")
    assert _mode(logs) == 0o700 and _mode(child.log_path) == 0o600


def test_a_private_influxd_has_private_files(influxd: LocalInfluxd):
    assert _mode(influxd.root / "influxdb.conf") == _mode(influxd.log_path) == 0o600


def _process(settings: Settings, log: Path) -> subprocess.CompletedProcess[str]:
    """`logpipe process --once` under umask 022, configured by LOGPIPE_* variables."""
    return subprocess.run(
        [sys.executable, "-m", "logpipe", "process", "--input", str(log), "--once"],
        env={**os.environ, **logpipe_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        umask=0o022,
    )


def test_process_keeps_its_state_private(settings: Settings, tmp_path):
    log = tmp_path / "api.log"
    log.write_text("not a request line\n")
    result = _process(settings, log)
    assert result.returncode == 0, result.stderr
    state = settings.state_dir
    assert _mode(state) == _mode(settings.recovery_dir) == 0o700
    for name in ["dead-letter.jsonl", "process-status.json", "recovery.lock"]:
        assert _mode(state / name) == 0o600, name


def test_process_refuses_a_dead_letter_file_that_is_a_symbolic_link(settings: Settings, tmp_path):
    log = tmp_path / "api.log"
    log.write_text("not a request line\n")
    target = tmp_path / "elsewhere"
    target.write_text("theirs\n")
    settings.state_dir.mkdir()
    settings.dead_letter_path.symlink_to(target)
    result = _process(settings, log)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: refusing to write {settings.dead_letter_path}: it is a symbolic link, and"
        " logpipe writes its state only to files of its own; remove the link"
    )
    assert target.read_text() == "theirs\n"
