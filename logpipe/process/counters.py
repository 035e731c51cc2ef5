"""Pipeline counters shared by the threads of one `process` run, and their reporting."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from logpipe.private import private_dir
from logpipe.status import write_status

log = logging.getLogger("logpipe.process")
LOG_EVERY = 5.0
"""Seconds between two log lines of the counters."""


@dataclass
class Counters:
    read: int = 0
    stored: int = 0
    rejected: int = 0
    write_retries: int = 0
    _lag: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    """Bytes between the read position and the end of each input file."""
    _written_from: int | None = field(default=None, repr=False, compare=False)
    """The first day (epoch s) written to with rollup marks since the rollup follower's last
    look: where its next look must begin."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def set_lag(self, source: str, lag: int) -> None:
        with self._lock:
            if lag:
                self._lag[source] = lag
            else:  # files come and go: keep only those behind
                self._lag.pop(source, None)

    def note_written(self, day: int) -> None:
        with self._lock:
            if self._written_from is None or day < self._written_from:
                self._written_from = day

    def take_written_from(self) -> int | None:
        """The first day written to since the last call (None: nothing written)."""
        with self._lock:
            day, self._written_from = self._written_from, None
            return day

    @property
    def lag_bytes(self) -> int:
        """Bytes between the read positions and the ends of the input files, summed."""
        with self._lock:
            return sum(self._lag.values())

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            values = {f.name: getattr(self, f.name) for f in fields(self) if f.name[0] != "_"}
            return {**values, "lag_bytes": sum(self._lag.values())}


class StatusReporter:
    """Writes the counters to a JSON file every second (run-all's live view reads it) and
    logs them every LOG_EVERY seconds, from a thread, while the dataflow runs."""

    def __init__(self, counters: Counters, path: Path) -> None:
        self._counters = counters
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logpipe-status", daemon=True)

    def __enter__(self) -> StatusReporter:
        private_dir(self._path.parent)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._write()

    def _run(self) -> None:
        last_log = time.monotonic()
        while not self._stop.wait(1.0):
            values = self._write()
            if time.monotonic() - last_log >= LOG_EVERY:
                last_log = time.monotonic()
                log.info(
                    "read %(read)d, stored %(stored)d, rejected %(rejected)d, "
                    "write retries %(write_retries)d, %(lag_bytes)d bytes behind",
                    values,
                )

    def _write(self) -> dict[str, int]:
        values = self._counters.as_dict()
        write_status(self._path, values)
        return values
