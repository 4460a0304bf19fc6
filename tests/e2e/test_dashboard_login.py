"""Issue 18 item 6, login in a real headless Chromium: named users with argon2id passwords, an
HttpOnly session cookie, logout, and a wrong credential that never leaves live data on screen.

The stack's adapter gets a users file (``auth.users_file``); API tokens stay for machines.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.browser import ARTIFACTS, chromium, require_chromium
from tests.e2e.stack import Stack, running_stack
from uns.passwords import hash_password

PASSWORD = "correct horse battery staple"


def _me_with_cookie(stack: Stack, session_id: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{stack.http}/api/me", headers={"Cookie": f"uns_session={session_id}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_login_logout_and_wrong_credentials(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect

    users_file = tmp_path / "users.yaml"
    users_file.write_text(yaml.safe_dump({"users": {
        "alice": {"hash": hash_password(PASSWORD), "role": "operator", "full_name": "Alice Operator"}}}))

    def with_users(adapter: dict) -> None:
        adapter["auth"]["users_file"] = str(users_file)

    with running_stack(tmp_path, adapter_overrides=with_users) as stack:
        with chromium() as browser:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(stack.http + "/")
            expect(page.locator("#notice")).to_have_text("Log in (or enter an API token) to see the plant.")
            expect(page.locator("#live")).to_have_text("offline")

            def log_in(password: str) -> None:
                if page.locator("#account").is_visible():  # signed in: the form is in the account menu
                    page.click("#account > summary")
                page.fill("#login-user", "alice")
                page.fill("#login-password", password)
                page.click("#login")

            log_in(PASSWORD)
            expect(page.locator("#who")).to_have_text("Alice Operator (operator)", timeout=10_000)
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            leaf = page.locator(f'#tree .leaf[data-topic="{stack.line}/GoodCount"]')
            expect(leaf).to_be_visible(timeout=15_000)
            cookies = {c["name"]: c for c in context.cookies()}
            session = cookies["uns_session"]
            assert (session["httpOnly"], session["sameSite"]) == (True, "Strict")
            assert page.evaluate("document.cookie") == ""  # no script can read the session
            assert page.evaluate("localStorage.getItem('uns.token')") is None
            assert _me_with_cookie(stack, session["value"]) == (200, {
                "user_id": "alice", "full_name": "Alice Operator", "role": "operator", "batch_control": True,
                "order_start": True, "order_cancel": False, "stop_reason": True, "disposition": False})
            page.screenshot(path=str(ARTIFACTS / "login-logged-in.png"), full_page=True)

            # logout: the page is blank, the session is dead on the server too; a refresh of the line
            # cards in flight at logout is answered after it and must not repaint the plant (held
            # here in the browser until the logout is done: it was a race of a 5 s timer before)
            held: list = []

            def hold(route: Any) -> None:
                held.append(route)

            page.route("**/api/lines", hold)
            for _ in range(150):  # the 5 s refresh asks for the lines
                if held:
                    break
                page.wait_for_timeout(50)
            assert held, "the dashboard did not refresh its line cards within 7.5 s"
            answers = [route.fetch() for route in held]  # the server answers while still logged in
            page.click("#logout")
            expect(page.locator("#notice")).to_have_text("Logged out.")
            for route, answer in zip(held, answers, strict=True):
                route.fulfill(response=answer)  # ... and the page receives it after the logout
            page.unroute("**/api/lines", hold)
            page.wait_for_timeout(1000)
            expect(page.locator("#live")).to_have_text("offline")
            expect(page.locator("#tree .leaf")).to_have_count(0)
            expect(page.locator("#lines .card")).to_have_count(0)
            assert "uns_session" not in {c["name"] for c in context.cookies()}
            status, body = _me_with_cookie(stack, session["value"])
            assert (status, body["reason"]) == (401, "no_session")
            page.screenshot(path=str(ARTIFACTS / "login-logged-out.png"), full_page=True)

            # a wrong password after a good session: nothing of the old session stays
            log_in(PASSWORD)
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            expect(leaf).to_be_visible(timeout=15_000)
            second = {c["name"]: c for c in context.cookies()}["uns_session"]["value"]
            log_in("wrong password")
            expect(page.locator("#notice")).to_have_text("Login refused: wrong user name or password",
                                                         timeout=10_000)
            expect(page.locator("#live")).to_have_text("offline")
            expect(page.locator("#who")).to_have_text("")
            expect(page.locator("#tree .leaf")).to_have_count(0)
            expect(page.locator("#lines .card")).to_have_count(0)
            status, body = _me_with_cookie(stack, second)
            assert (status, body["reason"]) == (401, "no_session")
            page.wait_for_timeout(6000)  # the 5 s refresh must not bring data back
            expect(page.locator("#lines .card")).to_have_count(0)
            expect(page.locator("#live")).to_have_text("offline")
            page.screenshot(path=str(ARTIFACTS / "login-wrong-password.png"), full_page=True)

            # a wrong token: refused, not stored, nothing shown
            page.click("#token-box summary")
            page.fill("#token", "x" * 40)
            page.click("#save-token")
            expect(page.locator("#notice")).to_have_text(
                "Token refused: the token is not known to this adapter", timeout=10_000)
            expect(page.locator("#live")).to_have_text("offline")
            expect(page.locator("#tree .leaf")).to_have_count(0)
            assert page.evaluate("localStorage.getItem('uns.token')") is None
            # machines keep their tokens
            assert stack.api("GET", "/api/me", role="operator")[0] == 200
