"""The rollup follower: the processor's thread that keeps the daily rollups of closed days
current while it follows its inputs (see logpipe/rollup.py for the rollups themselves)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from logpipe.config import Settings
from logpipe.influx import InfluxClient
from logpipe.rollup import DayState, Rollups, to_build

log = logging.getLogger(__name__)

CAUGHT_UP_BYTES = 1 << 20
"""The processor counts as caught up when it is less than this far behind its inputs."""


class Follower(threading.Thread):
    """Keeps the rollups current while the processor follows its inputs: every
    `rollup_interval`, when the processor has caught up, builds the stale customers of the
    closed days whose marks have not changed since the last look.

    The first look reads every day's marks (an earlier run may have left days stale); the
    next ones only the days from the first one this process has written to since, or that
    was still stale: the recent days, in the normal course, however long the history.
    `written_from()` gives that first day written to (epoch s), or None, and starts anew;
    without it (other processes write too) every look reads every day."""

    def __init__(
        self,
        settings: Settings,
        lag_bytes: Callable[[], int],
        written_from: Callable[[], int | None] | None = None,
    ) -> None:
        super().__init__(name="logpipe-rollup", daemon=True)
        self._settings = settings
        self._lag_bytes = lag_bytes
        self._written_from = written_from
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Stop soon; a build cut short is harmless (its customers simply stay stale)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=2)

    def run(self) -> None:
        previous: dict[int, DayState] = {}  # nothing is quiet before a second look
        everything = True
        due: int | None = None  # the first day the next look reads; None: nothing to read
        with InfluxClient(self._settings) as client:
            rollups = Rollups(client)
            while not self._stop_event.wait(self._settings.rollup_interval):
                if self._written_from is None:  # others write too: every look reads all
                    everything = True
                elif (written := self._written_from()) is not None:
                    due = written if due is None else min(due, written)
                if due is None and not everything:
                    continue
                if self._lag_bytes() >= CAUGHT_UP_BYTES:
                    previous = {}
                    continue
                try:
                    days = rollups.scan(None if everything else due)
                except Exception as exc:  # InfluxDB away, say: the next round tries again
                    log.warning("rollups: cannot read the marks: %s", exc)
                    previous = {}
                    continue
                wanted = to_build(days, before=rollups.closed_before(), previous=previous)
                previous = days
                everything = False
                # what stays stale (today, a day still written to, a build that fails) is
                # read again next time; the days built now once more, as current
                due = min((day for day, state in days.items() if state.stale()), default=None)
                if wanted:
                    failed = rollups.build_all(wanted)
                    log.info(
                        "rollups: built %d of %d days", len(wanted) - len(failed), len(wanted)
                    )
