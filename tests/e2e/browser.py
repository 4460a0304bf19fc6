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
def dashboard(stack: Stack, role: str, height: int, width: int = 1400) -> Iterator[Any]:
    """A Playwright page on the stack's dashboard, the ``role``'s token saved; closed at the end."""
    with dashboards(stack, [role], height, width) as pages:
        yield pages[0]


@contextmanager
def dashboards(stack: Stack, roles: list[str], height: int, width: int = 1400) -> Iterator[list[Any]]:
    """One page per role, each in its own browser context (its own storage: separate sessions, as
    two people at two panels), all in one Chromium; closed at the end. ``width`` × ``height`` is
    the viewport (1024 × 768: an HMI panel)."""
    with chromium() as browser:
        pages = []
        for role in roles:
            page = browser.new_context(viewport={"width": width, "height": height}).new_page()
            page.goto(stack.http + "/")
            page.click("#token-box summary")
            page.fill("#token", stack.tokens[role])
            page.click("#save-token")
            pages.append(page)
        yield pages


@contextmanager
def chromium() -> Iterator[Any]:
    """One headless Chromium (a Playwright ``Browser``), closed at the end; ``test-artifacts/`` exists."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
