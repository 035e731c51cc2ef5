"""Start and stop a private InfluxDB 1.x server (`influxd` on PATH) bound to 127.0.0.1.

`run-all` uses it when no InfluxDB answers; the test suite uses it for a throw-away server.

influxd 1.x does not lock its data directory, so the server is given one: an exclusive
`flock` on LOCK_FILE in the directory, taken here and inherited by the influxd process, which
holds it until it ends however it ends (SIGKILL included; our own copy is closed once it has
started). A second server on the same directory is refused, and `logpipe clean` takes the
lock to know that no server uses the files it removes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from logpipe.errors import InfluxNotFound, InfluxUnavailable
from logpipe.private import open_private, private_dir

LOCK_FILE = "influxd.lock"

_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  index-version = "inmem"

[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  pprof-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
"""


def stop_process(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Send `sig`, then SIGKILL if the process has not ended within `timeout`; reap it."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_influxd() -> str | None:
    return shutil.which("influxd")


def lock_data_dir(root: Path) -> int | None:
    """A descriptor holding the exclusive lock of the data directory `root` (made if
    missing), or None while a server started here (or `logpipe clean`) holds it. Closing
    the descriptor, or ending the process holding it, releases the lock."""
    with open_private(private_dir(root) / LOCK_FILE) as file:
        descriptor = os.dup(file.fileno())  # the TextIO closes its own; this one stays
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(descriptor)
        if isinstance(exc, BlockingIOError):  # LOCK_NB: another holds it
            return None
        raise
    return descriptor


class LocalInfluxd:
    """An `influxd` child process with its own data directory and free ports."""

    def __init__(self, root: Path, *, binary: str | None = None, port: int | None = None):
        self.root = root
        found = binary or find_influxd()
        if found is None:
            raise InfluxNotFound("no `influxd` on PATH (Debian/Ubuntu: apt-get install influxdb)")
        self.binary = found
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "influxd.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.version = "unknown"
        """What the server says it is, once started."""

    def start(self, *, timeout: float = 30.0) -> LocalInfluxd:
        """Start the server, or leave it running if this object already started it (a
        second child would hold the data directory, and the first one would be lost)."""
        if self._process is not None and self._process.poll() is None:
            return self
        lock = lock_data_dir(self.root)
        if lock is None:
            raise InfluxUnavailable(
                f"another influxd uses {self.root} (or `logpipe clean` empties it): stop it first"
            )
        config = self.root / "influxdb.conf"
        try:
            with open_private(config, "w") as file:
                file.write(_CONFIG.format(root=self.root, port=self.port, rpc_port=free_port()))
            with open_private(self.log_path) as log:
                self._process = subprocess.Popen(
                    [self.binary, "-config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    pass_fds=(lock,),  # influxd holds the lock for as long as it runs
                    start_new_session=True,  # Ctrl-C in a terminal reaches us, not influxd
                )
        finally:
            os.close(lock)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-1500:]
                raise InfluxUnavailable(f"influxd exited at start ({self.log_path}):\n{tail}")
            try:
                answer = httpx.get(f"{self.url}/ping", timeout=1.0)
                if answer.status_code == 204:
                    self.version = answer.headers.get("X-Influxdb-Version", "unknown")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise InfluxUnavailable(f"influxd did not answer on {self.url} within {timeout:.0f} s")

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`) and reap it."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, signal.SIGTERM, timeout)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> LocalInfluxd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
