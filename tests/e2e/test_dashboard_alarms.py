"""Issue 18 item 3 and issue 15 item 6: the alarms banner and the alarms / exceptions / holds panel
in real headless Chromium at 1024 × 768 (an HMI panel): operator, supervisor and viewer side by side.

The whole stack runs (`uns init` configs; the edge node's plant.yaml declares the Filler's Jam and
TemperatureAlarm conditions, the adapter has a hold rule for Jam). A batch runs, the simulator
raises a real Jam (OPC UA Alarms & Conditions, ``RaiseAlarm``): the banner counts it on the line,
unacknowledged and coloured by severity; the panel lists it with its batch; the rule's exception
and hold show. The operator's signed release is refused for its role and the page says so; the
supervisor's release, signed in the browser, is accepted and the page and the API agree. The
exception is closed and the condition shelved from the page; when the edge node dies the listed
state is marked stale. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import re
from pathlib import Path

from simulator.client import boolean, call_simulation, string
from tests.e2e.browser import ARTIFACTS, dashboards, require_chromium
from tests.e2e.stack import running_stack, stop_service, wait_until
from tests.e2e.test_dashboard_status import _opcua

BATCH = "B-ALARM-1"
# quotes, a backslash and non-ASCII: the browser's canonical JSON must hash as the server's (RFC 8785)
RELEASE = 'jam cleared, infeed "star wheel" \\ checked \u2014 2\u00d7 OK'
RULE = {"condition": "Jam", "owner": "maintenance", "action": "clear the jam", "cause": "bottle jam", "hold": True}


def _declare_conditions(plant: dict) -> None:
    plant["opcua"][0]["alarms"] = {"conditions": [{"cell": "Filler", "name": "Jam"},
                                                  {"cell": "Filler", "name": "TemperatureAlarm"}]}


def _hold_rule(adapter: dict) -> None:
    adapter["mes"]["alarms"] = {"rules": [RULE]}


def _raise_jam(endpoint: str, active: bool) -> int:
    """The simulator's own event count of the Filler's Jam after raising (or clearing) it."""
    [events] = _opcua(call_simulation, endpoint, "RaiseAlarm", string("Filler"), string("Jam"), boolean(active))
    return int(events)


def _fits(page) -> bool:  # type: ignore[no-untyped-def]
    """Nothing of the page is wider than the viewport (no sideways scrolling on a 1024 px panel)."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_alarm_banner_panel_and_signed_hold_release_at_1024x768(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect

    with running_stack(tmp_path, adapter_overrides=_hold_rule, edge_overrides=_declare_conditions) as stack:
        line = stack.line
        short = "/".join(line.split("/")[-2:])
        for path, body in (("start", {"batch_id": BATCH}), ("phase", {"phase": "filling"})):
            status, answer = stack.api("POST", f"/api/lines/{line}/batch/{path}", body)
            assert status in (200, 201), answer
        keys = stack.folder / "keys"
        with dashboards(stack, ["operator", "supervisor", "viewer"], 768, width=1024) as (
                operator, supervisor, viewer):
            errors: list[str] = []  # uncaught exceptions in any page's scripts
            for page in (operator, supervisor, viewer):
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            banner = supervisor.locator(f'#alarm-banner .alarm-line[data-line="{line}"]')
            # born "never raised": nothing active, the line's chip is quiet
            expect(banner).to_have_text(f"{short} 0 active", timeout=15_000)
            expect(banner).to_have_class("alarm-line sev-none")

            events = _raise_jam(stack.opcua, True)
            expect(banner).to_have_text(f"{short} 1 active \u00b7 1 unacked \u00b7 {BATCH} on hold", timeout=20_000)
            expect(banner).to_have_class("alarm-line sev-high unacked held")
            _, alarms = stack.api("GET", f"/api/alarms?line={line}", role="viewer")
            assert [(a["cell"], a["condition"], a["active"], a["acked"], a["severity"], a["batch_id"], a["phase"],
                     a["stale"]) for a in alarms] == [("Filler", "Jam", True, False, 600, BATCH, "filling", False)]
            jam = alarms[0]
            row = supervisor.locator(f'#alarms tr[data-alarm="{line}|Filler|Jam"]')
            expect(row.locator("td")).to_have_text(["Filler", "Jam", "active \u00b7 unacked", "600", jam["message"],
                                                    re.compile(r"\S+"), f"{BATCH} \u00b7 filling", "Acknowledge"])
            expect(row).to_have_class("sev-high unacked")
            expect(supervisor.locator("#alarms tr")).to_have_count(1)
            expect(supervisor.locator("#alarms-summary")).to_have_text("1 active \u00b7 1 unacknowledged")
            # the journal holds each of the simulator's Jam events once (and the birth's "never raised")
            _, history = stack.api("GET", f"/api/alarms/history?condition=Jam&batch_id={BATCH}", role="viewer")
            assert len([h for h in history if h["event_id"]]) == events == 1
            expect(supervisor.locator("#alarm-history tr").first).to_contain_text("active \u00b7 unacked")

            _, [exception] = stack.api("GET", "/api/exceptions", role="viewer")
            _, [hold] = stack.api("GET", "/api/holds", role="viewer")
            assert (exception["cause"], exception["owner"], exception["batch_id"], exception["open"]) == (
                "bottle jam", "maintenance", BATCH, True)
            assert (hold["batch_id"], hold["exception_id"], hold["held"]) == (BATCH, exception["id"], True)
            expect(supervisor.locator(f'#exceptions tr[data-exception="{exception["id"]}"] .exception-status')
                   ).to_have_text("open")
            hold_row = supervisor.locator(f'#holds tr[data-hold="{hold["id"]}"]')
            expect(hold_row.locator(".hold-status")).to_have_text("held")
            expect(hold_row.locator(".hold-batch")).to_have_text(BATCH)
            # a viewer sees the same, with nothing to act on
            expect(viewer.locator(f'#holds tr[data-hold="{hold["id"]}"] .hold-status')).to_have_text("held")
            expect(viewer.locator(f'#alarm-banner .alarm-line[data-line="{line}"]')).to_have_text(
                f"{short} 1 active \u00b7 1 unacked \u00b7 {BATCH} on hold")
            for hidden in ("#hold-sign", "#shelve-form", ".hold-release", ".exception-close", ".alarm-ack"):
                expect(viewer.locator(hidden)).to_be_hidden()
            assert _fits(supervisor)
            supervisor.screenshot(path=str(ARTIFACTS / "alarms-held-1024x768.png"))
            supervisor.locator("#alarms-panel").screenshot(path=str(ARTIFACTS / "alarms-panel-held.png"))

            # the operator signs a release with their own valid key: refused for the role, said plainly
            op_hold = operator.locator(f'#holds tr[data-hold="{hold["id"]}"]')
            expect(op_hold.locator(".hold-release")).to_be_visible(timeout=15_000)
            op_hold.locator(".hold-comment").fill(RELEASE)
            operator.set_input_files("#hold-key", str(keys / "demo-operator.key"))
            op_hold.locator(".hold-release").click()
            expect(operator.locator("#alarm-result")).to_have_text(
                "Release refused (403 role_not_allowed): releasing a held batch needs role supervisor; "
                "'demo-operator' is operator", timeout=20_000)
            expect(operator.locator("#alarm-result")).to_have_class("result refused")
            assert stack.api("GET", "/api/holds?held=true", role="viewer")[1] == [hold]
            operator.screenshot(path=str(ARTIFACTS / "alarms-release-refused-operator.png"), full_page=True)

            # the supervisor signs in the browser (key file + passphrase: kept encrypted there)
            hold_row.locator(".hold-comment").fill(RELEASE)
            supervisor.set_input_files("#hold-key", str(keys / "demo-supervisor.key"))
            supervisor.fill("#hold-passphrase", "supervisor panel passphrase")
            hold_row.locator(".hold-release").click()
            expect(supervisor.locator("#alarm-result")).to_have_text(
                f"Batch {BATCH} released by demo-supervisor: {RELEASE}", timeout=20_000)
            expect(hold_row.locator(".hold-status")).to_contain_text("released by demo-supervisor")
            expect(hold_row.locator(".hold-status")).to_contain_text(RELEASE)
            expect(hold_row).to_have_class("released")
            expect(banner).to_have_text(f"{short} 1 active \u00b7 1 unacked", timeout=15_000)
            _, [released] = stack.api("GET", "/api/holds", role="viewer")
            assert (released["id"], released["held"], released["released_by"], released["release_comment"]) == (
                hold["id"], False, "demo-supervisor", RELEASE)
            assert supervisor.evaluate("localStorage.getItem('uns.signkey.demo-supervisor')") is not None
            supervisor.screenshot(path=str(ARTIFACTS / "alarms-released-1024x768.png"))
            # nothing left to release: no signing controls on either panel
            for page in (operator, supervisor):
                expect(page.locator("#hold-sign")).to_be_hidden(timeout=15_000)
                expect(page.locator(".hold-release")).to_have_count(0)

            # the exception is closed with a comment from the page
            exception_row = supervisor.locator(f'#exceptions tr[data-exception="{exception["id"]}"]')
            exception_row.locator(".exception-comment").fill("jam cleared at the infeed star wheel")
            exception_row.locator(".exception-close").click()
            expect(exception_row.locator(".exception-status")).to_have_text(
                "closed by demo-supervisor: jam cleared at the infeed star wheel", timeout=15_000)
            _, [closed] = stack.api("GET", "/api/exceptions", role="viewer")
            assert (closed["open"], closed["closed_by"], closed["closing_comment"]) == (
                False, "demo-supervisor", "jam cleared at the infeed star wheel")

            # the operator shelves the Jam for an hour: the API lists the shelf with its expiry
            operator.select_option("#shelve-duration", "3600")
            operator.fill("#shelve-comment", "infeed rework, jams expected")
            operator.click("#shelve-form button[type=submit]")
            expect(operator.locator("#alarm-result")).to_contain_text("Jam on Filler shelved until", timeout=15_000)
            _, [shelf] = stack.api("GET", f"/api/alarms/shelved?line={line}", role="viewer")
            assert (shelf["cell"], shelf["condition"], shelf["shelved_by"],
                    shelf["until_ms"] - shelf["shelved_ms"]) == ("Filler", "Jam", "demo-operator", 3_600_000)
            expect(operator.locator(f'#alarm-shelves tr[data-shelf="{shelf["id"]}"] .shelf-until')).to_have_attribute(
                "data-until", str(shelf["until_ms"]))

            # cleared on the PLC but not acknowledged: no longer active, still unacked (retained)
            assert _raise_jam(stack.opcua, False) == 2
            expect(banner).to_have_text(f"{short} 0 active \u00b7 1 unacked", timeout=20_000)
            expect(banner).to_have_class("alarm-line sev-none unacked")
            expect(row.locator("td").nth(2)).to_have_text("cleared \u00b7 unacked")
            wait_until(lambda: [(a["active"], a["acked"]) for a in
                                stack.api("GET", f"/api/alarms?line={line}", role="viewer")[1]] == [(False, False)],
                       10, "the cleared, unacknowledged Jam in the API")
            assert _fits(operator) and _fits(supervisor)
            operator.screenshot(path=str(ARTIFACTS / "alarms-cleared-shelved-1024x768.png"), full_page=True)

            # the edge node goes away: the last known state stays listed, marked stale
            stop_service(stack, "edge")
            expect(banner).to_have_text(f"{short} 0 active \u00b7 1 unacked \u00b7 stale", timeout=30_000)
            expect(row.locator("td").nth(2)).to_have_text("cleared \u00b7 unacked \u00b7 stale: last known state")
            expect(row).to_have_class("sev-high unacked cleared stale")
            assert [(a["condition"], a["active"], a["acked"], a["stale"]) for a in
                    stack.api("GET", f"/api/alarms?line={line}", role="viewer")[1]] == [("Jam", False, False, True)]
            supervisor.screenshot(path=str(ARTIFACTS / "alarms-stale-1024x768.png"))
            assert errors == []
