"""The Bytewax source: one partition per input file, read in large chunks of complete lines.

A partition follows its path the way `tail -F` does: a file renamed away and replaced
(logrotate's default) is read to its end and then the new file from offset 0; a file
truncated in place (copytruncate) is read again from offset 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, NamedTuple

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from logpipe.process.counters import Counters
from logpipe.process.parse import MAX_LINE_BYTES, Chunk
from logpipe.schema import source_salt

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
IDLE_POLL = timedelta(milliseconds=50)


class FileState(NamedTuple):
    """Where a partition stands, as Bytewax recovery stores it.

    identity: the file being read, "device:inode" (a rotated-in file has another one);
    offset: the first byte not yet handed to the dataflow, always the start of a line;
    generation: how often this file was truncated in place; with the identity it tells the
    timestamps of a rewritten file apart from those of its earlier content.
    """

    identity: str
    offset: int
    generation: int = 0


def file_identity(stat: os.stat_result) -> str:
    return f"{stat.st_dev}:{stat.st_ino}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _find_by_identity(path: Path, identity: str) -> Path | None:
    """The rotated file (e.g. api.log.1) that still has `identity`, next to `path`."""
    for sibling in sorted(path.parent.glob(path.name + "*")):
        try:
            if file_identity(sibling.stat()) == identity:
                return sibling
        except OSError:
            continue
    return None


class _FilePartition(StatefulSourcePartition[Chunk, FileState]):
    """Reads one path from its saved state; follows it as it grows unless `once`."""

    def __init__(
        self,
        path: Path,
        state: FileState | None,
        *,
        once: bool,
        counters: Counters,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._path = path
        self._key = str(path)
        self._once = once
        self._counters = counters
        self._clock = clock
        self._awake: datetime | None = None
        current = file_identity(path.stat())
        if state is None or state.identity == current:
            self._open(path, state or FileState(current, 0))
            return
        # Rotated while we were stopped: finish the old file first if it is still there.
        old = _find_by_identity(path, state.identity)
        if old is None:
            log.warning("%s was replaced and its old file is gone; reading the new one", path)
            self._open(path, FileState(current, 0))
        else:
            self._open(old, state)

    def _open(self, path: Path, state: FileState) -> None:
        self._file: BinaryIO = path.open("rb")
        stat = os.fstat(self._file.fileno())
        self._identity = file_identity(stat)
        same = state.identity == self._identity
        offset, generation = (state.offset, state.generation) if same else (0, 0)
        if stat.st_size < offset:  # truncated while stopped
            offset, generation = 0, generation + 1
        self._restart(offset, generation)

    def _restart(self, offset: int, generation: int) -> None:
        """Read the open file from `offset`, as its `generation`-th content (a new one after
        each truncation, with a salt of its own)."""
        self._file.seek(offset)
        self._offset = offset
        self._partial = b""  # the start of a line whose newline has not arrived yet
        self._skipping = False  # inside a line too long to keep: drop bytes until newline
        self._generation = generation
        self._salt = source_salt(f"{self._key}|{self._identity}|{generation}")

    def next_batch(self) -> list[Chunk]:
        if self._file.closed:  # --once and finished
            raise StopIteration
        data = self._file.read(CHUNK_BYTES)
        if not data:
            return self._at_end()
        self._awake = None
        if self._skipping:
            data = self._skip_to_newline(data)
        chunks = []
        data = self._partial + data
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        if end:
            chunks.append(Chunk(self._key, self._offset, data[:end], self._salt))
            self._offset += end
        if len(self._partial) > MAX_LINE_BYTES:
            # Hand on just enough to be rejected as too long, then drop the rest of the line.
            chunks.append(Chunk(self._key, self._offset, self._partial[: MAX_LINE_BYTES + 1], 0))
            self._offset += len(self._partial)
            self._partial = b""
            self._skipping = True
        self._report_lag()
        return chunks

    def _skip_to_newline(self, data: bytes) -> bytes:
        end = data.find(b"\n") + 1
        if end == 0:
            self._offset += len(data)
            return b""
        self._offset += end
        self._skipping = False
        return data[end:]

    def _at_end(self) -> list[Chunk]:
        self._report_lag()
        if self._once:
            if self._partial:  # --once: the file is finished, so its last line is too
                return [self._take_partial()]
            self._file.close()  # Bytewax does not always call close() after StopIteration
            raise StopIteration
        self._awake = self._clock() + IDLE_POLL
        return self._follow()

    def _take_partial(self) -> Chunk:
        chunk = Chunk(self._key, self._offset, self._partial, self._salt)
        self._offset += len(self._partial)
        self._partial = b""
        return chunk

    def _follow(self) -> list[Chunk]:
        """At the end of the file: notice truncation and rotation."""
        size = os.fstat(self._file.fileno()).st_size
        if size < self._offset + len(self._partial):
            log.info("%s was truncated; reading it again from the start", self._key)
            self._restart(0, self._generation + 1)
            return []
        try:
            replaced = file_identity(self._path.stat()) != self._identity
        except FileNotFoundError:  # renamed away, the new file is not there yet
            return []
        if not replaced:
            return []
        log.info("%s was rotated; reading the new file", self._key)
        finished = [self._take_partial()] if self._partial else []  # its last line is complete
        self._file.close()
        self._open(self._path, FileState("", 0))
        return finished

    def _report_lag(self) -> None:
        size = os.fstat(self._file.fileno()).st_size
        self._counters.set_lag(self._key, max(0, size - self._offset))

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> FileState:
        return FileState(self._identity, self._offset, self._generation)

    def close(self) -> None:
        self._file.close()


class LogFileSource(FixedPartitionedSource[Chunk, FileState]):
    """Every input file is a partition, keyed by its absolute path."""

    def __init__(self, paths: list[Path], *, once: bool, counters: Counters) -> None:
        self._paths = sorted({str(path.absolute()) for path in paths})
        self._once = once
        self._counters = counters

    def list_parts(self) -> list[str]:
        return self._paths

    def build_part(
        self, step_id: str, for_part: str, resume_state: FileState | None
    ) -> _FilePartition:
        return _FilePartition(
            Path(for_part), resume_state, once=self._once, counters=self._counters
        )
