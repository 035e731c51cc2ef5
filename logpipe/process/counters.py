"""Pipeline counters shared by the threads of one `process` run, and their reporting."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

log = logging.getLogger("logpipe.process")


@dataclass
class Counters:
    read: int = 0
    stored: int = 0
    rejected: int = 0
    write_retries: int = 0
    lag_bytes: int = 0
    """Bytes between the read position and the end of each input file, summed."""
    _lag: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def set_lag(self, source: str, lag: int) -> None:
        with self._lock:
            self._lag[source] = lag
            self.lag_bytes = sum(self._lag.values())

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")
            }


class StatusReporter:
    """Writes the counters to a JSON file every second (run-all's live view reads it) and
    logs them every `log_every` seconds, from a thread, while the dataflow runs."""

    def __init__(self, counters: Counters, path: Path, *, log_every: float = 5.0) -> None:
        self._counters = counters
        self._path = path
        self._log_every = log_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logpipe-status", daemon=True)

    def __enter__(self) -> StatusReporter:
        self._path.parent.mkdir(parents=True, exist_ok=True)
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
            if time.monotonic() - last_log >= self._log_every:
                last_log = time.monotonic()
                log.info(
                    "read %(read)d, stored %(stored)d, rejected %(rejected)d, "
                    "write retries %(write_retries)d, %(lag_bytes)d bytes behind",
                    values,
                )

    def _write(self) -> dict[str, int]:
        values = self._counters.as_dict()
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps({**values, "time": time.time()}))
        temporary.replace(self._path)  # readers never see half a file
        return values
