"""Take the README's screenshots of the dashboard: docs/dashboard-desktop.png (1280 px wide)
and docs/dashboard-phone.png (375 px), in the headless Chromium the browser tests use.

    nox -s screenshots      # or: python scripts/screenshots.py

The data are the generator's, from a fixed seed and first day, stored by `logpipe process
--once` into a private influxd in a temporary directory, so the pictures change only when
the page or the generator does.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logpipe.generate import GenerateOptions  # noqa: E402
from logpipe.generate import run as generate  # noqa: E402
from logpipe.influxd import LocalInfluxd, free_port  # noqa: E402
from tests.browser import DESKTOP, PHONE, chromium, open_page  # noqa: E402

FIRST = date(2026, 10, 1)
DAYS = 30
CUSTOMER = "cust_3"


def main() -> None:
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    last = FIRST + timedelta(days=DAYS - 1)
    view = f"?customer={CUSTOMER}&from_date={FIRST}&to_date={last}"
    with tempfile.TemporaryDirectory(prefix="logpipe-screenshots-") as tmp:
        work = Path(tmp)
        log = work / "api.log"
        options = GenerateOptions(
            rate=0, total=60_000, customers=12, seed=7, backfill_days=DAYS, start=FIRST
        )
        generate(log, options)
        with LocalInfluxd(work / "influxd") as influx:
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LOGPIPE_INFLUX_URL": influx.url,
                "LOGPIPE_STATE_DIR": str(work / "state"),
            }
            logpipe = [sys.executable, "-m", "logpipe"]
            subprocess.run(
                [*logpipe, "process", "--input", str(log), "--once"], env=env, check=True
            )
            subprocess.run([*logpipe, "rollup"], env=env, check=True)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            serve = subprocess.Popen([*logpipe, "serve", "--port", str(port)], env=env)
            try:
                _wait_ready(f"{base}/healthz")
                for size, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
                    with chromium(size) as browser:
                        open_page(browser, f"{base}/{view}")
                        height = browser.execute_script("return document.body.scrollHeight")
                        browser.execute_cdp_cmd(
                            "Emulation.setDeviceMetricsOverride",
                            {"width": size[0], "height": height, "deviceScaleFactor": 1,
                             "mobile": size[0] < 600},
                        )  # fmt: skip
                        path = docs / f"dashboard-{name}.png"
                        browser.save_screenshot(str(path))
                        print(f"{path.relative_to(ROOT)}: {size[0]} x {height}")
            finally:
                serve.terminate()
                serve.wait(10)


def _wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


if __name__ == "__main__":
    main()
