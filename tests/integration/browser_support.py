"""A real headless Chromium for the HMI's browser test: Debian's chromium driven through chromium-driver.

scripts/setup.sh installs both packages. Where they are missing the test is
skipped with the fix, except under CI (CI=true), where a browser test that
cannot run must fail rather than pass silently.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from vialguard_stack.local_stack import REPO_ROOT

PANEL = (1280, 800)  # the operator panel the pages are made for
ARTIFACTS = REPO_ROOT / "runs" / "test-artifacts"


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


def chromium_driver():  # type: ignore[no-untyped-def]
    """A selenium WebDriver for headless Chromium in a 1280x800 window, or a skip (a failure under CI)."""
    browser = _find("chromium", "chromium-browser", "/usr/lib/chromium/chromium")
    driver = _find("chromedriver", "/usr/lib/chromium/chromedriver")
    if browser is None or driver is None:
        message = "Debian's chromium and chromium-driver are not installed (scripts/setup.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={PANEL[0]},{PANEL[1]}", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def artifacts_dir(name: str) -> Path:
    """Where a test saves its screenshots: runs/ (ignored by git), one folder per run."""
    path = ARTIFACTS / name / time.strftime("%Y%m%d-%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path
