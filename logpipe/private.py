"""Files and directories of logpipe's own state (offsets, dead letters, status files, child
logs, a private InfluxDB's files): readable by their owner only, and never written through
a symbolic link.

Dead letters and logs hold raw request lines, and a symlink planted where logpipe writes
would make it append to a file of the planter's choosing. Files are created 0600 and
directories 0700, whatever the umask (which can only take bits away; a chmod puts back
those it took from the owner). What exists already is left as it is: a directory the user
made, a file of an earlier version. The log that `generate` writes is the user's data, read
by other tools, and is not made here.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Literal, TextIO

from logpipe.errors import StatePathError

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600

_FLAGS = {
    "a": os.O_WRONLY | os.O_APPEND,
    "a+": os.O_RDWR | os.O_APPEND,
    "w": os.O_WRONLY | os.O_TRUNC,
}


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents, each DIRECTORY_MODE; returns `path`. Made by
    another process meanwhile (one of a cluster) is fine; not a directory is StatePathError."""
    missing = []
    directory = path
    while not directory.is_dir():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIRECTORY_MODE)
            directory.chmod(DIRECTORY_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise StatePathError(f"{directory} is in the way of a directory") from None
        except OSError as exc:
            raise StatePathError(f"cannot create {directory}: {exc.strerror}") from exc
    return path


def open_private(path: Path, mode: Literal["a", "a+", "w"] = "a") -> TextIO:
    """Open `path` like open() with `mode` and UTF-8, creating it FILE_MODE; a symbolic
    link at `path` is refused with StatePathError, not followed. (A child process's output
    goes to such a file's descriptor as well.)"""
    flags = _FLAGS[mode] | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        descriptor = _open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a link
            raise _link_refused(path) from exc
        raise StatePathError(f"cannot open {path}: {exc.strerror}") from exc
    return os.fdopen(descriptor, mode, encoding="utf-8")


def refuse_link(path: Path) -> None:
    """Raise now the StatePathError open_private(path) would raise later for a link there
    (e.g. before a dataflow starts, whose errors come wrapped in Bytewax's)."""
    if path.is_symlink():
        raise _link_refused(path)


def _link_refused(path: Path) -> StatePathError:
    return StatePathError(
        f"refusing to write {path}: it is a symbolic link, and logpipe writes its state"
        " only to files of its own; remove the link"
    )


def _open(path: Path, flags: int) -> int:
    """A descriptor of `path`, which is created FILE_MODE if missing."""
    while True:
        try:
            # O_EXCL fails on any link, dangling or not; then the open below says ELOOP
            descriptor = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            pass
        else:
            os.fchmod(descriptor, FILE_MODE)
            return descriptor
        try:
            return os.open(path, flags)
        except FileNotFoundError:
            continue  # removed since: create it
