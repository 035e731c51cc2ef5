"""A real headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium:
the browser the dashboard tests look through, and the one the screenshots are taken with."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

DESKTOP = (1280, 900)
PHONE = (375, 812)
MISSING = "the browser tests need Chromium: apt-get install chromium chromium-driver"


@contextmanager
def chromium(size: tuple[int, int] = DESKTOP) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a `size` window (CSS pixels), its console log kept."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError(MISSING)
    options = webdriver.ChromeOptions()
    # Both paths given: Selenium then never runs its manager, which would look online.
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--window-size={size[0]},{size[1]}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    emulate(session, *size)
    try:
        yield session
    finally:
        session.quit()


def emulate(session: webdriver.Chrome, width: int, height: int) -> None:
    """Show pages on a `width` x `height` screen (CSS pixels, a phone's below 600 wide): a
    headless window is at least 500 px wide, so a phone's screen is emulated."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1}
    session.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {**metrics, "mobile": width < 600}
    )


def open_page(session: webdriver.Chrome, url: str, *, timeout: float = 30.0) -> None:
    """Load `url` and wait until the dashboard has shown what it asked the API for."""
    session.get(url)
    WebDriverWait(session, timeout).until(
        lambda s: s.execute_script("return document.body.dataset.ready === 'true'")
    )
