"""Debian's headless Chromium for the console's browser tests, driven by Playwright.

Importing this module skips the importing test module when /usr/bin/chromium (or
``$OPENLFR_CHROMIUM``) or the playwright package is absent (.ci/run installs both). ``browser``
is a module-scoped fixture: one Chromium per test module, with the flags that keep it off the
network (no background requests, no component updates, no sync).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("OPENLFR_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def login(browser, base: str, user: str, password: str, viewport: dict, timeout_ms: int):
    """A new browser context logged in to the console at ``base`` as ``user``: (context, page)."""
    ctx = browser.new_context(viewport=viewport)
    page = ctx.new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(f"{base}/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.press("#password", "Enter")
    page.wait_for_url(re.compile(r".*/console/.*"))
    return ctx, page
