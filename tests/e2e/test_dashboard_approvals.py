"""Issue 18 item 1, the two-person rule in the dashboard: two real headless Chromium sessions.

The operator's browser submits a critical recipe change (the form defaults to a non-critical target
and lists ISA-95 paths) and signs it with the operator's key; the supervisor's browser finds it in
its approvals queue with the current value beside the requested one, signs it as "approved", and
the PLC read-back confirms the write (the simulator's own Recipe value is checked). A second
request is rejected with a reason from the supervisor's queue. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from asyncua import Client, ua

from simulator.config import NAMESPACE_URI
from tests.e2e.browser import ARTIFACTS, dashboards, require_chromium
from tests.e2e.stack import running_stack, wait_until


def test_two_person_approval_from_two_browser_sessions(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect

    with running_stack(tmp_path) as stack:
        _, tags = stack.api("GET", f"/api/tags?line={stack.line}", role="viewer")
        recipe = next(t for t in tags if t["name"] == "Recipe")
        cell = recipe["cell"]
        target = f"{stack.line}/{cell}/Recipe" if cell else f"{stack.line}/Recipe"
        _, allow = stack.api("GET", "/api/allowlist", role="viewer")
        rule = next(r for r in allow["rules"] if r["metric"] == "Recipe")
        new_value = next(v for v in rule["enum"] if v != recipe["value"]) if rule.get("enum") else "SKU-14"
        keys = stack.folder / "keys"
        with dashboards(stack, ["operator", "supervisor"], 1800) as (operator, supervisor):
            expect(operator.locator("#live")).to_have_text("live", timeout=15_000)
            labels = operator.locator("#cmd-rule option").all_inner_texts()
            assert not labels[0].endswith("(critical)"), labels  # the default target is not the critical one
            assert all(label.startswith(stack.line + "/") for label in labels), labels  # ISA-95, no Sparkplug ids
            operator.select_option("#cmd-rule", label=f"{target} (critical)")
            operator.fill("#cmd-value", new_value)
            operator.fill("#cmd-reason", "changeover to the next order")
            operator.click("#command-form button[type=submit]")
            expect(operator.locator("#cmd-sign")).to_be_visible(timeout=10_000)
            operator.set_input_files("#sign-key", str(keys / "demo-operator.key"))
            operator.click("#sign-browser")
            expect(operator.locator("#cmd-result")).to_contain_text("awaiting_second_signature", timeout=10_000)
            operator.screenshot(path=str(ARTIFACTS / "approvals-operator-signed.png"), full_page=True)

            row = supervisor.locator("#approvals tr[data-command]")
            expect(row).to_have_count(1, timeout=15_000)
            expect(row.locator(".approval-target")).to_have_text(target)
            expect(row.locator(".approval-current")).to_have_text(str(recipe["value"]))
            expect(row.locator(".approval-requested")).to_have_text(new_value)
            expect(row.locator(".approval-status")).to_have_text("awaiting_second_signature (critical)")
            supervisor.screenshot(path=str(ARTIFACTS / "approvals-supervisor-queue.png"), full_page=True)
            row.locator(".approval-sign").click()
            expect(supervisor.locator("#sign-meaning")).to_have_value("approved")
            supervisor.set_input_files("#sign-key", str(keys / "demo-supervisor.key"))
            supervisor.click("#sign-browser")
            expect(supervisor.locator("#cmd-result")).to_contain_text("confirmed", timeout=20_000)
            expect(supervisor.locator("#approvals")).to_contain_text("nothing waits for your signature")
            expect(operator.locator("#commands")).to_contain_text("confirmed", timeout=10_000)
            assert _plc_value(stack.opcua, rule["write"]["node_id"]) == new_value
            supervisor.screenshot(path=str(ARTIFACTS / "approvals-supervisor-confirmed.png"), full_page=True)

            # a second request, rejected with a reason by the supervisor: never sent
            operator.fill("#cmd-value", str(recipe["value"]))
            operator.fill("#cmd-reason", "back to the old recipe")
            operator.click("#command-form button[type=submit]")
            operator.set_input_files("#sign-key", str(keys / "demo-operator.key"))
            operator.click("#sign-browser")
            expect(operator.locator("#cmd-result")).to_contain_text("awaiting_second_signature", timeout=10_000)
            expect(row).to_have_count(1, timeout=15_000)
            row.locator(".approval-reason").fill("order WO-18 still needs the new recipe")
            # the queue re-renders while the supervisor types (a command event, the data changed): the
            # typed reason must survive it, or the rejection would reach the API without one
            supervisor.evaluate("approvalsShown = null; loadApprovals()")
            expect(row.locator(".approval-reason")).to_have_value("order WO-18 still needs the new recipe")
            row.locator(".approval-reject").click()
            expect(supervisor.locator("#cmd-result")).to_contain_text(
                "rejected: rejected by demo-supervisor: order WO-18 still needs the new recipe", timeout=10_000)
            expect(operator.locator("#commands tr").first).to_contain_text("rejected", timeout=10_000)
            supervisor.screenshot(path=str(ARTIFACTS / "approvals-supervisor-rejected.png"), full_page=True)
            assert _plc_value(stack.opcua, rule["write"]["node_id"]) == new_value
            wait_until(lambda: stack.api("GET", "/api/commands", role="viewer")[1][0]["status"] == "rejected", 5,
                       "the rejection in the API")


def _plc_value(endpoint: str, node_id: str) -> str:
    """The simulator's own value of the rule's node (``nsu=...;s=<path>``), read over OPC UA (in a
    thread: Playwright's loop runs in this one)."""
    from concurrent.futures import ThreadPoolExecutor

    async def read() -> str:
        async with Client(endpoint, timeout=10) as client:
            ns = await client.get_namespace_index(NAMESPACE_URI)
            return str(await client.get_node(ua.NodeId(node_id.split(";s=", 1)[-1], ns)).read_value())

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result(timeout=30)
