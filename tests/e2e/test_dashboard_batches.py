"""Issue 18 item 2, batches in the dashboard: a batch started, phased and ended from a real headless
Chromium at 1024×768 against the whole stack, then its report.

The operator starts the batch from the batch panel, sets a phase, the simulated line runs with injected
rejects and a stop, and the operator ends the batch from the panel. The report then shows counts equal
to the adapter's report API and to the simulator's own totals (``Simulation/Truth``), the OEE and every
loss bucket the API computes, the stops, the final confirmation with its delivery state, and the two
context steps with who asserted them. Starting the same id again shows the API's refusal text. The
report prints without the dashboard around it. A viewer sees the list and the report but no batch
controls, and the API refuses a viewer's start. Screenshots (and the printed PDF) go to
``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from simulator.client import call_method, call_simulation, double, uint32
from tests.e2e.browser import ARTIFACTS, dashboards, require_chromium
from tests.e2e.stack import fast_confirmations, running_stack, simulator_truth, wait_final_confirmation, wait_until

BATCH = "B-UI-18"


def _opcua(coroutine_function, *args):  # type: ignore[no-untyped-def]
    """Run an OPC UA call from inside Playwright's sync API (its own loop runs in this thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine_function(*args)).result(timeout=30)


def _pct(x: float | None) -> str:
    """The dashboard's percentage (app.js ``pct``)."""
    return "\u2013" if x is None else f"{x * 100:.1f}%"


def _fits(page) -> bool:  # type: ignore[no-untyped-def]
    """Nothing wider than the 1024 px panel: no horizontal scrolling."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_batch_started_and_ended_from_the_dashboard_with_its_report(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect

    with running_stack(tmp_path, adapter_overrides=fast_confirmations) as stack:
        line = stack.line
        good0, reject0 = asyncio.run(simulator_truth(stack.opcua))
        with dashboards(stack, ["operator", "viewer"], 768, width=1024) as (page, viewer):
            # -- start and phase from the panel
            expect(page.locator("#batch-line")).to_have_value(line, timeout=15_000)
            expect(page.locator("#batch-running")).to_have_text("no batch running")
            expect(page.locator("#batch-end")).to_be_hidden()
            page.fill("#batch-id", BATCH)
            page.fill("#batch-order", "WO-18-2")
            page.fill("#batch-product", "SKU-12")
            page.fill("#batch-target", "500")
            page.fill("#batch-uom", "pcs")
            page.click("#batch-start")
            expect(page.locator("#batch-result")).to_have_text(f"started {BATCH} on {line}")
            expect(page.locator("#batch-running")).to_have_text(f"running: {BATCH}")
            expect(page.locator("#batch-start")).to_be_hidden()
            page.fill("#batch-phase", "filling")
            page.click("#batch-set-phase")
            expect(page.locator("#batch-result")).to_have_text(f"phase of {BATCH}: filling")
            expect(page.locator("#batch-running")).to_have_text(f"running: {BATCH} \u00b7 filling")
            assert _fits(page)
            page.screenshot(path=str(ARTIFACTS / "batches-running.png"), full_page=True)
            # a command to the line while the batch runs (left unsigned: the report lists it as it stands)
            _, allow = stack.api("GET", "/api/allowlist", role="viewer")
            rule = next(r for r in allow["rules"] if r["metric"] == "SpeedSetpoint" and not r.get("critical"))
            status, command = stack.api("POST", "/api/commands", {
                "group_id": rule["group_id"], "edge_node_id": rule["edge_node_id"], "device_id": rule["device_id"],
                "metric": "SpeedSetpoint", "value": 250.0, "reason": "slower for batch 18"})
            assert status == 201, command

            # -- the simulated line runs: rejects and a stop, then it stops and the adapter holds its totals
            _opcua(call_method, stack.opcua, "Line1", "Start")
            time.sleep(2.0)
            _opcua(call_simulation, stack.opcua, "ForceRejects", uint32(4))
            time.sleep(1.0)
            _opcua(call_simulation, stack.opcua, "ForceStop", double(1.5))
            time.sleep(3.0)
            _opcua(call_method, stack.opcua, "Line1", "Stop")
            time.sleep(0.5)
            good1, reject1 = _opcua(simulator_truth, stack.opcua)
            produced = (good1 - good0, reject1 - reject0)
            assert produced[0] > 0 and produced[1] >= 4

            def counters_arrived() -> bool:
                _, tags = stack.api("GET", f"/api/tags?line={line}", role="viewer")
                values = {t["name"]: t["value"] for t in tags if t.get("device_id") is None}
                return (values.get("GoodCount"), values.get("RejectCount")) == (good1, reject1)

            wait_until(counters_arrived, 20, "final counter values in the adapter")

            # -- end from the panel; the same id again is refused with the API's own text
            page.click("#batch-end")
            expect(page.locator("#batch-result")).to_have_text(
                f"ended {BATCH}: {produced[0]} good, {produced[1]} scrap", timeout=15_000)
            expect(page.locator("#batch-running")).to_have_text("no batch running")
            final = wait_final_confirmation(stack, BATCH)
            assert (final["produced"][0]["good"], final["produced"][0]["scrap"]) == produced
            page.fill("#batch-id", BATCH)
            page.click("#batch-start")
            result = page.locator("#batch-result")
            expect(result).to_have_text(f"Refused (409 batch_id_used): batch '{BATCH}' already ran on {line}; "
                                        "batch ids are unique")
            expect(result).to_have_class("result refused")

            # -- the list row: counts and OEE as the API has them
            status, report = stack.api("GET", f"/api/lines/{line}/batches/{BATCH}/report", role="viewer")
            assert status == 200, report
            batch, oee = report["batch"], report["oee"]
            assert (batch["good"], batch["scrap"], batch["running"]) == (*produced, False)
            assert (oee["good"], oee["scrap"]) == produced
            row = page.locator(f'#batch-list tr[data-batch="{BATCH}"]')
            expect(row.locator('[data-field="good"]')).to_have_text(str(produced[0]))
            expect(row.locator('[data-field="rejects"]')).to_have_text(str(produced[1]))
            expect(row.locator('[data-field="split"]')).to_have_count(0)  # no QA disposition: all scrap
            expect(row.locator('[data-field="oee"]')).to_have_text(_pct(oee["oee"]))

            # -- the report
            row.locator(".batch-open").click()
            shown = page.locator("#batch-report")
            expect(shown.locator("h2")).to_contain_text(f"Batch report {BATCH}")
            expect(page.locator("#lines-panel")).to_be_hidden()
            expect(shown.locator('[data-report="good"]')).to_have_text(str(produced[0]))
            expect(shown.locator('[data-report="scrap"]')).to_have_text(str(produced[1]))
            expect(shown.locator('[data-report="produced"]')).to_have_text(str(produced[0] + produced[1]))
            expect(shown.locator('[data-report="target"]')).to_have_text("500 pcs")
            expect(shown.locator('[data-report="order"]')).to_have_text("WO-18-2")
            expect(shown.locator('[data-report="oee"] [data-field="oee-value"]')).to_have_text(_pct(oee["oee"]))
            buckets = shown.locator("#report-losses tbody tr")
            expect(buckets).to_have_count(len(oee["losses"]))
            for bucket, loss in oee["losses"].items():
                expect(shown.locator(f'#report-losses tr[data-bucket="{bucket}"] td').nth(2)).to_have_text(
                    str(loss["stops"]))
            assert report["stops"], "the forced stop is listed"
            expect(shown.locator("#report-stops tbody tr")).to_have_count(len(report["stops"]))
            finals = [c for c in report["confirmations"] if c["kind"] == "final"]
            assert len(finals) == 1 and finals[0]["confirmation"]["produced"][0]["good"] == produced[0]
            final_row = shown.locator('#report-confirmations tr[data-kind="final"]')
            expect(final_row).to_have_count(1)
            expect(final_row.locator("td").nth(2)).to_have_text(str(produced[0]))
            expect(final_row.locator("td").nth(3)).to_have_text(str(produced[1]))
            delivery = {"not_configured": "not configured"}.get(finals[0]["status"], finals[0]["status"])
            expect(final_row.locator(".delivery")).to_contain_text(delivery)
            context = shown.locator("#report-context tbody tr")
            expect(context).to_have_count(2)
            operator_id = stack.api("GET", "/api/me")[1]["user_id"]
            for i, phase in enumerate(("\u2013", "filling")):
                expect(context.nth(i).locator("td").nth(3)).to_have_text(phase)
                expect(context.nth(i).locator("td").nth(7)).to_have_text(operator_id)
            assert [(c["command_id"], c["target"], c["status"]) for c in report["commands"]] == [
                (command["command_id"], rule["isa95_path"], command["status"])]
            listed = shown.locator("#report-commands tbody tr")
            expect(listed).to_have_count(1)
            expect(listed.first).to_have_attribute("data-command", command["command_id"])
            for i, text in ((1, rule["isa95_path"]), (2, "250"), (3, operator_id), (5, command["status"])):
                expect(listed.first.locator("td").nth(i)).to_have_text(text)
            expect(shown.locator("#report-alarms tbody tr")).to_have_count(max(1, len(report["alarms"])))
            assert _fits(page)
            page.screenshot(path=str(ARTIFACTS / "batch-report.png"), full_page=True)

            # -- printed: the report alone, without the toolbar, header and panels
            page.emulate_media(media="print")
            expect(page.locator("header")).to_be_hidden()
            expect(page.locator("#report-print")).to_be_hidden()
            expect(shown.locator('[data-report="good"]')).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "batch-report-print.png"), full_page=True)
            page.pdf(path=str(ARTIFACTS / "batch-report.pdf"), format="A4")
            page.emulate_media(media="screen")
            page.click("#report-back")
            expect(page.locator("#lines-panel")).to_be_visible()
            expect(shown).to_be_hidden()

            # -- a viewer: the list and the report, no controls; the API refuses the viewer's start
            viewer.reload()
            viewer_row = viewer.locator(f'#batch-list tr[data-batch="{BATCH}"]')
            expect(viewer_row.locator('[data-field="good"]')).to_have_text(str(produced[0]), timeout=15_000)
            expect(viewer.locator("#batch-start")).to_be_hidden()
            expect(viewer.locator("#batch-end")).to_be_hidden()
            expect(viewer.locator("#batch-set-phase")).to_be_hidden()
            status, body = stack.api("POST", f"/api/lines/{line}/batch/start", {"batch_id": "B-VIEWER"}, role="viewer")
            assert (status, body["reason"]) == (403, "role_required")
            viewer_row.locator(".batch-open").click()
            expect(viewer.locator('#batch-report [data-report="good"]')).to_have_text(str(produced[0]))
            assert _fits(viewer)
            viewer.screenshot(path=str(ARTIFACTS / "batch-report-viewer.png"), full_page=True)
