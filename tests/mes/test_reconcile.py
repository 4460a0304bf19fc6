"""Issue 12 defect 10: the start-up reconciliation of a line's context with what the line reports."""

from __future__ import annotations

import pytest

from mes_adapter.context import ContextAssertion
from mes_adapter.context.reconcile import LineReport, ReconcileAction, reconcile
from tests.mes.helpers import LINE

NOW = 1_764_680_000_000
RUNNING = ContextAssertion(line=LINE, seq=3, since_ms=NOW - 86_400_000, batch_id="B-7", work_order_id="WO-7")
ENDED = ContextAssertion(line=LINE, seq=4, since_ms=NOW - 3_600_000, batch_id="B-7", ended=True)


@pytest.mark.parametrize(("current", "report", "action", "end_ms", "words"), [
    (None, LineReport("", NOW - 5, "Idle", False), ReconcileAction.NOTHING, None,
     "no batch shown running; line state 'Idle', batch tag ''"),
    (ENDED, LineReport("X-1", NOW - 5, "Execute", True), ReconcileAction.NOTHING, None,
     "the line runs 'X-1', which the MES has not started"),
    (RUNNING, LineReport("B-7", NOW - 5, "Execute", True), ReconcileAction.KEPT, None, "batch 'B-7' kept running"),
    (RUNNING, LineReport("WO-7", NOW - 5, "Held", False), ReconcileAction.KEPT, None, "batch 'B-7' kept running"),
    (RUNNING, LineReport("", NOW - 60_000, "Idle", False), ReconcileAction.ENDED, NOW - 60_000,
     "batch 'B-7' ended at 1764679940000: the line runs no batch (line state 'Idle', batch tag '')"),
    (RUNNING, LineReport("", NOW - 2 * 86_400_000, "Idle", False), ReconcileAction.ENDED, NOW,
     "the line runs no batch"),  # the tag's time lies before the batch: end now
    (RUNNING, LineReport("B-8", NOW - 1000, "Execute", True), ReconcileAction.ENDED, NOW - 1000,
     "the line runs 'B-8'"),
    (RUNNING, LineReport("", NOW - 5, "Execute", True), ReconcileAction.KEPT, None,
     "the line executes although its batch tag is empty"),
    (RUNNING, LineReport(None, None, "Idle", False), ReconcileAction.KEPT, None,
     "no batch tag to check it against"),
])
def test_reconcile_table(current: ContextAssertion | None, report: LineReport, action: ReconcileAction,
                         end_ms: int | None, words: str) -> None:
    result = reconcile(LINE, current, report, NOW)
    assert (result.action, result.end_ms) == (action, end_ms)
    assert words in result.detail
    assert result.batch_id == (None if action is ReconcileAction.NOTHING else "B-7")
