"""`logpipe process`: the Bytewax dataflow that tails log files into InfluxDB.

    read (one partition per file) -> parse (pure) -> store (batched writes + dead letters)

Bytewax recovery snapshots each file's (identity, offset) every `snapshot_interval`; the sink
acknowledges a snapshot only after InfluxDB has stored every point before it. With idempotent
points this stores every valid line exactly once across crashes and restarts.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax._bytewax import cli_main
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir

from logpipe.config import Settings
from logpipe.errors import InputError
from logpipe.influx import InfluxClient
from logpipe.process.counters import Counters
from logpipe.process.parse import Chunk, Parsed, parse_chunk
from logpipe.process.sink import DeadLetters, InfluxSink
from logpipe.process.source import LogFileSource

log = logging.getLogger(__name__)


def _keyed_parse(chunk: Chunk) -> tuple[str, Parsed]:
    return chunk.source, parse_chunk(chunk)


def build_flow(
    settings: Settings,
    inputs: list[Path],
    *,
    once: bool,
    counters: Counters,
    dead: DeadLetters,
) -> Dataflow:
    flow = Dataflow("logpipe")
    chunks = op.input("read", flow, LogFileSource(inputs, once=once))
    parsed = op.map("parse", chunks, _keyed_parse)
    sink = InfluxSink(settings, partitions=settings.workers, counters=counters, dead=dead)
    op.output("store", parsed, sink)
    return flow


def _check_inputs(inputs: list[Path]) -> None:
    if not inputs:
        raise InputError("no input file given (--input PATH)")
    for path in inputs:
        if not path.is_file():
            raise InputError(f"input {path} does not exist or is not a file")
        try:
            path.open("rb").close()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from exc


def _recovery(settings: Settings) -> RecoveryConfig:
    """Bytewax's recovery store under the state dir, created on the first run."""
    directory = settings.recovery_dir
    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.iterdir()):
        init_db_dir(directory, 1)
    return RecoveryConfig(directory)


def run(settings: Settings, inputs: list[Path], *, once: bool = False) -> Counters:
    """Process the inputs until Ctrl-C, or with `once` until every line up to EOF is stored."""
    _check_inputs(inputs)
    with InfluxClient(settings) as client:
        version = client.ping()
        client.ensure_database()
    log.info("InfluxDB %s at %s, database %r", version, settings.influx_url, client.database)
    counters = Counters()
    dead = DeadLetters(settings.dead_letter_path)
    flow = build_flow(settings, inputs, once=once, counters=counters, dead=dead)
    try:
        cli_main(
            flow,
            workers_per_process=settings.workers,
            epoch_interval=timedelta(seconds=settings.snapshot_interval),
            recovery_config=_recovery(settings),
        )
    finally:
        dead.close()
    return counters
