"""`logpipe run-all` on a machine where no InfluxDB runs but `influxd` is on PATH."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

from logpipe.influxd import free_port


def _children(pid: int) -> set[int]:
    """Every descendant of `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_run_all_starts_influxdb_flows_lines_and_stops_cleanly_on_sigint(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "LOGPIPE_INFLUX_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logpipe",
            "run-all",
            "--rate",
            "200",
            "--customers",
            "3",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    today = datetime.now(timezone.utc).date().isoformat()
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and supervisor.poll() is None:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/customers/cust_1/stats?from_date={today}", timeout=2
                )
                if response.status_code == 200:
                    body = response.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert body is not None, "the API never answered with stats"
        assert body["days"][0]["total_requests"] > 0
        assert (tmp_path / "data" / "logpipe" / "influxdb" / "data").is_dir()
        children = _children(supervisor.pid)
        assert len(children) >= 4  # influxd, generate, process, serve

        supervisor.send_signal(signal.SIGINT)
        started = time.monotonic()
        output, _ = supervisor.communicate(timeout=15)
        assert time.monotonic() - started < 10
        assert supervisor.returncode == 0, output
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if supervisor.poll() is None:
            for pid in _children(supervisor.pid):
                os.kill(pid, signal.SIGKILL)
            supervisor.kill()
            supervisor.wait()
