"""Fixtures: a real `influxd` (Debian package `influxdb`) for the whole session, a fresh
database and state directory per test. Integration tests never skip: no influxd is a failure."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from logpipe.config import Settings, load_settings
from logpipe.influxd import LocalInfluxd, find_influxd, free_port
from logpipe.serve import create_app

_databases = itertools.count()

# The tests stop logpipe's processes as a user would, with Ctrl-C (SIGINT). A shell that
# starts the suite in the background (a CI runner, `nohup …&`) ignores SIGINT, children
# inherit that, and Python does not install its Ctrl-C handler in a process started so:
# every `logpipe process` would then ignore the tests' Ctrl-C. A handler here (not ignored)
# is reset to the default in each child, which then installs its own.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxd]:
    if find_influxd() is None:
        pytest.fail("integration tests need `influxd` on PATH: apt-get install influxdb")
    server = LocalInfluxd(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(influxd: LocalInfluxd, tmp_path: Path) -> Settings:
    """Settings pointing at the session's server, with a database of this test's own."""
    return load_settings(
        influx_url=influxd.url,
        influx_database=f"test_{next(_databases)}",
        state_dir=tmp_path / "state",
        snapshot_interval=0.5,
    )


def logpipe_env(settings: Settings) -> dict[str, str]:
    """The LOGPIPE_* variables that point a command at these settings' server and state."""
    return {
        "LOGPIPE_INFLUX_URL": settings.influx_url,
        "LOGPIPE_INFLUX_DATABASE": settings.influx_database,
        "LOGPIPE_STATE_DIR": str(settings.state_dir),
        "LOGPIPE_SNAPSHOT_INTERVAL": str(settings.snapshot_interval),
    }


@pytest.fixture
def settings_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The same settings, also exported as LOGPIPE_* for commands run through the CLI."""
    for name, value in logpipe_env(settings).items():
        monkeypatch.setenv(name, value)
    return settings


def write_lines(
    settings: Settings, lines: list[str], *, salt: int = 0, marks: bool = True
) -> None:
    """Seed-format lines into InfluxDB, parsed and stored as the processor stores them on
    1.x: with the rollup marks of their days in the same write (without `marks`, as versions
    before rollups did)."""
    from logpipe.influx import InfluxClient
    from logpipe.process.parse import Chunk, parse_chunk
    from logpipe.rollup import marker_lines, new_token

    parsed = parse_chunk(Chunk("test", 0, "".join(f"{line}\n" for line in lines).encode(), salt))
    assert not parsed.rejects, parsed.rejects
    marked = marker_lines(parsed.days, new_token()) if marks else []
    with InfluxClient(settings) as client:
        client.ensure_database()
        if parsed.points:
            client.write("\n".join(marked + parsed.points).encode())


def running_api(settings: Settings, **app_options: Any) -> AbstractContextManager[httpx.Client]:
    """The real app on uvicorn in a thread, on a free port; yields a client for it."""
    return serving(create_app(settings, **app_options))


@contextmanager
def serving(app: Any) -> Iterator[httpx.Client]:
    """`app` on uvicorn in a thread, on a free port; yields a client for it."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def count_points(settings: Settings) -> int:
    """How many requests InfluxDB holds (0 when the database does not exist yet)."""
    from logpipe.influx import InfluxClient

    with InfluxClient(settings) as client:
        try:
            (series,) = client.query("SELECT count(latency) FROM requests")
        except Exception:  # database not created yet
            return 0
    return int(series[0]["values"][0][1]) if series else 0


def wait_until(predicate: Any, *, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def start_process(
    settings: Settings, *args: str, command: str = "process"
) -> subprocess.Popen[str]:
    """`python -m logpipe process …` (or another command) as a child, configured through
    LOGPIPE_* variables."""
    return subprocess.Popen(
        [sys.executable, "-m", "logpipe", command, *args],
        env={**os.environ, **logpipe_env(settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_process(process: subprocess.Popen[str], *, timeout: float = 20.0) -> str:
    """Ctrl-C the child; returns its output. It must exit cleanly (code 0)."""
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # never leave a child behind, even when the test fails
        process.communicate()
        raise
    assert process.returncode == 0, output
    return output


def run_process(settings: Settings, *args: str, timeout: float = 120.0) -> str:
    """`python -m logpipe process …` to its end; returns its output. It must exit with 0."""
    process = start_process(settings, *args)
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output
