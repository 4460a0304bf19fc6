"""Issue 18 item 6, signing keys protected by a passphrase in the browser (WebCrypto).

The operator's key file is read once and kept in the browser only encrypted (PBKDF2 + AES-GCM);
after a reload the passphrase alone signs, a wrong passphrase signs nothing, and the stored blob
holds no byte of the key in clear. Real stack, real headless Chromium; the PLC read-back confirms.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.e2e.browser import ARTIFACTS, dashboard, require_chromium
from tests.e2e.stack import running_stack
from tests.e2e.test_dashboard_browser import _rule_label

PASSPHRASE = "filler line night shift"


def _command(page, value: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    expect(page.locator("#cmd-rule option")).not_to_have_count(0, timeout=10_000)  # the allowlist loaded
    page.select_option("#cmd-rule", label=_rule_label(page, "Filler", "SpeedSetpoint"))
    page.fill("#cmd-value", value)
    page.fill("#cmd-reason", reason)
    page.click("#command-form button[type=submit]")


def test_key_kept_encrypted_in_the_browser_signs_with_its_passphrase(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect

    with running_stack(tmp_path) as stack:
        key_file = stack.folder / "keys" / "demo-operator.key"
        key_body = "".join(line for line in key_file.read_text().splitlines() if not line.startswith("-----"))
        der = base64.b64decode(key_body)
        with dashboard(stack, "operator", 1600) as page:
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            _command(page, "90", "first use: key file and passphrase")
            expect(page.locator("#sign-key-state")).to_have_text("no key saved in this browser", timeout=10_000)
            page.set_input_files("#sign-key", str(key_file))
            page.fill("#sign-passphrase", PASSPHRASE)
            page.click("#sign-browser")
            expect(page.locator("#cmd-result")).to_contain_text("confirmed", timeout=20_000)

            stored = page.evaluate("localStorage.getItem('uns.signkey.demo-operator')")
            box = json.loads(stored)
            assert (box["v"], box["kdf"], box["rounds"]) == (1, "PBKDF2-SHA256", 600000)
            sealed = base64.b64decode(box["sealed"])
            assert len(sealed) == len(der) + 16  # AES-GCM: ciphertext + tag, no clear key inside
            assert key_body not in stored and der[-32:] not in sealed  # the Ed25519 seed is not in clear

            page.reload()
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            _command(page, "95", "after reload: passphrase only")
            expect(page.locator("#sign-key-state")).to_have_text(
                "a key is saved (encrypted) in this browser: the passphrase is enough", timeout=10_000)
            page.fill("#sign-passphrase", "not the passphrase")
            page.click("#sign-browser")
            expect(page.locator("#cmd-result")).to_have_text(
                "Could not sign in this browser: wrong passphrase for the key saved in this browser")
            _, commands = stack.api("GET", "/api/commands", role="viewer")
            assert [(c["request"]["value"], c["status"], len(c["signatures"])) for c in commands] == [
                (95.0, "awaiting_signature", 0), (90.0, "confirmed", 1)]
            page.screenshot(path=str(ARTIFACTS / "signing-key-wrong-passphrase.png"), full_page=True)

            page.fill("#sign-passphrase", PASSPHRASE)
            page.click("#sign-browser")
            expect(page.locator("#cmd-result")).to_contain_text("confirmed", timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "signing-key-passphrase-confirmed.png"), full_page=True)
