"""Headless Chromium for the report tests (Debian's chromium and chromium-driver, driven by
Selenium through /usr/bin/chromedriver; nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

#: every plot has drawn its svg within this many seconds (2 cores, software rendering)
DRAWN_WITHIN_S = 60


def chrome(chromium: str, chromedriver: str, width: int = 1400, height: int = 2000) -> webdriver.Chrome:
    """Headless Chromium at ``width`` x ``height`` CSS pixels, keeping every console message."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(chromedriver), options=opts)


def open_report(driver: webdriver.Chrome, page: Path) -> list[dict]:
    """Load ``page`` from disk, wait until every plot has drawn; returns the console's SEVERE
    messages (errors)."""
    driver.get_log("browser")  # drop what an earlier page left
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, DRAWN_WITHIN_S).until(lambda d: d.execute_script(
        "const p = document.querySelectorAll('.plotly-graph-div');"
        "return [...p].every(e => e.classList.contains('js-plotly-plot') && e.querySelector('svg.main-svg'));"))
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
