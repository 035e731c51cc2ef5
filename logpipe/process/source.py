"""The Bytewax source: one partition per input file, read in large chunks of complete lines."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from logpipe.process.parse import Chunk

CHUNK_BYTES = 1 << 20
IDLE_POLL = timedelta(milliseconds=50)


class FileState(NamedTuple):
    """Where a partition stands: the file's identity ("device:inode") and the byte offset of
    the first byte not yet handed to the dataflow (always the start of a line)."""

    identity: str
    offset: int


def file_identity(stat: os.stat_result) -> str:
    return f"{stat.st_dev}:{stat.st_ino}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _FilePartition(StatefulSourcePartition[Chunk, FileState]):
    """Reads one file from its saved offset; follows it as it grows unless `once`."""

    def __init__(
        self,
        path: Path,
        state: FileState | None,
        *,
        once: bool,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._path = path
        self._source = str(path)
        self._once = once
        self._clock = clock
        self._file = path.open("rb")
        identity = file_identity(os.fstat(self._file.fileno()))
        # A different file under the same name was rotated in while we were stopped.
        self._offset = state.offset if state and state.identity == identity else 0
        self._identity = identity
        self._file.seek(self._offset)
        self._partial = b""  # the start of a line whose newline has not arrived yet
        self._awake: datetime | None = None

    def next_batch(self) -> list[Chunk]:
        data = self._file.read(CHUNK_BYTES)
        if not data:
            return self._at_end()
        self._awake = None
        data = self._partial + data
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        if end == 0:
            return []
        chunk = Chunk(self._source, self._offset, data[:end])
        self._offset += end
        return [chunk]

    def _at_end(self) -> list[Chunk]:
        if not self._once:
            self._awake = self._clock() + IDLE_POLL
            return []
        if self._partial:  # --once: the file is finished, so its last line is too
            chunk = Chunk(self._source, self._offset, self._partial)
            self._offset += len(self._partial)
            self._partial = b""
            return [chunk]
        raise StopIteration

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> FileState:
        return FileState(self._identity, self._offset)

    def close(self) -> None:
        self._file.close()


class LogFileSource(FixedPartitionedSource[Chunk, FileState]):
    """Every input file is a partition, keyed by its absolute path."""

    def __init__(self, paths: list[Path], *, once: bool) -> None:
        self._paths = {str(path.absolute()): path for path in paths}
        self._once = once

    def list_parts(self) -> list[str]:
        return list(self._paths)

    def build_part(
        self, step_id: str, for_part: str, resume_state: FileState | None
    ) -> _FilePartition:
        return _FilePartition(Path(for_part), resume_state, once=self._once)
