"""`logpipe process`: the Bytewax dataflow that tails log files into InfluxDB.

    read (one partition per file) -> parse (pure) -> store (batched writes + dead letters)

While following (not --once), a thread keeps the daily rollups of closed days current
(logpipe.rollup), once the dataflow has caught up.

Bytewax recovery snapshots each file's (identity, offset) every `snapshot_interval`; the sink
acknowledges a snapshot only after InfluxDB has stored every point before it. With idempotent
points this stores every valid line exactly once across crashes and restarts.
"""

from __future__ import annotations

import fcntl
import glob
import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax._bytewax import cli_main
from bytewax.dataflow import Dataflow
from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir

from logpipe.config import Settings, redact_url
from logpipe.errors import ConfigError, InputError
from logpipe.influx import InfluxClient
from logpipe.private import open_private, private_dir, refuse_link
from logpipe.process.counters import Counters, StatusReporter
from logpipe.process.follower import Follower
from logpipe.process.formats import LineFormat
from logpipe.process.parse import Chunk, Parsed, cut_line
from logpipe.process.sink import DeadLetters, InfluxSink
from logpipe.process.source import LogFileSource, StdinSource
from logpipe.rollup import supported
from logpipe.status import PROCESS_STATUS

log = logging.getLogger(__name__)
STDIN = "-"


def build_flow(
    settings: Settings,
    patterns: list[str],
    *,
    excludes: Sequence[str] = (),
    once: bool,
    counters: Counters,
    dead: DeadLetters,
    line_format: LineFormat,
    process_id: int = 0,
    processes: int = 1,
    marks: bool = False,
) -> Dataflow:
    parse_chunk = line_format.chunk_parser()

    def parse(chunk: Chunk) -> tuple[str, Parsed]:
        return chunk.source, cut_line(chunk) if chunk.cut else parse_chunk(chunk)

    source: LogFileSource | StdinSource
    if patterns == [STDIN]:
        source = StdinSource()
    else:
        source = LogFileSource(
            patterns,
            excludes=excludes,
            once=once,
            rotate_wait=settings.rotate_wait,
            read_from_end=settings.read_from == "end",
            counters=counters,
            process_id=process_id,
            processes=processes,
        )
    flow = Dataflow("logpipe")
    chunks = op.input("read", flow, source)
    parsed = op.map("parse", chunks, parse)
    sink = InfluxSink(settings, counters=counters, dead=dead, process_id=process_id, marks=marks)
    op.output("store", parsed, sink)
    return flow


def check_inputs(patterns: list[str], *, once: bool) -> None:
    """Fail early on inputs that cannot work: none given, `-` with files, a file that cannot
    be read, and with `once` a path or glob that matches no file. While following, a glob
    may match nothing yet (it is listed again every second)."""
    if not patterns:
        raise InputError("no input file given (--input PATH)")
    if STDIN in patterns and len(patterns) > 1:
        raise InputError("--input - (standard input) cannot be combined with files")
    if patterns == [STDIN]:
        return
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        files = [Path(match) for match in matches if Path(match).is_file()]
        if not files and once:
            raise InputError(f"input {pattern} does not exist or is not a file")
        if not files:
            log.warning("input %s matches no file yet; waiting for one", pattern)
        for path in files:
            try:
                path.open("rb").close()
            except OSError as exc:
                raise InputError(f"cannot read {path}: {exc.strerror}") from exc


def _recovery(settings: Settings) -> RecoveryConfig:
    """Bytewax's recovery store under the state dir, created by whichever process of a
    cluster gets there first."""
    directory = private_dir(settings.recovery_dir)
    with open_private(settings.recovery_lock_path) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not any(directory.glob("part-*")):
            init_db_dir(directory, 1)  # type: ignore[no-untyped-call]  # bytewax: no hints
    return RecoveryConfig(directory)  # type: ignore[no-untyped-call]  # bytewax: no hints


def _interrupted(exc: BytewaxRuntimeError) -> bool:
    """Whether Bytewax stopped because of Ctrl-C / SIGTERM rather than an error."""
    causes = []
    cause: BaseException | None = exc
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    return "signal received" in str(exc) or any(
        isinstance(c, KeyboardInterrupt) or "KeyboardInterrupt" in str(c) for c in causes
    )


def run(
    settings: Settings,
    patterns: list[str],
    *,
    once: bool = False,
    excludes: Sequence[str] = (),
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> Counters:
    """Process the inputs until Ctrl-C, or with `once` until every line up to EOF is stored.

    With `addresses` (every process's host:port) this process is `process_id` of a Bytewax
    cluster; the input files are spread over all workers of all processes.
    """
    if (addresses is None) != (process_id is None):
        raise ConfigError("--process-id and --addresses go together")
    if addresses is not None and process_id is not None and process_id >= len(addresses):
        raise ConfigError(f"--process-id {process_id} is not below the {len(addresses)} addresses")
    check_inputs(patterns, once=once)
    refuse_link(settings.dead_letter_path)  # opened when the first line is rejected
    if patterns == [STDIN] and addresses is not None:
        raise ConfigError("--input - (standard input) is for one process, not a cluster")
    # a bad format setting fails here, before InfluxDB is asked anything
    line_format = LineFormat.from_settings(settings.format, settings.keys, settings.timezone)
    with InfluxClient(settings) as client:
        version = client.ping()
        client.ensure_database()
    url = redact_url(settings.influx_url)
    log.info("InfluxDB %s at %s, database %r", version, url, client.database)
    counters = Counters()
    dead = DeadLetters(settings.dead_letter_path)
    flow = build_flow(
        settings,
        patterns,
        excludes=excludes,
        once=once,
        counters=counters,
        dead=dead,
        line_format=line_format,
        process_id=process_id or 0,
        processes=len(addresses) if addresses else 1,
        marks=supported(version),
    )
    # One process of a cluster builds (all of them would build the same days at once), and
    # as it cannot know what the others wrote, it reads every day's marks at every look.
    builds = not once and not process_id and supported(version) and settings.rollup_interval > 0
    written_from = counters.take_written_from if addresses is None else None
    rollups = Follower(settings, lambda: counters.lag_bytes, written_from) if builds else None
    if rollups:
        rollups.start()
    status_name = PROCESS_STATUS if process_id is None else f"process-{process_id}.json"
    with StatusReporter(counters, settings.state_dir / status_name):
        try:
            cli_main(  # type: ignore[no-untyped-call]  # bytewax's Rust entry point: no hints
                flow,
                workers_per_process=settings.workers,
                process_id=process_id,
                addresses=addresses,
                epoch_interval=timedelta(seconds=settings.snapshot_interval),
                recovery_config=_recovery(settings),
            )
        except (BytewaxRuntimeError, KeyboardInterrupt) as exc:
            # Ctrl-C / SIGTERM: Bytewax stops at once (or the interrupt lands in one of our
            # steps and comes back wrapped). What came after the last snapshot is read again
            # next time and becomes the same points, so this is a clean stop.
            if isinstance(exc, BytewaxRuntimeError) and not _interrupted(exc):
                raise
            log.info("stopped by a signal; the next run resumes from the last snapshot")
        finally:
            if rollups:
                rollups.stop()
            dead.close()
    return counters
