"""Issue 18 item 7 (and item 6's user CLI): the dashboard on a 1024 × 768 HMI panel, a 768 × 1024
tablet and a 1400 px desk screen, light and dark, in real headless Chromium against a running stack.

The user is made with the real ``uns adapter users add`` and logs in through the page. In every
viewport and theme: nothing is wider than the viewport (no sideways scroll), the header is one row
(the login form and token box fold into the account menu once signed in, by password or token),
every panel is reachable from the panel bar and lands below the sticky bar, and the quality and
severity colours keep WCAG AA contrast (4.5:1) on their background. The theme follows
``prefers-color-scheme`` until the toggle is used; the choice survives a reload; every request the
page makes goes to the adapter itself (no CDN: plants are often offline). Screenshots go to
``test-artifacts/`` (``layout-<w>x<h>-<theme>.png``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.browser import ARTIFACTS, chromium, require_chromium
from tests.e2e.stack import running_stack
from tests.support.procs import uns_command

PASSWORD = "layout test password"
VIEWPORTS = [(1024, 768), (768, 1024), (1400, 900)]
PANELS = ["lines-panel", "alarms-panel", "batches-panel", "tree-panel", "trend-panel", "nodes-panel",
          "mes-panel", "approvals-panel", "command-panel"]
#: (classes, text) of the coloured labels the dashboard draws: quality on the panel, severity chips
PROBES = [("q-GOOD", "GOOD"), ("q-UNCERTAIN", "UNCERTAIN · BadSensorFailure"), ("q-BAD", "BAD"),
          ("q-STALE", "STALE · comm_lost"), ("q-MISSING", "MISSING"), ("state-online", "online"),
          ("state-stale", "stale"), ("muted", "muted"), ("sev-badge sev-critical", "900"),
          ("sev-badge sev-high", "700"), ("sev-badge sev-medium", "500"), ("sev-badge sev-low", "100"),
          ("sev-badge", "?"), ("pill on", "live"), ("pill off", "offline")]

# WCAG 2.1 contrast of each probe's text colour against the first opaque background under it
_CONTRAST_JS = """(probes) => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = ([r, g, b]) => 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  const host = document.getElementById("tree-panel");
  const out = {};
  for (const [cls, text] of probes) {
    const span = document.createElement("span"); span.className = cls; span.textContent = text;
    host.append(span);
    let node = span, bg = null;
    while (node) { const c = getComputedStyle(node).backgroundColor; const v = rgb(c);
      if (v.length === 3 || v[3] === 1) { bg = v.slice(0, 3); break; } node = node.parentElement; }
    const fg = rgb(getComputedStyle(span).color).slice(0, 3);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    out[cls] = Math.round(((a + 0.05) / (b + 0.05)) * 100) / 100;
    span.remove();
  }
  return out;
}"""

_HEADER_ROWS_JS = """() => {
  // one row: the visible items' vertical centres lie within 10 px (a wrapped item is a line lower)
  const items = [...document.querySelectorAll("header h1, #session > *")]
    .filter((e) => e.offsetParent !== null && getComputedStyle(e).position !== "absolute");
  const mids = items.map((e) => { const r = e.getBoundingClientRect(); return r.top + r.height / 2; });
  return {rows: Math.max(...mids) - Math.min(...mids) < 10 ? 1 : 2, mids,
          height: document.querySelector("header").offsetHeight, items: items.map((e) => e.id || e.tagName)};
}"""


def _add_user(users: Path) -> None:
    done = subprocess.run(uns_command("adapter", "users", "add", "--file", str(users), "hmi-op", "--role", "operator",
                                      "--full-name", "Hana Operator", "--password-env", "UNS_LAYOUT_PW"),
                          env={**os.environ, "UNS_LAYOUT_PW": PASSWORD}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _fits(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def _check_layout(page: Any, width: int, height: int, theme: str) -> None:
    from playwright.sync_api import expect

    page.set_viewport_size({"width": width, "height": height})
    page.evaluate("window.scrollTo(0, 0)")
    expect(page.locator("html")).to_have_attribute("data-theme", theme)
    assert _fits(page), f"{width}x{height} {theme}: the page scrolls sideways"
    header = page.evaluate(_HEADER_ROWS_JS)
    assert header["rows"] == 1, f"{width}x{height}: header on {header['rows']} rows: {header}"
    assert header["items"] == ["H1", "live", "account", "logout", "theme-toggle"]  # no login form, no token box
    for panel in PANELS:
        page.click(f'#panel-nav a[href="#{panel}"]')
        box = page.locator(f"#{panel}").bounding_box()
        bar = page.locator("#top").bounding_box()
        assert box is not None and bar is not None
        # below the sticky bar (not hidden under it) and on screen
        assert bar["y"] + bar["height"] - 1 <= box["y"] < height, f"{width}x{height}: {panel} at {box}, bar {bar}"
    page.evaluate("window.scrollTo(0, 0)")
    contrast = page.evaluate(_CONTRAST_JS, [list(p) for p in PROBES])
    low = {cls: ratio for cls, ratio in contrast.items() if ratio < 4.5}
    assert low == {}, f"{theme}: below 4.5:1 contrast: {low}"
    page.screenshot(path=str(ARTIFACTS / f"layout-{width}x{height}-{theme}.png"))


def test_layout_on_hmi_tablet_and_desk_in_both_themes(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect

    users = tmp_path / "users.yaml"
    _add_user(users)

    def with_users(adapter: dict) -> None:
        adapter["auth"]["users_file"] = str(users)

    with running_stack(tmp_path, adapter_overrides=with_users) as stack:
        with chromium() as browser:
            # the system's preference decides until the user chooses
            for scheme in ("dark", "light"):
                context = browser.new_context(viewport={"width": 1024, "height": 768}, color_scheme=scheme)
                probe = context.new_page()
                probe.goto(stack.http + "/")
                expect(probe.locator("html")).to_have_attribute("data-theme", scheme)
                expect(probe.locator("#theme-toggle")).to_have_text("Light" if scheme == "dark" else "Dark")
                context.close()

            context = browser.new_context(viewport={"width": 1024, "height": 768}, color_scheme="light")
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            requested: list[str] = []  # no CDN: every request goes to the adapter itself
            page.on("request", lambda request: requested.append(request.url))
            page.goto(stack.http + "/")
            # signed out: the login form is in the header, on one row
            expect(page.locator("#login-form")).to_be_visible()
            for width, height in VIEWPORTS:
                page.set_viewport_size({"width": width, "height": height})
                signed_out = page.evaluate(_HEADER_ROWS_JS)
                assert signed_out["rows"] == 1 and signed_out["items"] == ["H1", "live", "signin", "theme-toggle"]
                assert _fits(page)
            page.set_viewport_size({"width": 1024, "height": 768})
            page.screenshot(path=str(ARTIFACTS / "layout-signed-out-1024x768-light.png"))
            page.click("#token-box summary")  # the token box drops down; the header stays one row
            expect(page.locator("#token")).to_be_visible()
            assert page.evaluate(_HEADER_ROWS_JS)["rows"] == 1 and _fits(page)
            page.click("h1")  # a click elsewhere closes it
            expect(page.locator("#token")).to_be_hidden()

            # the user made by `uns adapter users add` logs in
            page.fill("#login-user", "hmi-op")
            page.fill("#login-password", PASSWORD)
            page.click("#login")
            expect(page.locator("#who")).to_have_text("Hana Operator (operator)", timeout=10_000)
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            expect(page.locator(f'#tree .leaf[data-topic="{stack.line}/GoodCount"]')).to_be_visible(timeout=15_000)
            expect(page.locator("#lines .card")).to_have_count(1, timeout=15_000)
            expect(page.locator("#login-form")).to_be_hidden()
            expect(page.locator("#token-box")).to_be_hidden()

            for theme in ("light", "dark"):
                if theme == "dark":
                    page.click("#theme-toggle")
                for width, height in VIEWPORTS:
                    _check_layout(page, width, height, theme)

            # the choice is kept: a reload (the session cookie signs in again) stays dark
            assert page.evaluate("localStorage.getItem('uns.theme')") == "dark"
            page.set_viewport_size({"width": 1024, "height": 768})
            page.reload()
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            expect(page.locator("html")).to_have_attribute("data-theme", "dark")
            expect(page.locator("#login-form")).to_be_hidden()  # signed in by the cookie: folded too

            # printed (a batch report), the page is dark ink on white paper in the dark theme too
            page.emulate_media(media="print")
            assert page.evaluate("getComputedStyle(document.body).color") == "rgb(29, 35, 43)"
            page.emulate_media(media="screen")
            assert page.evaluate("getComputedStyle(document.body).color") == "rgb(230, 237, 243)"

            # the account menu holds "switch user or use a token" as a drop-down over the page
            page.click("#account > summary")
            expect(page.locator("#login-form")).to_be_visible()
            expect(page.locator("#token-box")).to_be_visible()
            assert page.evaluate(_HEADER_ROWS_JS)["rows"] == 1 and _fits(page)
            page.screenshot(path=str(ARTIFACTS / "layout-account-menu-1024x768-dark.png"))
            page.click("#theme-toggle")
            expect(page.locator("html")).to_have_attribute("data-theme", "light")
            assert page.evaluate("localStorage.getItem('uns.theme')") == "light"
            assert errors == []
            assert requested and [u for u in requested if not u.startswith(stack.http + "/")] == []
            assert {u.split("?")[0].removeprefix(stack.http) for u in requested} >= {
                "/", "/static/style.css", "/static/theme.js", "/static/app.js"}
