"""Which files there are to read, and what each one is.

Words used here and in logpipe.process.source:

- identity: a file's fingerprint, a hash of its first line (of its first FINGERPRINT_BYTES
  bytes when the first line is longer). It stays the same when the file is renamed, copied
  (logrotate's copytruncate), compressed, hard-linked, reached through a symlink or moved to
  a remounted volume, so one file is read once whatever names it. A file whose first line
  is not complete yet has no identity and is not read until it has one. The device number
  is never part of it (it changes on remount); neither is the path.
- live: a file named by an --input path or glob under a name that is not a rotated name.
- rotated name: the live name plus logrotate's suffix: `api.log.1`, `api.log.2.gz`,
  `api.log-20261201`, `api.log.gz`. Such siblings of every live path are read too, so a
  file renamed away while logpipe was stopped is finished.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import hashlib
import logging
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from stat import S_ISREG
from typing import NamedTuple

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 1024
RESCAN_EVERY = 1.0
"""Seconds between two listings of the inputs while following (Vector's glob cooldown)."""
WAITING_POLL = 0.05
"""Seconds between two looks at the listed files with no first line yet (the log a rotation
has just created): their first lines are read within this, not within RESCAN_EVERY."""

_ROTATED = re.compile(r"(?:\.\d{1,4}|-\d{8}(?:\d\d)?|-\d{4}-\d\d-\d\d)?(?:\.gz)?")


class Found(NamedTuple):
    """A file as one listing saw it."""

    path: Path
    identity: str
    live: bool
    inode: int
    size: int
    """Bytes of content: for a .gz file, of its uncompressed content (mod 4 GiB, as gzip keeps)."""
    mtime: float
    compressed: bool


def fingerprint(head: bytes, *, rotated: bool = False) -> str | None:
    """The identity of a file that starts with `head` (None until its first line is complete).

    A rotated file with no complete line is known by what it has (an application gave up
    its only line there); should the line be finished later, it is another file, read from 0.
    """
    end = head.find(b"\n") + 1
    if end == 0:
        if len(head) < FINGERPRINT_BYTES and not (rotated and head):
            return None
        end = min(len(head), FINGERPRINT_BYTES)
    return hashlib.blake2b(head[: min(end, FINGERPRINT_BYTES)], digest_size=8).hexdigest()


def read_head(path: Path, compressed: bool) -> bytes:
    opener = gzip.open if compressed else open
    with opener(path, "rb") as file:
        return file.read(FINGERPRINT_BYTES)


def head_of(fd: int) -> bytes:
    """The first bytes of an open (uncompressed) file, wherever its position is."""
    return os.pread(fd, FINGERPRINT_BYTES, 0)


def _gzip_size(path: Path) -> int:
    """The uncompressed size a gzip file records in its last four bytes (mod 2**32)."""
    with path.open("rb") as file:
        file.seek(-4, os.SEEK_END)
        (size,) = struct.unpack("<I", file.read(4))
    return int(size)


def is_rotated(name: str) -> bool:
    """Whether a file name is a live name plus logrotate's suffix (`api.log.2.gz`)."""
    return any(name[cut] in ".-" and _ROTATED.fullmatch(name[cut:]) for cut in range(1, len(name)))


def _rotated_siblings(live: Path) -> list[Path]:
    try:
        names = os.listdir(live.parent)
    except OSError:
        return []
    prefix = live.name
    return [
        live.parent / name
        for name in names
        if name.startswith(prefix)
        and len(name) > len(prefix)
        and _ROTATED.fullmatch(name[len(prefix) :])
    ]


class Scanner:
    """Lists the files of the --input patterns (paths or globs) and their rotated siblings,
    less the --exclude patterns; one listing is shared by every partition of the process
    for RESCAN_EVERY seconds (a listing opens every file to read its identity), unless a
    partition asks for a `fresh` one (it found a file changed since it was listed). Files
    listed without a first line yet are looked at again every WAITING_POLL; `version` counts
    the changes of the listing."""

    def __init__(
        self,
        patterns: list[str],
        excludes: Sequence[str] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._patterns = [os.path.abspath(pattern) for pattern in patterns]
        self._excludes = [os.path.abspath(pattern) for pattern in excludes]
        self._clock = clock
        self._lock = threading.Lock()
        self._listed: list[Found] = []
        self._listed_at: float | None = None
        self._waiting: list[tuple[Path, Path]] = []  # (real, named): files with no identity
        self._waited_at = 0.0
        self.version = 0

    def scan(self, *, fresh: bool = False) -> list[Found]:
        with self._lock:
            now = self._clock()
            if fresh or self._listed_at is None or now - self._listed_at >= RESCAN_EVERY:
                self._listed, self._waiting = self._list()
                self._listed_at, self.version = now, self.version + 1
            return self._listed

    @property
    def waiting(self) -> bool:
        """Whether a listed file has no first line yet."""
        return bool(self._waiting)

    def newer_than(self, version: int) -> bool:
        """Whether the listing changed since `version`, after looking again (at most every
        WAITING_POLL) at the files that had no first line."""
        with self._lock:
            now = self._clock()
            if self._waiting and now - self._waited_at >= WAITING_POLL:
                self._waited_at = now
                looks = [(pair, self._look(*pair)) for pair in self._waiting]
                appeared = [found for _, found in looks if found is not None]
                if appeared:
                    self._waiting = [pair for pair, found in looks if found is None]
                    self._listed = [*self._listed, *appeared]
                    self.version += 1
            return self.version != version

    def _excluded(self, path: str) -> bool:
        return any(fnmatch.fnmatch(path, pattern) for pattern in self._excludes)

    def _list(self) -> tuple[list[Found], list[tuple[Path, Path]]]:
        """The files found, and the (real, named) paths of those with no first line yet."""
        named: list[Path] = []
        for pattern in self._patterns:
            matches = glob.glob(pattern) if glob.has_magic(pattern) else [pattern]
            named += [Path(match) for match in sorted(matches) if not self._excluded(match)]
        candidates: dict[str, Path] = {}  # real path -> a path that names it
        for path in named:
            candidates.setdefault(os.path.realpath(path), path)
            if not is_rotated(path.name):
                for sibling in _rotated_siblings(path):
                    if not self._excluded(str(sibling)):
                        candidates.setdefault(os.path.realpath(sibling), sibling)
        found: dict[tuple[str, int], Found] = {}  # one entry per file, however many names
        waiting = []
        for real, path in candidates.items():
            seen = self._look(Path(real), path)
            if seen is None:
                if os.path.isfile(real):
                    waiting.append((Path(real), path))
                continue
            key = (seen.identity, seen.inode)  # hard links: one inode
            if key not in found or (seen.live and not found[key].live):
                found[key] = seen
        return sorted(found.values(), key=lambda f: (f.live, f.mtime, str(f.path))), waiting

    def _look(self, real: Path, named: Path) -> Found | None:
        compressed = real.name.endswith(".gz")
        live = not is_rotated(named.name)
        try:
            stat = real.stat()
            if not S_ISREG(stat.st_mode):
                return None
            identity = fingerprint(read_head(real, compressed), rotated=not live)
            size = _gzip_size(real) if compressed else stat.st_size
        except (OSError, EOFError) as exc:  # a .gz being written: EOFError or BadGzipFile
            log.debug("cannot read %s yet: %s", named, exc)
            return None
        if identity is None:
            return None
        return Found(named, identity, live, stat.st_ino, size, stat.st_mtime, compressed)
