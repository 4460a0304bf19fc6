"""The adapter's dashboard in a real headless Chromium (Playwright), signed in with one role's
token; screenshots go to ``test-artifacts/``. One launch recipe for every browser test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Stack
from tests.support.procs import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: scripts/test installs it (apt-get install chromium)")


@contextmanager
def dashboard(stack: Stack, role: str, height: int) -> Iterator[Any]:
    """A Playwright page on the stack's dashboard, the ``role``'s token saved; closed at the end."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.goto(stack.http + "/")
            page.fill("#token", stack.tokens[role])
            page.click("#save-token")
            yield page
        finally:
            browser.close()
