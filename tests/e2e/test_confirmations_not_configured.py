"""Issue 17 item 11: without an MES endpoint, confirmations say "not configured", not "pending".

The stack `uns init` writes has no `mes.webhook.url`: a confirmation is kept in the outbox, and
nothing will send it until an endpoint is configured. "pending" promised a delivery that never
came. A batch is started and ended on the real stack; the API and the dashboard (headless
Chromium) must show the final confirmation as not configured, with the outbox counts saying so.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.browser import ARTIFACTS, dashboard, require_chromium
from tests.e2e.stack import fast_confirmations, running_stack, wait_final_confirmation


def test_confirmations_without_a_webhook_are_not_configured(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect

    with running_stack(tmp_path, adapter_overrides=fast_confirmations) as stack:
        status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/start",
                                 {"batch_id": "B-NOHOOK", "work_order_id": "WO-1", "product_id": "SKU-12"})
        assert status == 201, body
        status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/end", {"batch_id": "B-NOHOOK"})
        assert status == 200, body
        confirmation = wait_final_confirmation(stack, "B-NOHOOK")

        status, rows = stack.api("GET", "/api/confirmations", role="viewer")
        assert status == 200
        assert [(r["batch_id"], r["kind"], r["status"], r["attempts"], r["delivered_ms"]) for r in rows] == \
            [("B-NOHOOK", "final", "not_configured", 0, None)]
        assert rows[0]["confirmation_id"] == confirmation["confirmation_id"]
        status, outbox = stack.api("GET", "/api/outbox", role="viewer")
        assert status == 200
        assert outbox["webhook_configured"] is False
        assert outbox["counts"] == {"not_configured": 1, "delivered": 0, "dead_lettered": 0}
        assert outbox["depth"] == 1
        assert [(e["batch_id"], e["status"]) for e in outbox["entries"]] == [("B-NOHOOK", "not_configured")]

        with dashboard(stack, "viewer", 1400) as page:
            expect(page.locator("#outbox-depth")).to_have_text(
                "outbox: 1 not sent: no MES endpoint configured (mes.webhook.url) · 0 delivered", timeout=15_000)
            row = page.locator("#confirmations tr", has_text="B-NOHOOK")
            expect(row).to_contain_text("not configured")
            expect(row).not_to_contain_text("pending")
            page.screenshot(path=str(ARTIFACTS / "dashboard-confirmation-not-configured.png"), full_page=True)
