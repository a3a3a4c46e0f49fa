"""Driving Debian's headless Chromium (chromium + chromium-driver, nothing downloaded) against a
real `leadd run`, and a fake Twilio on its own thread so that blocking WebDriver calls never
stall the server the daemon sends to."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.fakes.twilio import FakeTwilio

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "output" / "screenshots"
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
T = TypeVar("T")


def have_browser() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def start_browser() -> tuple[WebDriver, str]:
    """Headless Chromium with a fresh profile; returns (driver, profile dir to delete)."""
    profile = tempfile.mkdtemp(prefix="leadd-chromium-")
    options = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # A page in a window that is not in front must still get its live updates on time.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    return driver, profile


def stop_browser(driver: WebDriver, profile: str) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def viewport(driver: WebDriver, width: int, height: int, *, mobile: bool) -> None:
    """An exact viewport (set_window_size would include the window's frame)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def screenshots(driver: WebDriver, name: str) -> list[Path]:
    """The current page at 390x844 (as a phone) and 1280x800, plus the whole page at each
    width; returns the files written."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    written = []
    for label, (width, height) in SIZES.items():
        viewport(driver, width, height, mobile=label == "phone")
        driver.execute_script("window.scrollTo(0, 0)")
        path = SCREENSHOTS / f"{name}-{width}x{height}.png"
        driver.save_screenshot(str(path))
        full = SCREENSHOTS / f"{name}-{width}-full.png"
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"captureBeyondViewport": True, "format": "png"}
        )
        import base64

        full.write_bytes(base64.b64decode(shot["data"]))
        written += [path, full]
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return written


def wait(driver: WebDriver, predicate: Callable[[WebDriver], T], timeout: float = 5.0) -> T:
    # A form post reloads the page: an element found just before may be gone (stale, or
    # "node does not belong to the document" while the new one loads).
    ignored = (NoSuchElementException, StaleElementReferenceException, WebDriverException)
    waiter = WebDriverWait(driver, timeout, poll_frequency=0.02, ignored_exceptions=ignored)
    result: T = waiter.until(predicate)
    return result


class ThreadedTwilio:
    """FakeTwilio served from its own event loop on a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake = FakeTwilio()

    def __enter__(self) -> FakeTwilio:
        self.thread.start()
        self.run(self.fake.start())
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self.run(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)
