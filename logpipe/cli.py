"""The `logpipe` command line: parse flags, build Settings, call one module. Nothing more."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from logpipe import __version__
from logpipe.errors import LogpipeError

app = typer.Typer(
    help="Turn API request logs into per-customer daily statistics (Bytewax + InfluxDB).",
    no_args_is_help=True,
    rich_markup_mode=None,  # help text is plain: "[env LOGPIPE_INFLUX_URL]" must show
    pretty_exceptions_enable=False,
    add_completion=True,
)
_state = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])

# Options shared by several commands (None = keep the setting from .env / environment).
InfluxUrl = Annotated[
    Optional[str], typer.Option(help="InfluxDB URL [env LOGPIPE_INFLUX_URL]", show_default=False)
]
Database = Annotated[
    Optional[str],
    typer.Option(help="database (2.x: bucket) [env LOGPIPE_INFLUX_DATABASE]", show_default=False),
]
StateDir = Annotated[
    Optional[Path],
    typer.Option(help="offsets, dead letters, logs [env LOGPIPE_STATE_DIR]", show_default=False),
]
Port = Annotated[Optional[int], typer.Option(help="API port [env LOGPIPE_API_PORT; 8000]")]


def _friendly(command: F) -> F:
    """User mistakes and unreachable servers end in one line and exit code 1 (--debug: all)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except LogpipeError as exc:
            if _state["debug"]:
                raise
            typer.secho(f"Error: {exc}", err=True, fg="red")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"logpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="log more; show tracebacks")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print version")
    ] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)


@app.command()
@_friendly
def generate(
    output: Annotated[Path, typer.Option(help="file to append lines to")],
    rate: Annotated[
        Optional[float],
        typer.Option(
            min=0,
            help="lines per second; 0 = as fast as possible"
            " [default: 10, or 0 with --backfill-days or --start]",
            show_default=False,
        ),
    ] = None,
    total: Annotated[Optional[int], typer.Option(min=1, help="stop after N lines")] = None,
    max_lines: Annotated[Optional[int], typer.Option(min=1, help="the same as --total")] = None,
    customers: Annotated[int, typer.Option(min=1, max=100_000, help="distinct customers")] = 10,
    seed: Annotated[Optional[int], typer.Option(help="random seed, for repeatable output")] = None,
    backfill_days: Annotated[
        Optional[float],
        typer.Option(
            min=0.001, help="spread timestamps over D days (ending now, or from --start)"
        ),
    ] = None,
    start: Annotated[
        Optional[datetime],
        typer.Option(
            formats=["%Y-%m-%d"],
            help="first day of the history (UTC); with --seed, byte-identical output",
        ),
    ] = None,
    format: Annotated[str, typer.Option(help="text, json or logfmt")] = "text",
    client_error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="share of 4xx answers")
    ] = 0.10,
    server_error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="share of 5xx answers")
    ] = 0.03,
    batch_size: Annotated[
        Optional[int], typer.Option(min=1, help="write N lines at a time (with --interval)")
    ] = None,
    interval: Annotated[
        Optional[float], typer.Option(min=0.001, help="seconds between batches of --batch-size")
    ] = None,
    rotate_bytes: Annotated[
        Optional[int], typer.Option(min=1, help="rotate like logrotate past N bytes")
    ] = None,
    status_file: Annotated[Optional[Path], typer.Option(hidden=True)] = None,
) -> None:
    """Append realistic request lines to a log file, at a steady rate.

    Example: logpipe generate --output api.log --rate 5
    """
    from logpipe import generate as module

    options = module.options_from_flags(
        rate=rate,
        total=total,
        max_lines=max_lines,
        customers=customers,
        seed=seed,
        backfill_days=backfill_days,
        start=start.date() if start else None,
        client_error_rate=client_error_rate,
        server_error_rate=server_error_rate,
        format=format,
        batch_size=batch_size,
        interval=interval,
        rotate_bytes=rotate_bytes,
    )
    with module.progress(options, status_file=status_file) as on_batch:
        written = module.run(output, options, on_batch=on_batch)
    typer.echo(f"wrote {written} lines to {output}", err=True)


@app.command()
@_friendly
def process(
    input: Annotated[
        list[str],
        typer.Option(
            help="log file or glob, e.g. 'logs/*.log', listed again every second (repeatable);"
            " '-' reads standard input, which a restart cannot read again: lines not yet"
            " stored when it stops are lost"
        ),
    ],
    once: Annotated[bool, typer.Option(help="exit once everything up to EOF is stored")] = False,
    exclude: Annotated[
        Optional[list[str]], typer.Option(help="glob of paths not to read (repeatable)")
    ] = None,
    read_from: Annotated[
        Optional[str],
        typer.Option(help="files there at the first run: read from 'beginning' or 'end'"),
    ] = None,
    rotate_wait: Annotated[
        Optional[float],
        typer.Option(min=0, help="seconds a renamed-away file is read after its last write [5]"),
    ] = None,
    format: Annotated[
        Optional[str], typer.Option(help="text, json or logfmt [env LOGPIPE_FORMAT; text]")
    ] = None,
    keys: Annotated[
        Optional[str], typer.Option(help='json/logfmt keys that differ: "timestamp=ts,..."')
    ] = None,
    timezone: Annotated[
        Optional[str], typer.Option(help="zone of naive timestamps, e.g. Europe/Paris [UTC]")
    ] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Bytewax workers [1]")] = None,
    batch_size: Annotated[
        Optional[int], typer.Option(min=1, help="points per write [5000]")
    ] = None,
    flush_interval: Annotated[
        Optional[float], typer.Option(min=0.001, help="seconds a point may wait [0.2]")
    ] = None,
    process_id: Annotated[
        Optional[int], typer.Option(min=0, help="this process's index in a Bytewax cluster")
    ] = None,
    addresses: Annotated[
        Optional[str], typer.Option(help='every cluster process\'s host:port, ";"-separated')
    ] = None,
    influx_url: InfluxUrl = None,
    database: Database = None,
    state_dir: StateDir = None,
) -> None:
    """Tail log files into InfluxDB, resuming where the last run stopped.

    Example: logpipe process --input api.log --once
    """
    from logpipe import process as module
    from logpipe.config import load_settings

    settings = load_settings(
        influx_url=influx_url,
        influx_database=database,
        state_dir=state_dir,
        workers=workers,
        format=format,
        keys=keys,
        timezone=timezone,
        batch_size=batch_size,
        flush_interval=flush_interval,
        read_from=read_from,
        rotate_wait=rotate_wait,
    )
    cluster = addresses.split(";") if addresses else None
    counters = module.run(
        settings,
        input,
        once=once,
        excludes=exclude or [],
        process_id=process_id,
        addresses=cluster,
    )
    summary = counters.as_dict()
    typer.echo(
        f"read {summary['read']} lines: stored {summary['stored']}, "
        f"rejected {summary['rejected']}"
        + (f" (see {settings.dead_letter_path})" if summary["rejected"] else ""),
        err=True,
    )


@app.command()
@_friendly
def rollup(
    influx_url: InfluxUrl = None,
    database: Database = None,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="build every closed day, current or not (after another tool rewrote points)",
        ),
    ] = False,
) -> None:
    """Build the daily rollups of every closed day now (InfluxDB 1.x). `process` keeps them
    current while it follows; run this after a `process --once` backfill, or once after an
    upgrade, so the API reads closed days without sorting their points.

    Example: logpipe rollup
    """
    from logpipe import rollup as module
    from logpipe.config import load_settings

    settings = load_settings(influx_url=influx_url, influx_database=database)
    days, built, seconds = module.run(settings, rebuild=rebuild)
    typer.echo(
        f"rollups built for {days} day{'' if days == 1 else 's'}: {built} customer-days"
        f" and all customers together, in {seconds:.1f} s",
        err=True,
    )


@app.command()
@_friendly
def serve(
    host: Annotated[
        Optional[str],
        typer.Option(help="address to bind; 127.0.0.1 keeps the API private to this machine"),
    ] = None,
    port: Port = None,
    workers: Annotated[
        Optional[int], typer.Option(min=1, max=64, help="uvicorn worker processes [1]")
    ] = None,
    cache_ttl: Annotated[
        Optional[float], typer.Option(min=0, help="seconds answers are reused; 0 = off [5]")
    ] = None,
    influx_url: InfluxUrl = None,
    database: Database = None,
) -> None:
    """Serve the statistics API (OpenAPI docs at /docs).

    Example: logpipe serve --port 8000 --workers 2
    """
    from logpipe import serve as module
    from logpipe.config import load_settings

    settings = load_settings(
        api_host=host,
        api_port=port,
        api_workers=workers,
        cache_ttl=cache_ttl,
        influx_url=influx_url,
        influx_database=database,
    )
    module.run(settings)


@app.command()
@_friendly
def stats(
    customer: Annotated[
        Optional[str],
        typer.Argument(metavar="CUSTOMER", help="customer id, e.g. cust_1", show_default=False),
    ] = None,
    all_customers: Annotated[
        bool, typer.Option("--all", help="all customers together (the API's /stats)")
    ] = False,
    from_date: Annotated[
        Optional[str], typer.Option(help="first UTC day, YYYY-MM-DD [today - 29]")
    ] = None,
    to_date: Annotated[Optional[str], typer.Option(help="last UTC day, inclusive [today]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON body")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="print CSV, one row per day")] = False,
    api: Annotated[
        Optional[str],
        typer.Option(help="ask this running API, e.g. http://127.0.0.1:8000, not InfluxDB"),
    ] = None,
    api_key: Annotated[
        Optional[str],
        typer.Option(
            envvar="LOGPIPE_API_KEY",
            show_envvar=False,
            help="key sent to --api as a Bearer token [env LOGPIPE_API_KEY]",
        ),
    ] = None,
    influx_url: InfluxUrl = None,
    database: Database = None,
) -> None:
    """Daily totals, failures, uptime and latency of a customer (or --all): what the API
    answers, as a table, JSON or CSV. Exit code 1 when the range has no requests.

    Example: logpipe stats cust_1 --from-date 2026-10-01 --to-date 2026-10-07
    """
    from logpipe import stats_cli as module
    from logpipe.config import load_settings

    asked = module.asked(customer, everyone=all_customers, from_date=from_date, to_date=to_date)
    form = module.output_form(as_json=as_json, as_csv=as_csv)
    if api is None:
        settings = load_settings(influx_url=influx_url, influx_database=database)
        body = module.from_influxdb(settings, asked)
    elif influx_url or database:
        raise typer.BadParameter("--influx-url and --database read InfluxDB: not with --api")
    else:
        body = module.from_api(api, asked, api_key=api_key)
    module.show(body, form)


@app.command("run-all")
@_friendly
def run_all(
    rate: Annotated[float, typer.Option(min=0, help="generated lines per second")] = 5.0,
    customers: Annotated[int, typer.Option(min=1, help="distinct customers")] = 10,
    port: Port = None,
    generate: Annotated[bool, typer.Option(help="run the generator")] = True,
    log_file: Annotated[
        Optional[Path], typer.Option(help="the log file to write and read")
    ] = None,
    influx_url: InfluxUrl = None,
    state_dir: StateDir = None,
) -> None:
    """Generator, processor and API together, with InfluxDB, until Ctrl-C.

    Example: logpipe run-all --rate 5
    """
    from logpipe import run_all as module
    from logpipe.config import load_settings

    settings = load_settings(api_port=port, influx_url=influx_url, state_dir=state_dir)
    options = module.RunAllOptions(
        rate=rate, customers=customers, generate=generate, log_file=log_file
    )
    raise typer.Exit(module.run(settings, options))


@app.command()
@_friendly
def clean(
    yes: Annotated[bool, typer.Option("--yes", help="remove without asking")] = False,
    state_dir: StateDir = None,
) -> None:
    """Remove what run-all left: its private InfluxDB's data, recovery state, dead letters,
    logs, generated log file and status files. An InfluxDB it did not start is never touched.

    Example: logpipe clean --yes
    """
    import sys

    from logpipe import clean as module
    from logpipe.config import load_settings
    from logpipe.errors import CleanRefused

    settings = load_settings(state_dir=state_dir)
    with module.private_influxd_stopped():
        found = module.find(settings)
        if not found:
            typer.echo("nothing to remove: run-all left no files")
            return
        if not yes and not (sys.stdin and sys.stdin.isatty()):
            raise CleanRefused("nothing removed: no terminal to ask for confirmation, pass --yes")
        if not yes:
            typer.echo("\n".join(module.describe("would remove", found)))
            if not typer.confirm("Remove them?"):
                typer.echo("nothing removed")
                raise typer.Exit(1)
        for item in found:
            module.remove(item.path)
    typer.echo("\n".join(module.describe("removed", found)))


@app.command()
@_friendly
def config(
    influx_url: InfluxUrl = None,
    database: Database = None,
    state_dir: StateDir = None,
) -> None:
    """Print the effective settings and where each came from (secrets masked).

    Example: logpipe config
    """
    from rich.console import Console
    from rich.table import Table

    from logpipe.config import describe, load_settings

    flags = {"influx_url": influx_url, "influx_database": database, "state_dir": state_dir}
    settings = load_settings(**flags)
    table = Table("setting", "value", "from", box=None, pad_edge=False)
    given = frozenset(name for name, value in flags.items() if value is not None)
    for row in describe(settings, flags=given):
        table.add_row(*row)
    Console().print(table)


def main() -> None:
    """The console script: a usage mistake is one line and exit code 2, like the rest."""
    try:
        code = app(prog_name="logpipe", standalone_mode=False)
    except typer.Abort:  # Ctrl-C at a prompt
        raise SystemExit(130) from None
    except Exception as exc:
        # click's UsageError (bad flag, bad value, missing option), vendored by newer Typer
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        context = getattr(exc, "ctx", None)
        where = context.command_path if context else "logpipe"
        typer.secho(f"Error: {exc.format_message()} (see {where} --help)", err=True, fg="red")
        raise SystemExit(2) from None
    raise SystemExit(code if isinstance(code, int) else 0)
