"""`logpipe clean`: remove what `run-all` left on this machine.

That is its private InfluxDB (under logpipe's data dir, never anything at
LOGPIPE_INFLUX_URL), and in the state dir the recovery store, dead letters, the children's
logs, the generated log file and the status files. A `--log-file` given to run-all is the
user's and stays.

Only those paths are removed: a symbolic link among them, or inside them, is removed as a
link and what it points to stays. The private InfluxDB's directory is locked for the whole
time (see influxd.py), so a server running on it makes `clean` refuse, and one cannot start
on it while the files go.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from logpipe.config import Settings, default_data_dir
from logpipe.errors import CleanRefused, StatePathError
from logpipe.influxd import lock_data_dir
from logpipe.run_all import LOG_DIR, LOG_FILE, PRIVATE_INFLUXDB
from logpipe.status import GENERATE_STATUS, PROCESS_STATUS


@dataclass(frozen=True)
class Found:
    """A path run-all made that is there now."""

    path: Path
    size: int
    """Bytes of the regular files at or under `path`; links and directories count 0."""


def find(settings: Settings, *, data_dir: Path | None = None) -> list[Found]:
    """What `remove` would take, in this order: the paths run-all writes that exist, each
    with its size. `data_dir` is logpipe's data dir (default: the user's)."""
    state = settings.state_dir
    paths = [
        (data_dir or default_data_dir()) / PRIVATE_INFLUXDB,
        settings.recovery_dir,
        settings.recovery_lock_path,
        settings.dead_letter_path,
        state / LOG_DIR,
        state / LOG_FILE,
        state / GENERATE_STATUS,
        state / PROCESS_STATUS,
    ]
    return [Found(path, _size(path)) for path in paths if os.path.lexists(path)]


def _size(path: Path) -> int:
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size if stat.S_ISREG(info.st_mode) else 0
    total = 0
    for parent, _, names in os.walk(path):  # links to directories are listed, not entered
        for name in names:
            info = os.lstat(os.path.join(parent, name))
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total


@contextmanager
def private_influxd_stopped(data_dir: Path | None = None) -> Iterator[None]:
    """Hold the lock of run-all's private InfluxDB directory for the block: CleanRefused
    while a server runs there, and none starts there until the block ends."""
    root = (data_dir or default_data_dir()) / PRIVATE_INFLUXDB
    if root.is_symlink() or not root.is_dir():
        yield  # no server of ours runs here (a link is removed, not followed)
        return
    lock = lock_data_dir(root)
    if lock is None:
        raise CleanRefused(
            f"run-all's private InfluxDB is running on {root}: stop run-all first (Ctrl-C)"
        )
    try:
        yield
    finally:
        os.close(lock)


def remove(path: Path) -> None:
    """Remove `path`: a directory with all it holds, anything else (a link too) itself."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # removes the links inside, never what they point to
        else:
            path.unlink()
    except OSError as exc:
        raise StatePathError(f"cannot remove {path}: {exc.strerror}") from exc


def describe(verb: str, found: list[Found]) -> list[str]:
    """One line per path, then the total, e.g. `removed /x/logs (1,024 bytes)`."""
    total = sum(item.size for item in found)
    paths = f"{len(found)} path{'' if len(found) == 1 else 's'}"
    return [f"{verb} {item.path} ({item.size:,} bytes)" for item in found] + [
        f"{verb} {paths}, {total:,} bytes in all"
    ]
