"""The Bytewax source: a fixed set of partitions, each owning the files whose identity
hashes to it, reading each of them once, in large chunks of complete lines.

Files are known by their identity (logpipe.process.files), never by path or device, and
each partition keeps {identity: FileState} as its recovery state. Why nothing is lost or
read twice:

- A file is read from its saved offset, which is always the start of a line not yet handed
  on (or a place inside an over-long line being skipped, with `skipping` saved too), and
  Bytewax saves the offsets only once the sink has stored everything before them.
- Renamed (logrotate `create`): the open descriptor is kept and read, whatever the file's
  name now, until the file has been quiet for `rotate_wait` and is no longer live; the
  application may still write to it until it reopens its log. A file found again later
  with more bytes than its offset is read on from there.
- Rotated several times while stopped: every rotated sibling is listed (`api.log.2`,
  `api.log.1.gz`…), each by its identity; a partition reads its files oldest first, files
  of different partitions are read side by side (order does not change what is stored).
- Copied and truncated (copytruncate): a read that finds the file shorter than its offset,
  or starting with another first line, is dropped; the copy has the old identity, and the
  file is read on from the copy at the saved offset. The truncated file, once it has a first
  line, is a new file read from 0.
- An unterminated line is never handed on as a line: it waits for its newline; when its file
  is closed after the rotate wait, it goes to the dead-letter file with that reason. `--once`
  stops before it and leaves it for the next run.
- Partitions are fixed (PARTITIONS, whatever the number of workers), and a file is owned by
  the partition its identity hashes to, whatever its path: a restart with another number of
  workers or processes, or after the file moved, finds its state where it left it.
"""

from __future__ import annotations

import gzip
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import IO, NamedTuple, cast

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from logpipe.process.counters import Counters
from logpipe.process.files import RESCAN_EVERY, Found, Scanner, fingerprint, head_of
from logpipe.process.parse import MAX_LINE_BYTES, Chunk
from logpipe.schema import source_salt

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
IDLE_POLL = timedelta(milliseconds=50)
_RESCAN = timedelta(seconds=RESCAN_EVERY)
PARTITIONS = 64
"""Source partitions, fixed so that saved states always find their partition again; also
the most workers (of all processes) that read files at once."""
FORGET_AFTER = 3600.0
"""Seconds of this run after which the state of a file no longer found is dropped: the state
stays bounded by the files seen within the last hour."""


def partition_of(identity: str, partitions: int = PARTITIONS) -> int:
    """The partition that owns a file, whatever its path, the workers and the processes."""
    return int(identity, 16) % partitions


class FileState(NamedTuple):
    """Where a partition stands in one file, as Bytewax recovery stores it.

    offset: the first byte not yet handed on; the start of a line unless `skipping`;
    skipping: the offset is inside a line too long to store, to be skipped to its newline;
    inode: the inode it was last read through, preferred among copies with one identity.
    """

    offset: int
    skipping: bool = False
    inode: int = 0


class _Changed(Exception):
    """The file under an open descriptor was truncated or rewritten."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Lines:
    """Cuts the bytes of one input into chunks of complete lines from `offset`: a line waits
    for its newline, and one over MAX_LINE_BYTES is handed on just long enough to be
    rejected, the rest of it skipped without being held in memory."""

    def __init__(self, source: str, identity: str, offset: int, skipping: bool) -> None:
        self.source = source
        self.identity = identity
        self.offset = offset
        self.skipping = skipping
        self.partial = b""  # the start of a line whose newline has not arrived yet
        self._salt = source_salt(identity)

    def take(self, data: bytes) -> list[Chunk]:
        if self.skipping:
            data = self._skip_to_newline(data)
        chunks = []
        data = self.partial + data
        end = data.rfind(b"\n") + 1
        self.partial = data[end:]
        if end:
            chunks.append(self._chunk(data[:end]))
        if len(self.partial) > MAX_LINE_BYTES:
            chunks.append(
                self._chunk(self.partial[: MAX_LINE_BYTES + 1], length=len(self.partial))
            )
            self.partial = b""
            self.skipping = True
        return chunks

    def cut(self) -> list[Chunk]:
        """The unterminated last line, handed on to be dead-lettered (the input is done)."""
        if not self.partial:
            return []
        chunk = self._chunk(self.partial, cut=True)
        self.partial = b""
        return [chunk]

    def _chunk(self, data: bytes, *, length: int | None = None, cut: bool = False) -> Chunk:
        chunk = Chunk(self.source, self.offset, data, self._salt, self.identity, cut)
        self.offset += len(data) if length is None else length
        return chunk

    def _skip_to_newline(self, data: bytes) -> bytes:
        end = data.find(b"\n") + 1
        if end == 0:
            self.offset += len(data)
            return b""
        self.offset += end
        self.skipping = False
        return data[end:]


class _Reader(_Lines):
    """One open file of a partition, handing on complete lines from its offset."""

    def __init__(self, found: Found, state: FileState, *, now: float) -> None:
        super().__init__(str(found.path), found.identity, state.offset, state.skipping)
        self.live = found.live
        self.mtime = found.mtime
        self._compressed = found.compressed
        opened = gzip.open(found.path) if found.compressed else found.path.open("rb")  # noqa: SIM115
        self._file = cast(IO[bytes], opened)
        self._inode = os.fstat(self._file.fileno()).st_ino
        if self._inode != found.inode:
            # The listing is up to RESCAN_EVERY old: the name now holds another file (a
            # rotation renamed `api.log.2.gz` on and made a new one). Not this file, not now.
            self._file.close()
            raise _Changed
        self._file.seek(state.offset)
        self.grew_at = now
        self._at_end = False  # the last read found nothing more

    def state(self) -> FileState:
        return FileState(self.offset, self.skipping, self._inode)

    def lag(self) -> int:
        if self._compressed:
            return 0
        return max(0, os.fstat(self._file.fileno()).st_size - self.offset)

    def read(self, now: float) -> list[Chunk]:
        """Complete lines read on from the offset ([] at the end of the file for now)."""
        data = self._file.read(CHUNK_BYTES)
        if not self._compressed:  # a .gz is written once
            self._check_unchanged()
        self._at_end = not data
        if not data:
            return []
        self.grew_at = now
        return self.take(data)

    def drained(self) -> bool:
        """Whether all the file holds now is read (a reader behind is not quiet, however
        long ago it last read)."""
        if self._compressed:
            return self._at_end
        try:
            self._check_unchanged()
        except _Changed:  # truncated: the rest is in a copy, if anywhere; the next read says
            return False
        return os.fstat(self._file.fileno()).st_size == self.offset + len(self.partial)

    def _check_unchanged(self) -> None:
        """Raise _Changed when the file is now shorter than what was read, or starts with
        another first line: what was just read may not belong to this file."""
        fd = self._file.fileno()
        if os.fstat(fd).st_size < self.offset + len(self.partial):
            raise _Changed
        if fingerprint(head_of(fd), rotated=not self.live) != self.identity:
            raise _Changed

    def close(self) -> None:
        self._file.close()


PartitionState = dict[str, FileState]


class _FilesPartition(StatefulSourcePartition[Chunk, PartitionState]):
    """The files whose identity hashes to partition `index` of `partitions`; see the module
    docstring."""

    def __init__(
        self,
        index: int,
        scanner: Scanner,
        state: PartitionState | None,
        *,
        once: bool,
        rotate_wait: float,
        read_from_end: bool,
        counters: Counters,
        partitions: int = PARTITIONS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._index = index
        self._partitions = partitions
        self._scanner = scanner
        self._files: PartitionState = dict(state or {})
        self._readers: dict[str, _Reader] = {}
        self._seen: dict[str, float] = {}  # identity -> when last listed (this run's clock)
        self._once = once
        self._rotate_wait = rotate_wait
        # --read-from end: files already there when a partition first runs, without state
        self._skip_existing = read_from_end and state is None
        self._counters = counters
        self._clock = clock
        self._wall_clock = wall_clock
        self._scanned_at: float | None = None
        # a file was not what the listing said (rotated on since): list again at once, as
        # logrotate may move or delete the copy that holds the rest before the next listing
        self._relist = False
        self._listing = -1  # the scanner's version of the listing last looked at
        self._cut: list[Chunk] = []
        self._awake: datetime | None = None
        self._finished = False

    def next_batch(self) -> list[Chunk]:
        if self._finished:
            raise StopIteration
        now = self._clock()
        if (
            self._scanned_at is None
            or self._relist
            or (not self._once and now - self._scanned_at >= RESCAN_EVERY)
            or (not self._once and self._scanner.newer_than(self._listing))
        ):
            self._rescan(now)
        if self._cut:
            chunks, self._cut = self._cut, []
            return chunks
        for reader in sorted(self._readers.values(), key=lambda r: (r.live, r.mtime)):
            try:
                chunks = reader.read(now)
            except (EOFError, OSError) as exc:
                # a .gz still being written by logrotate: read on once it is whole
                log.info("cannot read %s yet: %s", reader.source, exc)
                self._close(reader)
                continue
            except _Changed:
                # read on from a copy with this identity if the next listing finds one
                log.info("%s was truncated or rewritten under its name", reader.source)
                self._close(reader)
                self._relist = True
                continue
            self._counters.set_lag(reader.identity, reader.lag())
            if chunks:
                self._awake = None
                return chunks
        if self._once:
            self._finish()
        # with no open file, only a listing can bring work: the next full one, or a file
        # listed without a first line getting one
        busy = self._readers or self._scanner.waiting
        self._awake = self._wall_clock() + (IDLE_POLL if busy else _RESCAN)
        return []

    def _finish(self) -> None:
        """--once: every file is read to its last newline."""
        for reader in self._readers.values():
            if reader.partial:
                log.warning(
                    "%s ends in an unterminated line (%d bytes): left for the next run",
                    reader.source,
                    len(reader.partial),
                )
        self._finished = True
        self._close_readers()
        raise StopIteration

    def _owned(self, found: Found) -> bool:
        return partition_of(found.identity, self._partitions) == self._index

    def _rescan(self, now: float) -> None:
        fresh, self._relist = self._relist, False
        self._scanned_at = now
        listed: dict[str, list[Found]] = {}
        listing = self._scanner.scan(fresh=fresh)
        self._listing = self._scanner.version
        for found in listing:
            if self._owned(found):
                listed.setdefault(found.identity, []).append(found)
        for identity, copies in listed.items():
            self._seen[identity] = now
            reader = self._readers.get(identity)
            if reader is not None:
                reader.live = any(found.live for found in copies)
                continue
            state = self._files.get(identity)
            if state is None:
                start = max(found.size for found in copies) if self._skip_existing else 0
                state = self._files[identity] = FileState(start)
            self._open(copies, state, now)
        for reader in list(self._readers.values()):
            if reader.identity not in listed:  # renamed out of sight or deleted: not live
                reader.live = False
            quiet = now - reader.grew_at >= self._rotate_wait and reader.drained()
            if not reader.live and quiet:
                self._cut += reader.cut()
                self._close(reader)
        for identity in list(self._files):
            unlisted_for = now - self._seen.setdefault(identity, now)
            if unlisted_for > FORGET_AFTER and identity not in self._readers:
                del self._files[identity], self._seen[identity]
        self._skip_existing = False

    def _open(self, copies: list[Found], state: FileState, now: float) -> None:
        """Open the file at its offset when it has more to read; of several copies, the one
        read before (same inode), else an uncompressed one (logrotate may still be writing
        the .gz), else the live one, else the newest."""
        copies = sorted(
            copies, key=lambda f: (f.inode == state.inode, not f.compressed, f.live, f.mtime)
        )
        found = copies[-1]
        if found.size < state.offset:
            log.warning("%s is shorter than where it was read to; not read again", found.path)
            return
        if found.size == state.offset and not (found.live and not self._once):
            return  # nothing more, and not a file that grows
        try:
            self._readers[found.identity] = _Reader(found, state, now=now)
        except _Changed:
            log.debug("%s was replaced since it was listed", found.path)
            self._relist = True
        except OSError as exc:
            log.warning("cannot read %s: %s", found.path, exc)

    def _close(self, reader: _Reader) -> None:
        self._files[reader.identity] = reader.state()
        self._readers.pop(reader.identity).close()
        self._counters.set_lag(reader.identity, 0)

    def _close_readers(self) -> None:
        for reader in list(self._readers.values()):
            self._close(reader)

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> PartitionState:
        return {**self._files, **{i: r.state() for i, r in self._readers.items()}}

    def close(self) -> None:
        self._close_readers()


class LogFileSource(FixedPartitionedSource[Chunk, PartitionState]):
    """Files of the input patterns and their rotated siblings, in PARTITIONS partitions;
    in a cluster, process p of n lists the partitions whose index is p mod n, so the files
    spread over the processes by their partition (Bytewax spreads them over its workers)."""

    def __init__(
        self,
        patterns: list[str],
        *,
        excludes: Sequence[str] = (),
        once: bool,
        rotate_wait: float,
        read_from_end: bool = False,
        counters: Counters,
        process_id: int = 0,
        processes: int = 1,
    ) -> None:
        self._scanner = Scanner(patterns, excludes)
        self._process_id = process_id
        self._processes = processes
        self._once = once
        self._rotate_wait = rotate_wait
        self._read_from_end = read_from_end
        self._counters = counters

    def list_parts(self) -> list[str]:
        return [
            f"files-{index:02d}"
            for index in range(PARTITIONS)
            if index % self._processes == self._process_id
        ]

    def build_part(
        self, step_id: str, for_part: str, resume_state: PartitionState | None
    ) -> _FilesPartition:
        return _FilesPartition(
            int(for_part.removeprefix("files-")),
            self._scanner,
            resume_state,
            once=self._once,
            rotate_wait=self._rotate_wait,
            read_from_end=self._read_from_end,
            counters=self._counters,
        )


class _StdinPartition(StatefulSourcePartition[Chunk, None]):
    """Standard input: read as it comes, nothing saved. A restart cannot read again what an
    earlier run read, so lines in flight at a crash are lost; each run has its own salt."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        os.set_blocking(fd, False)
        self._lines = _Lines("-", "stdin-" + uuid.uuid4().hex[:12], 0, False)
        self._awake: datetime | None = None

    def next_batch(self) -> list[Chunk]:
        try:
            data = os.read(self._fd, CHUNK_BYTES)
        except BlockingIOError:
            self._awake = _utcnow() + IDLE_POLL
            return []
        if not data:  # the end: a last line without newline is dead-lettered, as in files
            cut = self._lines.cut()
            if not cut:
                raise StopIteration
            return cut
        self._awake = None
        return self._lines.take(data)

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> None:
        return None


class StdinSource(FixedPartitionedSource[Chunk, None]):
    """`--input -`: one partition reading standard input until it ends."""

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd

    def list_parts(self) -> list[str]:
        return ["stdin"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StdinPartition:
        return _StdinPartition(self._fd)
