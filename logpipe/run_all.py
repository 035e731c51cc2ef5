"""`logpipe run-all`: generator, processor and API on one laptop, InfluxDB included.

Each part runs as a child process (`python -m logpipe ...`), so they use separate cores and
one crash is reported instead of taking the others down. Stopping is orderly: generator,
then the processor (which stores what was written), then the API, then a private InfluxDB.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from logpipe.config import Settings, default_data_dir
from logpipe.errors import InfluxNotFound, InfluxUnavailable
from logpipe.influx import InfluxClient
from logpipe.influxd import LocalInfluxd, find_influxd

STOP_TIMEOUT = 8.0
NO_INFLUX_HELP = (
    "no InfluxDB answers at {url} and no `influxd` is on PATH. Either start one with Docker "
    "(`docker compose -f docker-compose.influx.yml up -d`, then set the LOGPIPE_INFLUX_* "
    "settings the README shows) or install the OS package (`sudo apt-get install influxdb`) "
    "and run again: run-all then starts a private one."
)


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
        with self.log_path.open("ab") as log:
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
        return f"{self.name} exited with code {code}:\n  " + "\n  ".join(tail)

    def stop(self) -> None:
        """SIGINT (a clean Ctrl-C), then SIGKILL if it has not ended in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _start_influx(settings: Settings) -> tuple[str, LocalInfluxd | None]:
    """The configured InfluxDB when it answers, else a private one, else InfluxNotFound."""
    try:
        with InfluxClient(settings) as client:
            client.ping()
        return settings.influx_url, None
    except InfluxUnavailable:
        if find_influxd() is None:
            raise InfluxNotFound(NO_INFLUX_HELP.format(url=settings.influx_url)) from None
    server = LocalInfluxd(default_data_dir() / "influxdb").start()
    return server.url, server


def _commands(settings: Settings, options: RunAllOptions, log_file: Path) -> list[list[str]]:
    """The children's command lines, in pipeline order (which is also the stopping order)."""
    generate = ["generate", "--output", str(log_file), "--rate", str(options.rate)]
    generate += ["--customers", str(options.customers)]
    return [
        *([generate] if options.generate else []),
        ["process", "--input", str(log_file)],
        ["serve", "--host", settings.api_host, "--port", str(settings.api_port)],
    ]


def _watch(children: list[Child], report: Callable[[str], None]) -> int:
    while True:
        for child in children:
            reason = child.failed()
            if reason:
                report(reason)
                return 1
        time.sleep(0.5)


def run(
    settings: Settings, options: RunAllOptions, *, report: Callable[[str], None] = print
) -> int:
    """Run until Ctrl-C or SIGTERM (exit code 0) or until a child dies (exit code 1)."""
    log_dir = settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = options.log_file or settings.state_dir / "api_requests.log"
    log_file.touch()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    url, server = _start_influx(settings)
    env = {**os.environ, "LOGPIPE_INFLUX_URL": url, "LOGPIPE_STATE_DIR": str(settings.state_dir)}
    children: list[Child] = []
    try:
        for command in _commands(settings, options, log_file):
            children.append(Child(command[0], command, env=env, log_dir=log_dir))
        report(
            f"InfluxDB {url}, API http://{settings.api_host}:{settings.api_port}/docs, "
            f"log file {log_file}, logs in {log_dir}. Ctrl-C stops."
        )
        return _watch(children, report)
    except KeyboardInterrupt:
        report("stopping…")
        return 0
    finally:
        for child in children:
            child.stop()
        if server is not None:
            server.stop()
