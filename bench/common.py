"""Shared by the benchmarks (and scripts/screenshots.py): the seed log, child processes
with their peak RSS, a server started and stopped, InfluxDB settling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from logpipe.config import Settings, load_settings
from logpipe.generate import GenerateOptions
from logpipe.generate import run as generate


@dataclass
class ChildRun:
    seconds: float
    peak_rss_mb: float
    output: str


def seed_log(path: Path, lines: int, *, seed: int, customers: int = 50) -> None:
    """The benchmarks' log: `lines` seed-format requests over the last 30 days."""
    options = GenerateOptions(
        rate=0, total=lines, customers=customers, seed=seed, backfill_days=30
    )
    generate(path, options)


def start_server(args: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    """Start a server process and return once `url` answers (below 500) within 30 s."""
    server = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise SystemExit(f"{url} did not answer")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(15)


def logpipe_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "LOGPIPE_INFLUX_URL": settings.influx_url,
        "LOGPIPE_INFLUX_DATABASE": settings.influx_database,
        "LOGPIPE_STATE_DIR": str(settings.state_dir),
    }


def _peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a running process. (os.wait4's ru_maxrss would also count the memory of the
    benchmark itself, which the child shares between fork and exec.)"""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_logpipe(settings: Settings, *args: str) -> ChildRun:
    """Run `python -m logpipe …` to the end; wall time and the child's peak RSS."""
    log = settings.state_dir / "child.log"
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    peak = 0.0
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "logpipe", *args],
            env=logpipe_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        while child.poll() is None:
            peak = max(peak, _peak_rss_mb(child.pid) or 0.0)
            time.sleep(0.02)
    seconds = time.perf_counter() - started
    output = log.read_text()
    if child.returncode != 0:
        raise SystemExit(f"logpipe {' '.join(args)} failed:\n{output}")
    return ChildRun(seconds, peak, output)


def settings_for(url: str, database: str, state_dir: Path) -> Settings:
    return load_settings(influx_url=url, influx_database=database, state_dir=state_dir)


def settle(pid: int | None, *, below: float = 0.05, timeout: float = 120.0) -> float:
    """Wait until the process uses less than `below` of a core over a second: InfluxDB
    compacts what was just written for a while after a load, and a run must not measure
    that. Returns the seconds waited."""
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cpu_seconds()
        time.sleep(1.0)
        if cpu_seconds() - before < below:
            break
    return time.monotonic() - started
