"""Fixtures of the whole-process tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from selenium import webdriver

from tests.conftest import require_tool
from tests.e2e.browser import chrome


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    chromium = require_tool(shutil.which("chromium"), "chromium", "chromium")
    chromedriver = require_tool(shutil.which("chromedriver"), "chromedriver", "chromium-driver")
    d = chrome(chromium, chromedriver)
    try:
        yield d
    finally:
        d.quit()
