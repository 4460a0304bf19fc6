"""Issue 18 item 5, honest status: the line card in a real headless Chromium during an OPC UA outage.

While the simulator runs, the card shows the PackML state and speed from the line's configured
tags, and the batch counts equal the simulator's own totals. The simulator is then stopped (a real
outage: the edge node loses its OPC UA session): the card must not look healthy. It marks the data
incomplete with its reasons, shows the state and speed with their STALE quality and reason (never
"null BAD"), marks the OEE and the counts as computed on incomplete data, and the tree shows each
tag's quality with its reason. Screenshots are kept under ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from simulator.client import call_method
from tests.e2e.browser import ARTIFACTS, dashboard, require_chromium
from tests.e2e.stack import running_stack, simulator_truth, stop_service, wait_until


def _opcua(coroutine_function, *args):  # type: ignore[no-untyped-def]
    """Run an OPC UA call from inside Playwright's sync API (its own loop runs in this thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine_function(*args)).result(timeout=30)


def test_line_card_marks_incomplete_data_during_an_opcua_outage(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect

    with running_stack(tmp_path) as stack:
        line = stack.line
        good0, reject0 = asyncio.run(simulator_truth(stack.opcua))
        status, body = stack.api("POST", f"/api/lines/{line}/batch/start",
                                 {"batch_id": "B-18-5", "work_order_id": "WO-18", "product_id": "SKU-12"})
        assert status == 201, body
        time.sleep(0.3)  # the line starts after the context is asserted
        asyncio.run(call_method(stack.opcua, "Line1", "Start"))
        with dashboard(stack, "viewer", 1400) as page:
            card = page.locator("#lines .card").first
            expect(card.locator('[data-field="machine-state"]')).to_have_text("Execute", timeout=20_000)
            expect(page.locator(f'#tree .leaf[data-topic="{line}/State"] .q')).to_have_text("GOOD")
            expect(card.locator('[data-field="speed"]')).to_contain_text("parts/min")
            assert card.locator('[data-field="speed"]').inner_text() != "0 parts/min"
            expect(card.locator('[data-marker="line-incomplete"]')).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "status-healthy.png"), full_page=True)

            # the line stops (counters freeze), then the adapter holds the simulator's own totals
            _opcua(call_method, stack.opcua, "Line1", "Stop")
            time.sleep(0.5)
            good1, reject1 = _opcua(simulator_truth, stack.opcua)
            produced = (good1 - good0, reject1 - reject0)
            assert produced[0] > 0

            def counted() -> bool:
                _, state = stack.api("GET", f"/api/lines/{line}/state", role="viewer")
                batch = state["current_batch"]
                return (batch["good"], batch["scrap"]) == produced

            wait_until(counted, 20, "the batch counts equal to the simulator's totals")

            stop_service(stack, "simulator")  # the OPC UA outage

            def blind() -> dict | None:
                _, state = stack.api("GET", f"/api/lines/{line}/state", role="viewer")
                return state if not state["data_complete"] and state["machine_state"]["quality"] != "GOOD" else None

            state = wait_until(blind, 30, "the line's data marked incomplete")
            # what the API says, exactly: the edge node lives, its three devices are dead, the
            # line-level tags are BAD with the OPC UA StatusCode the edge reported
            assert (state["devices_online"], state["devices"]) == (0, 3)
            assert state["tags_by_quality"] == {"GOOD": 0, "UNCERTAIN": 0, "BAD": 10, "STALE": 24}
            for signal in (state["machine_state"], state["speed"]):
                assert (signal["value"], signal["quality"], signal["status"]) == (None, "BAD", "BadNoCommunication")
            assert (state["current_batch"]["good"], state["current_batch"]["scrap"]) == produced
            assert state["oee"]["data_complete"] is False

            # what the page shows
            marker = card.locator('[data-marker="line-incomplete"]')
            expect(marker).to_be_visible(timeout=15_000)
            for device in ("Capper", "Filler", "Labeler"):
                expect(marker).to_contain_text(f"device {device} STALE since")
            expect(marker).to_contain_text("10 tags BAD")
            expect(card.locator('[data-field="machine-state"]')).to_have_text("\u2014 (BAD \u00b7 BadNoCommunication)")
            expect(card.locator('[data-field="speed"]')).to_have_text("\u2014 (BAD \u00b7 BadNoCommunication)")
            expect(card).to_contain_text("0/3 online")
            counts = card.locator('[data-field="counts"]')
            expect(counts).to_have_text(f"{produced[0]} / {produced[1]} \u26a0 counted on incomplete data")
            oee_marker = card.locator('[data-marker="oee-incomplete"]')
            expect(oee_marker).to_contain_text("OEE from incomplete data")
            expect(oee_marker).to_contain_text("State BAD (comm_lost BadNoCommunication)")
            state_leaf = page.locator(f'#tree .leaf[data-topic="{line}/State"]')
            expect(state_leaf.locator(".val")).to_have_text("\u2014")
            expect(state_leaf.locator(".q")).to_have_text("BAD \u00b7 BadNoCommunication")
            filler_leaf = page.locator(f'#tree .leaf[data-topic="{line}/Filler/Speed"]')
            expect(filler_leaf.locator(".q")).to_have_text("STALE \u00b7 comm_lost")
            expect(page.locator("#tree")).not_to_contain_text("null")
            page.screenshot(path=str(ARTIFACTS / "status-opcua-outage.png"), full_page=True)
