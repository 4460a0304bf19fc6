"""Issue 18 item 3 / issue 15 item 5: an alarm acknowledged and confirmed from the dashboard, through the command path.

The whole stack as ``uns init`` writes it (the edge subscribes to every simulator condition, the
allowlist has an acknowledge rule for each). The simulator raises a real Jam; the operator clicks
*Acknowledge* on its row in headless Chromium at 1024 × 768, which creates an ordinary allowlisted
command; the operator signs it in the Commands panel with the key kept in the browser; the edge calls
the condition's Acknowledge method and reads AckedState back. Asserted: the command's result on the
page, the simulator's own count of unacknowledged alarms (``Simulation/Truth``), the API's alarm
state and the page's row, and that the button is gone once acknowledged. Then *Confirm*, which
appears beside it once acknowledged, goes the same way: signed, the condition's Confirm method,
ConfirmedState read back on the simulator's node, the row no longer unconfirmed.
"""

from __future__ import annotations

from pathlib import Path

from asyncua import Client, ua

from simulator.catalog import TRUTH_FOLDER
from simulator.client import boolean, call_simulation, string
from simulator.config import NAMESPACE_URI
from tests.e2e.browser import ARTIFACTS, dashboards, require_chromium
from tests.e2e.stack import running_stack, wait_until
from tests.e2e.test_dashboard_status import _opcua


def _raise_jam(endpoint: str) -> None:
    _opcua(call_simulation, endpoint, "RaiseAlarm", string("Filler"), string("Jam"), boolean(True))


async def _unacked_on_the_plc(endpoint: str) -> int:
    """The simulator's own count of unacknowledged alarms (its truth, not what the UNS says)."""
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        return int(await client.get_node(ua.NodeId(f"{TRUTH_FOLDER}/UnackedAlarms", ns)).read_value())


async def _confirmed_on_the_plc(endpoint: str) -> bool:
    """The simulator's Jam condition node: ConfirmedState/Id as the server holds it."""
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        node = await client.get_node(ua.NodeId("Line1/Filler/Jam", ns)).get_child(["0:ConfirmedState", "0:Id"])
        return bool(await node.read_value())


def test_an_operator_acknowledges_an_alarm_from_the_dashboard_with_a_signature(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect

    with running_stack(tmp_path, alarms=True) as stack:
        line = stack.line
        keys = stack.folder / "keys"
        with dashboards(stack, ["operator"], 768, width=1024) as (operator,):
            errors: list[str] = []
            operator.on("pageerror", lambda exc: errors.append(str(exc)))
            expect(operator.locator("#live")).to_have_text("live", timeout=15_000)
            _raise_jam(stack.opcua)
            row = operator.locator(f'#alarms tr[data-alarm="{line}|Filler|Jam"]')
            expect(row.locator("td").nth(2)).to_have_text("active \u00b7 unacked", timeout=20_000)

            row.locator(".alarm-ack").click()
            expect(operator.locator("#cmd-result")).to_contain_text("awaiting_signature", timeout=15_000)
            expect(operator.locator("#alarm-result")).to_contain_text("sign it in the Commands panel")
            operator.set_input_files("#sign-key", str(keys / "demo-operator.key"))
            operator.fill("#sign-passphrase", "operator panel passphrase")
            operator.click("#sign-browser")
            expect(operator.locator("#cmd-result")).to_contain_text("read back", timeout=30_000)
            expect(operator.locator("#cmd-result")).to_have_class("result ok")

            assert _opcua(_unacked_on_the_plc, stack.opcua) == 0  # read back by the edge before "ok"
            wait_until(lambda: [(a["condition"], a["active"], a["acked"]) for a in
                                stack.api("GET", f"/api/alarms?line={line}", role="viewer")[1]]
                       == [("Jam", True, True)], 15, "the Jam acknowledged in the API")
            expect(row.locator("td").nth(2)).to_have_text("active \u00b7 acked \u00b7 unconfirmed", timeout=15_000)
            expect(row.locator(".alarm-ack")).to_have_count(0)
            operator.screenshot(path=str(ARTIFACTS / "alarms-acknowledged-1024x768.png"), full_page=True)

            # acknowledged, not yet confirmed: Confirm beside it, the same signed path (Part 9 Confirm)
            assert _opcua(_confirmed_on_the_plc, stack.opcua) is False
            row.locator(".alarm-confirm").click()
            expect(operator.locator("#alarm-result")).to_contain_text("Confirmation of Jam on Filler created")
            expect(operator.locator("#cmd-result")).to_contain_text("awaiting_signature", timeout=15_000)
            operator.set_input_files("#sign-key", str(keys / "demo-operator.key"))
            operator.fill("#sign-passphrase", "operator panel passphrase")
            operator.click("#sign-browser")
            expect(operator.locator("#cmd-result")).to_contain_text("read back", timeout=30_000)
            expect(operator.locator("#cmd-result")).to_have_class("result ok")
            assert _opcua(_confirmed_on_the_plc, stack.opcua) is True
            wait_until(lambda: [(a["condition"], a["active"], a["acked"], a["confirmed"]) for a in
                                stack.api("GET", f"/api/alarms?line={line}", role="viewer")[1]]
                       == [("Jam", True, True, True)], 15, "the Jam confirmed in the API")
            expect(row.locator("td").nth(2)).to_have_text("active \u00b7 acked", timeout=15_000)
            expect(row.locator(".alarm-confirm")).to_have_count(0)
            assert errors == []
