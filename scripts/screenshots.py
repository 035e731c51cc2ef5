"""Take the README's screenshots of the dashboard: docs/dashboard-desktop.png (1280 px wide)
and docs/dashboard-phone.png (375 px), in the headless Chromium the browser tests use.

    nox -s screenshots      # or: python scripts/screenshots.py

The data are the generator's, from a fixed seed and first day, stored by `logpipe process
--once` into a private influxd in a temporary directory, so the pictures change only when
the page or the generator does.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import logpipe_env, run_logpipe, settings_for, start_server, stop_server  # noqa: E402

from logpipe.generate import GenerateOptions  # noqa: E402
from logpipe.generate import run as generate  # noqa: E402
from logpipe.influxd import LocalInfluxd, free_port  # noqa: E402
from tests.browser import DESKTOP, PHONE, chromium, emulate, open_page  # noqa: E402

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
            settings = settings_for(influx.url, "logpipe", work / "state")
            run_logpipe(settings, "process", "--input", str(log), "--once")
            run_logpipe(settings, "rollup")
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            serve = [sys.executable, "-m", "logpipe", "serve", "--port", str(port)]
            server = start_server(serve, logpipe_env(settings), f"{base}/healthz")
            try:
                for size, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
                    with chromium(size) as browser:
                        open_page(browser, f"{base}/{view}")
                        height = browser.execute_script("return document.body.scrollHeight")
                        emulate(browser, size[0], height)  # the whole page, one picture
                        path = docs / f"dashboard-{name}.png"
                        browser.save_screenshot(str(path))
                        print(f"{path.relative_to(ROOT)}: {size[0]} x {height}")
            finally:
                stop_server(server)


if __name__ == "__main__":
    main()
