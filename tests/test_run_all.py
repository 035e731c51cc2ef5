"""`logpipe run-all` on a machine where no InfluxDB runs but `influxd` is on PATH."""

from __future__ import annotations

import io
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from rich.console import Console

import logpipe.run_all
from logpipe.config import load_settings
from logpipe.errors import InfluxNotFound
from logpipe.influxd import free_port
from logpipe.run_all.view import Snapshot, Watcher, busiest_first, render
from tests.conftest import running_api, write_lines


def _processes() -> dict[int, tuple[int, bytes]]:
    """{pid: (parent pid, command line)} of every process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            found[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), command)
    return found


def _children(pid: int) -> set[int]:
    """Every descendant of `pid`."""
    parents = {child: parent for child, (parent, _) in _processes().items()}
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


def _read_all(fd: int, into: list[bytes]) -> None:
    """Drain the terminal's output, so the child never blocks on a full pty buffer."""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        into.append(data)


def test_run_all_in_a_terminal_starts_influxdb_flows_lines_and_stops_cleanly_on_sigint(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "LOGPIPE_INFLUX_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "TERM": "xterm-256color",
        "COLUMNS": "100",
    }
    controller, terminal = pty.openpty()
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "logpipe", "run-all", "--rate", "200", "--customers", "3",
         "--port", str(port), "--state-dir", str(tmp_path / "state")],
        env=env, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    screen: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(controller, screen), daemon=True)
    reader.start()
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
        assert body is not None, b"".join(screen).decode(errors="replace")[-2000:]
        assert body["days"][0]["total_requests"] > 0
        assert (tmp_path / "data" / "logpipe" / "influxdb" / "data").is_dir()
        time.sleep(2.5)  # the panel shows the customers table after its next look at the API
        children = _children(supervisor.pid)
        assert len(children) >= 4  # influxd, generate, process, serve

        supervisor.send_signal(signal.SIGINT)
        started = time.monotonic()
        supervisor.wait(timeout=15)
        assert time.monotonic() - started < 10
        assert supervisor.returncode == 0
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if supervisor.poll() is None:
            for pid in _children(supervisor.pid):
                os.kill(pid, signal.SIGKILL)
            supervisor.kill()
            supervisor.wait()
        reader.join(5)
        os.close(controller)
    shown = b"".join(screen).decode(errors="replace")
    assert "logpipe run-all" in shown and "stored" in shown and "lines/s" in shown
    assert "cust_1" in shown  # the per-customer table, from the API


def test_a_child_that_dies_is_reported_and_the_rest_stop(tmp_path):
    port = free_port()
    with socket.socket() as taken:  # the API's port is taken: serve dies at start
        taken.bind(("127.0.0.1", port))
        taken.listen()
        env = {
            **os.environ,
            "LOGPIPE_INFLUX_URL": f"http://127.0.0.1:{free_port()}",
            "XDG_DATA_HOME": str(tmp_path / "data"),
        }
        result = subprocess.run(
            [sys.executable, "-m", "logpipe", "run-all", "--port", str(port),
             "--state-dir", str(tmp_path / "state")],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert "serve exited with code" in result.stderr
    assert not [p for p in _children_of_nobody(tmp_path) if _alive(p)]


def _children_of_nobody(tmp_path) -> list[int]:
    """Processes still running with this test's state directory on their command line."""
    mark = str(tmp_path).encode()
    return [pid for pid, (_, command) in _processes().items() if mark in command]


def test_the_panel_shows_the_influxdb_url_without_its_password(tmp_path):
    view = Snapshot(
        influx_url="http://admin:s3cret@[::1]:8086",
        influx_version="1.8.10",
        api="http://127.0.0.1:8000",
        log_file=tmp_path / "api.log",
    )
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(render(view))
    shown = console.export_text()
    assert "http://admin:***@[::1]:8086 (InfluxDB 1.8.10)" in shown
    assert "s3cret" not in shown + view.influx


def test_no_influxdb_anywhere_is_explained_without_the_password(tmp_path, monkeypatch):
    monkeypatch.setattr(logpipe.run_all, "find_influxd", lambda: None)
    settings = load_settings(
        influx_url=f"http://admin:s3cret@127.0.0.1:{free_port()}", state_dir=tmp_path
    )
    with pytest.raises(InfluxNotFound, match=r"no InfluxDB answers at http://admin:\*\*\*@"):
        logpipe.run_all._start_influx(settings)


def test_busiest_first_orders_by_requests_then_customer_id():
    rows = [("cust_2", 5, 99.0), ("cust_10", 7, 98.0), ("cust_1", 5, 97.0), ("cust_3", 0, 1.0)]
    assert busiest_first(rows) == [
        ("cust_10", 7, 98.0),
        ("cust_1", 5, 97.0),
        ("cust_2", 5, 99.0),
        ("cust_3", 0, 1.0),
    ]


def test_the_panel_shows_todays_busiest_customers_first_and_the_dashboard(settings, tmp_path):
    today = datetime.now(timezone.utc).date()
    requests = {"c1": 2, "c2": 7, "c3": 7, "c4": 1, "c5": 3, "c6": 4, "c7": 5, "c8": 6, "c9": 1}
    lines = [
        f"{today} 00:00:{n:02} {customer} /api/v1/orders 200 0.1"
        for customer, count in requests.items()
        for n in range(count)
    ]
    yesterday = today - timedelta(days=1)  # its busiest has no request today: not shown
    lines += [f"{yesterday} 12:00:{n:02} c0 /api/v1/orders 200 0.1" for n in range(50)]
    write_lines(settings, lines)
    with running_api(settings) as client:
        view = Snapshot(
            influx_url=settings.influx_url,
            influx_version="1.6",
            api=str(client.base_url).rstrip("/"),
            log_file=tmp_path / "api.log",
        )
        watcher = Watcher(view, state_dir=tmp_path, api_url=view.api)
        try:
            shown = watcher.look().customers
        finally:
            watcher.close()
    assert [(customer, count) for customer, count, _, _ in shown] == [
        ("c2", 7), ("c3", 7), ("c8", 6), ("c7", 5), ("c6", 4), ("c5", 3), ("c1", 2), ("c4", 1),
    ]  # fmt: skip
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(render(view))
    text = console.export_text()
    assert f"dashboard  {view.api}/" in text and f"API        {view.api}/docs" in text
    rows = [line.split("│")[2].strip() for line in text.splitlines() if "│ c" in line]
    assert rows == ["c2", "c3", "c8", "c7", "c6", "c5", "c1", "c4"]
