"""Issue 17 item 7: the adapter's ``/docs`` works in a plant without internet.

FastAPI's default Swagger UI page loads its script and stylesheet from a CDN and stays blank
offline. A real headless Chromium opens ``/docs`` of a running adapter with every request to a
host other than loopback aborted; Swagger UI must render one operation block per operation in the
adapter's own ``/openapi.json``, and the page must not even have tried to reach another host.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tests.e2e.browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, require_chromium
from tests.e2e.stack import running_stack

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def test_docs_render_every_operation_with_only_loopback_reachable(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import Route, expect, sync_playwright

    with running_stack(tmp_path) as stack:
        with urllib.request.urlopen(f"{stack.http}/openapi.json", timeout=10) as response:
            spec = json.load(response)
        # Swagger UI shows an operation once under each of its tags (under "default" if it has none)
        operations = sum(len(op.get("tags") or ["default"]) for item in spec["paths"].values()
                         for method, op in item.items() if method in HTTP_METHODS)
        assert operations > 50  # the whole API, not an empty spec

        blocked: list[str] = []
        served: list[str] = []

        def only_loopback(route: Route) -> None:
            url = route.request.url
            if urlsplit(url).hostname in LOOPBACK or url.startswith(("data:", "blob:")):
                served.append(url)
                route.continue_()
            else:
                blocked.append(url)
                route.abort("internetdisconnected")

        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
                page.route("**/*", only_loopback)
                page.goto(f"{stack.http}/docs")
                expect(page.locator(".swagger-ui .info .title")).to_contain_text("uns-hub MES adapter",
                                                                                  timeout=20_000)
                expect(page.locator(".opblock")).to_have_count(operations, timeout=20_000)
                page.screenshot(path=str(ARTIFACTS / "docs-offline.png"))
            finally:
                browser.close()
        assert blocked == []
        assets = {urlsplit(url).path for url in served}
        assert {"/docs", "/openapi.json", "/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"} <= assets
