"""The Bytewax sink: batches points, writes them to InfluxDB from a writer thread, and never
lets a recovery snapshot cover a point InfluxDB has not acknowledged."""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import httpx
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from logpipe.config import Settings
from logpipe.errors import InfluxRejected, InfluxUnavailable, LogpipeError
from logpipe.influx import InfluxClient
from logpipe.private import open_private, private_dir
from logpipe.process.counters import Counters
from logpipe.process.parse import Parsed, Reject
from logpipe.rollup import marker_lines, new_token

log = logging.getLogger(__name__)

MAX_QUEUED = 8
"""Point lists waiting for the writer; when full, the dataflow waits (bounded memory)."""
IN_FLIGHT = 2
"""Batches being written at once by one sink partition."""
MAX_BATCH_BYTES = 8 * 1024 * 1024
"""Most bytes of points in one write body; InfluxDB 1.x refuses a body over its
max-body-size (25 MB by default) with 413."""
RECENT_BYTES = 8 * 1024 * 1024
"""How much of the end of the dead-letter file is read for the keys of a replay (see
DeadLetters)."""
_STOP = object()
_LINE_BREAKS = str.maketrans({c: f"\\u{ord(c):04x}" for c in "\u0085\u2028\u2029"})


class DeadLetters:
    """Appends rejected lines as JSON lines; shared by every sink partition of the process.

    Each line is one entry: U+2028, U+2029 and U+0085, line breaks to many readers (Python's
    str.splitlines among them), are escaped like the C0 controls; other text stays readable.

    A line is dead-lettered once, even across a crash. Bytewax replays the lines read after
    the last recovery snapshot, so their rejects come again; at its first add, this reads the
    (file, offset) keys of the entries in the last RECENT_BYTES of the file and skips a reject
    with one of them. The bound: a replay covers the input read since the last snapshot (a
    second by default), whose entries are the last ones written; RECENT_BYTES holds at least
    ~1,500 entries (the raw text keeps 1,024 bytes of a line, at most 5 KB escaped) and tens
    of thousands of typical ones. Were more lines rejected in that time, the oldest of them
    would be written twice, never lost. Within one run no line is parsed twice, so the keys
    found at the start are all it needs. Rejects made here for points InfluxDB refused (file
    "") are always written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: Any = None
        self._written: set[tuple[str, int]] = set()  # (file, offset) keys found at the start

    def add(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        with self._lock:
            if self._file is None:
                self._open()
            for reject in rejects:
                if reject.file and (reject.file, reject.offset) in self._written:
                    continue  # replayed after a crash, and already here
                self._file.write(_entry(reject) + "\n")

    def _open(self) -> None:
        private_dir(self.path.parent)
        self._file = open_private(self.path, "a+")  # a link there is refused, not followed
        descriptor = self._file.fileno()
        end = os.fstat(descriptor).st_size
        start = max(0, end - RECENT_BYTES)
        tail = os.pread(descriptor, end - start, start)
        if tail and not tail.endswith(b"\n"):
            self._file.write("\n")  # a crash cut the last entry: the next starts a new line
        lines = tail.split(b"\n")
        for line in lines[1:] if start else lines:  # the first may be the end of an entry
            key = _key(line)
            if key is not None:
                self._written.add(key)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _entry(reject: Reject) -> str:
    """The JSON text of a dead-letter entry, on one line for every reader."""
    return json.dumps(reject._asdict(), ensure_ascii=False).translate(_LINE_BREAKS)


def _key(line: bytes) -> tuple[str, int] | None:
    """The (file, offset) of the entry on `line`; None for a sink's reject or a cut line."""
    try:
        entry = json.loads(line)
        return (entry["file"], entry["offset"]) if entry.get("file") else None
    except (ValueError, KeyError, AttributeError):
        return None


def backoff_delay(attempt: int, *, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


class _Writer(threading.Thread):
    """Owns one InfluxDB client. Takes point lists from a bounded queue, cuts them into
    batches of `batch_size` points and at most MAX_BATCH_BYTES (or less when a point has
    waited `flush_interval`) and writes up to IN_FLIGHT batches at once, so InfluxDB always
    has the next batch at hand.

    With `marks`, every write also carries a fresh rollup mark for each (customer, day) its
    points may touch, in the same body: what tells the builder which rollups to build again
    (see logpipe.rollup)."""

    def __init__(
        self,
        settings: Settings,
        counters: Counters,
        dead: DeadLetters,
        *,
        marks: bool = False,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        token: Callable[[], int] = new_token,
    ) -> None:
        super().__init__(name="logpipe-writer", daemon=True)
        self._client = InfluxClient(settings, transport=transport)
        self._marks = marks
        self._sleep = sleep
        self._token = token
        self._batch_size = settings.batch_size
        self._flush_interval = settings.flush_interval
        self._counters = counters
        self._dead = dead
        self._queue: queue.Queue[Any] = queue.Queue(MAX_QUEUED)
        self._senders = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="logpipe-send")
        self._in_flight: set[Future[None]] = set()
        self.error: BaseException | None = None

    def put(self, item: Any) -> None:
        """Queue (points, days) (or a flush Event); blocks while the queue is full."""
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def flush(self) -> None:
        """Return once every point put so far is acknowledged by InfluxDB."""
        done = threading.Event()
        self.put(done)
        while not done.wait(0.5):
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise LogpipeError(f"writing to InfluxDB failed: {self.error}") from self.error
        if not self.is_alive():
            raise LogpipeError("the InfluxDB writer thread stopped")

    def stop(self) -> None:
        if self.is_alive():
            self.put(_STOP)
            self.join()
        self._client.close()

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # handed to the dataflow thread by _raise_if_failed
            self.error = exc
        finally:
            self._senders.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        buffer: list[str] = []
        size = 0  # bytes of the buffer's body
        days: set[tuple[str, int]] = set()  # of the buffer's points (of whole items)
        deadline = 0.0
        while True:
            timeout = max(0.0, deadline - time.monotonic()) if buffer else None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._send(buffer, days)
                buffer, size, days = [], 0, set()
                continue
            if item is _STOP or isinstance(item, threading.Event):
                # a flush: everything so far is written and acknowledged, then say so
                self._send(buffer, days)
                buffer, size, days = [], 0, set()
                self._wait(0)
                if not isinstance(item, threading.Event):
                    return  # _STOP
                item.set()
                continue
            if not buffer:
                deadline = time.monotonic() + self._flush_interval
            points, touched = item
            days |= touched
            buffer.extend(points)
            # characters, which are the bytes of ASCII points (a body of non-ASCII ones may be
            # larger: a 413 then splits it)
            size += sum(map(len, points)) + len(points)
            while len(buffer) >= self._batch_size or size > MAX_BATCH_BYTES:
                cut = min(len(buffer), self._batch_size)
                body = sum(map(len, buffer[:cut])) + cut
                while body > MAX_BATCH_BYTES and cut > 1:  # long lines: fewer of them
                    cut //= 2
                    body = sum(map(len, buffer[:cut])) + cut
                self._send(buffer[:cut], days)
                buffer, size = buffer[cut:], size - body
                if len(buffer) <= len(points):  # what is left is the new item's
                    days = set(touched) if buffer else set()

    def _send(self, points: list[str], days: set[tuple[str, int]]) -> None:
        """Write `points` from a sender thread, once fewer than IN_FLIGHT writes are busy."""
        if points:
            self._wait(IN_FLIGHT - 1)
            marked = frozenset(days) if self._marks else frozenset()
            self._in_flight.add(self._senders.submit(self._write, points, marked))

    def _wait(self, busy: int) -> None:
        """Wait until at most `busy` writes are in flight; a failed write raises here."""
        while len(self._in_flight) > busy:
            done, self._in_flight = wait(self._in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()

    def _write(self, points: list[str], days: frozenset[tuple[str, int]]) -> None:
        if not points:
            return
        body = "\n".join(points).encode("utf-8")
        attempt = 0
        while True:
            # a new mark each attempt: a build may have read the last one meanwhile
            marks = "\n".join(marker_lines(days, self._token())).encode() + b"\n" if days else b""
            try:
                self._client.write(marks + body)
            except InfluxUnavailable as exc:
                attempt += 1
                delay = exc.retry_after or backoff_delay(attempt)
                self._counters.add(write_retries=1)
                log.warning("%s; retry %d in %.1f s", exc, attempt, delay)
                self._sleep(delay)
                continue
            except InfluxRejected as exc:
                if exc.status_code == 413 and len(points) > 1:
                    # over the server's max-body-size (lowered from its default): in halves
                    self._write_halves(points, days)
                    return
                if exc.status_code not in (400, 413):
                    raise  # 401, 403, 404: a configuration error, the same for every write
                if days:
                    # A mark at 00:00 may be refused where the points are not (a retention
                    # policy ending that day): the points come first; the API checks
                    # rollups against the points, so a missed mark costs only speed.
                    self._write(points, frozenset())
                else:
                    self._split_refused(points, exc)
                return
            finally:
                self._note(days)
            self._counters.add(stored=len(points))
            return

    def _note(self, days: frozenset[tuple[str, int]]) -> None:
        """Tell the rollup follower which days a write with marks may have changed: after
        every attempt, whatever its answer (InfluxDB keeps the valid lines of a body it
        refuses in part, marks included; one that timed out may still be applied)."""
        if days:
            self._counters.note_written(min(day for _, day in days))

    def _split_refused(self, points: list[str], exc: InfluxRejected) -> None:
        """A 400, or a 413 for one point: find the refused points by halving (rewriting a
        stored point is harmless: the same point overwrites itself) and dead-letter them with
        InfluxDB's reason."""
        if len(points) == 1:
            self._dead.add([Reject("", -1, f"refused by InfluxDB: {exc}", points[0])])
            self._counters.add(rejected=1)
            return
        self._write_halves(points, frozenset())

    def _write_halves(self, points: list[str], days: frozenset[tuple[str, int]]) -> None:
        middle = len(points) // 2
        self._write(points[:middle], days)
        self._write(points[middle:], days)


class _InfluxPartition(StatefulSinkPartition[Parsed, None]):
    def __init__(self, writer: _Writer, counters: Counters, dead: DeadLetters) -> None:
        self._writer = writer
        self._counters = counters
        self._dead = dead

    def write_batch(self, values: list[Parsed]) -> None:
        for parsed in values:
            self._counters.add(
                read=len(parsed.points) + len(parsed.rejects), rejected=len(parsed.rejects)
            )
            self._dead.add(parsed.rejects)
            if parsed.points:
                self._writer.put((parsed.points, parsed.days))

    def snapshot(self) -> None:
        # Bytewax snapshots the source offsets of this epoch together with this call: wait
        # until everything before them is stored, so a restart never skips a line.
        self._writer.flush()
        self._dead.flush()

    def close(self) -> None:
        self._writer.flush()
        self._dead.flush()
        self._writer.stop()


class InfluxSink(FixedPartitionedSink[Parsed, None]):
    """One partition (writer thread and client) per worker of this process.

    Each process lists only its own partitions and routes points to one of them, so points
    never cross to another process of a cluster: the process that parsed them writes them.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        counters: Counters,
        dead: DeadLetters,
        process_id: int = 0,
        marks: bool = False,
    ) -> None:
        self._settings = settings
        self._marks = marks
        self._workers = settings.workers
        self._process_id = process_id
        self._counters = counters
        self._dead = dead

    def list_parts(self) -> list[str]:
        # Names sort as (process, worker), so the global index is process * workers + worker.
        return [f"influx-{self._process_id:04d}-{w:04d}" for w in range(self._workers)]

    def part_fn(self, item_key: str) -> int:
        worker = zlib.crc32(item_key.encode("utf-8")) % self._workers
        return self._process_id * self._workers + worker

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _InfluxPartition:
        writer = _Writer(self._settings, self._counters, self._dead, marks=self._marks)
        writer.start()
        return _InfluxPartition(writer, self._counters, self._dead)
