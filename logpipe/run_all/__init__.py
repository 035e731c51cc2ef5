"""`logpipe run-all`: generator, processor and API on one laptop, InfluxDB included.

Each part runs as a child process (`python -m logpipe ...`), so they use separate cores and
one crash is reported instead of taking the others down. Stopping is orderly: generator,
then the processor (which stores what was written), then the API, then a private InfluxDB.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live

from logpipe.config import Settings, default_data_dir, redact_url
from logpipe.errors import InfluxNotFound, InfluxUnavailable
from logpipe.influx import InfluxClient
from logpipe.influxd import LocalInfluxd, find_influxd, stop_process
from logpipe.private import open_private, private_dir
from logpipe.run_all.view import Snapshot, Watcher, one_line, render
from logpipe.status import GENERATE_STATUS, PROCESS_STATUS

NO_INFLUX_HELP = (
    "no InfluxDB answers at {url} and no `influxd` is on PATH. Either start one with Docker "
    "(`docker compose -f docker-compose.influx.yml up -d`, then set the LOGPIPE_INFLUX_* "
    "settings the README shows) or install the OS package (`sudo apt-get install influxdb`) "
    "and run again: run-all then starts a private one."
)


PRIVATE_INFLUXDB = "influxdb"
"""The private InfluxDB's directory, under logpipe's data dir."""
LOG_DIR = "logs"
"""The children's logs, under the state dir."""
LOG_FILE = "api_requests.log"
"""The generator's log file, under the state dir, when no --log-file is given."""


@dataclass(frozen=True)
class RunAllOptions:
    rate: float = 5.0
    customers: int = 10
    generate: bool = True
    log_file: Path | None = None


class Child:
    """One `python -m logpipe <command>` child with its output in a log file."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open_private(self.log_path) as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "logpipe", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # the supervisor decides when each child stops
            )

    def failed(self) -> str | None:
        """Why the child ended, with the end of its log; None while it runs."""
        code = self.process.poll()
        if code is None:
            return None
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        return f"{self.name} exited with code {code}; the end of {self.log_path}:\n  " + (
            "\n  ".join(tail)
        )

    def stop(self, timeout: float) -> None:
        """SIGINT (a clean Ctrl-C), then SIGKILL if it has not ended within `timeout`."""
        stop_process(self.process, signal.SIGINT, timeout)


STOP_SECONDS = {"generate": 1.0, "process": 3.0, "serve": 2.0}
"""How long each child may take to stop; with the drain and InfluxDB, under 10 s in all."""
DRAIN_SECONDS = 2.0
INFLUX_STOP_SECONDS = 2.0


def _start_influx(settings: Settings) -> tuple[str, str, LocalInfluxd | None]:
    """(URL, version, private server or None): the configured InfluxDB when it answers,
    else a private one, else InfluxNotFound."""
    try:
        with InfluxClient(settings) as client:
            return settings.influx_url, client.ping(), None
    except InfluxUnavailable:
        if find_influxd() is None:
            url = redact_url(settings.influx_url)
            raise InfluxNotFound(NO_INFLUX_HELP.format(url=url)) from None
    server = LocalInfluxd(default_data_dir() / PRIVATE_INFLUXDB).start()
    return server.url, server.version, server


def _commands(settings: Settings, options: RunAllOptions, log_file: Path) -> list[list[str]]:
    """The children's command lines, in pipeline order (which is also the stopping order)."""
    generate = ["generate", "--output", str(log_file), "--rate", str(options.rate)]
    generate += ["--customers", str(options.customers)]
    generate += ["--status-file", str(settings.state_dir / GENERATE_STATUS)]
    return [
        *([generate] if options.generate else []),
        ["process", "--input", str(log_file)],
        ["serve", "--host", settings.api_host, "--port", str(settings.api_port)],
    ]


def _drain(watcher: Watcher) -> None:
    """After the generator stopped: give the processor a moment to store what is left."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        view = watcher.look()
        if view.lag_bytes == 0 and view.read == view.stored + view.rejected:
            return
        time.sleep(0.2)


def run(
    settings: Settings,
    options: RunAllOptions,
    *,
    console: Console | None = None,
) -> int:
    """Run until Ctrl-C or SIGTERM (exit code 0) or until a child dies (exit code 1)."""
    console = console or Console(stderr=True)
    log_dir = private_dir(settings.state_dir / LOG_DIR)
    log_file = options.log_file or settings.state_dir / LOG_FILE
    log_file.touch()  # the generator's, read by the processor: made as `generate` makes it
    for stale in (GENERATE_STATUS, PROCESS_STATUS):
        (settings.state_dir / stale).unlink(missing_ok=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    url, version, server = _start_influx(settings)
    env = {**os.environ, "LOGPIPE_INFLUX_URL": url, "LOGPIPE_STATE_DIR": str(settings.state_dir)}
    api = f"http://{settings.api_host}:{settings.api_port}"
    view = Snapshot(influx_url=url, influx_version=version, api=api, log_file=log_file)
    watcher = Watcher(view, state_dir=settings.state_dir, api_url=api)
    children: list[Child] = []
    try:
        for command in _commands(settings, options, log_file):
            children.append(Child(command[0], command, env=env, log_dir=log_dir))
        if not console.is_terminal:
            console.print(
                f"InfluxDB {view.influx}, dashboard {api}/, API {api}/docs, logs in {log_dir}"
            )
        return _watch(children, watcher, console)
    except KeyboardInterrupt:
        return 0
    finally:
        for child in children:
            child.stop(STOP_SECONDS[child.name])
            if child.name == "generate":
                _drain(watcher)
        watcher.close()
        if server is not None:
            server.stop(timeout=INFLUX_STOP_SECONDS)


def _watch(children: list[Child], watcher: Watcher, console: Console) -> int:
    """Refresh the panel (or a line every 5 s) until a child dies: then say why, return 1."""
    live = Live(render(watcher.look()), console=console, refresh_per_second=2)
    last_line = 0.0
    with live if console.is_terminal else contextlib.nullcontext():
        while True:
            view = watcher.look()
            for child in children:
                view.problem = child.failed()
                if view.problem:
                    break
            if console.is_terminal:
                live.update(render(view))
            elif time.monotonic() - last_line >= 5 or view.problem:
                last_line = time.monotonic()
                console.print(one_line(view))
            if view.problem:
                if not console.is_terminal:
                    console.print(view.problem)
                return 1
            time.sleep(0.5)
