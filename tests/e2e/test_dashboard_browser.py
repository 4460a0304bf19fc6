"""Issue "One command to a running plant": the dashboard in a real headless Chromium.

Against a running stack (broker, simulated line, edge node, adapter), the dashboard loads, live
values change, an allowed command is signed in the browser and confirmed by the PLC read-back,
a refused one shows its reason; screenshots are saved under ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from simulator.client import call_method
from tests.e2e.browser import ARTIFACTS, dashboard, require_chromium
from tests.e2e.stack import running_stack


def test_dashboard_shows_live_values_and_runs_commands(tmp_path: Path) -> None:
    require_chromium()  # before a stack is started for nothing
    from playwright.sync_api import expect

    with running_stack(tmp_path) as stack:
        asyncio.run(call_method(stack.opcua, "Line1", "Start"))  # the line produces: counters move
        key_file = stack.folder / "keys" / "demo-operator.key"
        with dashboard(stack, "operator", 1800) as page:
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)

            good = page.locator(f'#tree .leaf[data-topic="{stack.line}/GoodCount"] .val')
            expect(good).to_be_visible(timeout=15_000)
            first = good.inner_text()
            expect(good).not_to_have_text(first, timeout=15_000)  # a live value changed
            page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)

            # allowed: a setpoint inside its range, signed in the browser with the operator's key
            page.select_option("#cmd-rule", label=_rule_label(page, "Filler", "SpeedSetpoint"))
            page.fill("#cmd-value", "90")
            page.fill("#cmd-reason", "browser test: allowed setpoint")
            page.click("#command-form button[type=submit]")
            expect(page.locator("#cmd-sign")).to_be_visible(timeout=10_000)
            page.set_input_files("#sign-key", str(key_file))
            page.click("#sign-browser")
            expect(page.locator("#cmd-result")).to_contain_text("confirmed", timeout=20_000)
            expect(page.locator("#commands")).to_contain_text("confirmed", timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard-command-confirmed.png"), full_page=True)

            # refused: out of its engineering range
            page.fill("#cmd-value", "999999")
            page.fill("#cmd-reason", "browser test: out of range")
            page.click("#command-form button[type=submit]")
            result = page.locator("#cmd-result")
            expect(result).to_contain_text("Refused", timeout=10_000)
            expect(result).to_contain_text("out_of_range")
            page.screenshot(path=str(ARTIFACTS / "dashboard-command-refused.png"), full_page=True)


def _rule_label(page, device: str, metric: str) -> str:  # type: ignore[no-untyped-def]
    labels = page.locator("#cmd-rule option").all_inner_texts()
    matches = [label for label in labels if device in label and metric in label]
    assert matches, f"no allowlist rule for {device}/{metric} in {labels}"
    return matches[0]
