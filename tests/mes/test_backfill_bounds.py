"""Issue 12 defect 11: a batch that (by a stored mistake) began in 1970 costs a bounded amount of
work per confirmation run, and an operator cannot assert such a time (window check)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mes_adapter.confirmations.planning import ConfirmationKind, plan
from mes_adapter.context import ContextAssertion
from mes_adapter.context.models import BatchWindow, ContextSegment
from mes_adapter.context.plausible import ImplausibleTimeError, TimeWindow
from tests.mes.helpers import LINE, H, build
from tests.mes.test_confirmations import T0, count, start_batch

NOW = 1_764_680_000_000  # 2025-12-02
SECONDS_BY_MISTAKE = NOW // 1000  # 1970-01-21


def test_a_batch_stored_with_a_1970_start_plans_one_catch_up_window_then_regular_ones(tmp_path: Path) -> None:
    p = build(tmp_path, partial_interval_s=3600, confirmation_grace_s=60)
    start_batch(p, since=SECONDS_BY_MISTAKE)
    count(p, "GoodCount", 100, NOW - 2 * H)
    count(p, "GoodCount", 160, NOW - H // 2)
    [batch] = p.context.batch_windows(LINE)
    planned = plan(batch, NOW, 3600_000, 60_000, [])
    assert len(planned) == 1 and planned[0].kind is ConfirmationKind.PARTIAL
    catch_up = planned[0]
    assert catch_up.start_ms == SECONDS_BY_MISTAKE and NOW - H - 60_000 < catch_up.end_ms <= NOW - 60_000
    new = p.confirmations.run_due(NOW)
    assert [c.kind for c in new] == [ConfirmationKind.PARTIAL]
    assert new[0].produced[0].good == 60 * (catch_up.end_ms > NOW - H // 2)
    # the next run resumes after the catch-up: nothing planned twice, nothing walked since 1970
    assert p.confirmations.run_due(NOW + 1000) == []
    later = p.confirmations.run_due(NOW + H)
    assert [(c.kind, c.start_time) for c in later] == [(ConfirmationKind.PARTIAL, new[0].end_time)]
    total = sum(c.produced[0].good for c in new + later)
    assert total == 60


def test_regular_batches_plan_exactly_as_before() -> None:
    p_windows = 5
    a = ContextAssertion(line=LINE, seq=1, since_ms=T0, batch_id="B-1")
    batch = BatchWindow(LINE, "B-1", T0, None, (ContextSegment(T0, None, a),))
    planned = plan(batch, T0 + p_windows * H + 60_000, H, 60_000, [])
    assert [(x.start_ms, x.end_ms) for x in planned] == [(T0 + k * H, T0 + (k + 1) * H) for k in range(p_windows)]


@pytest.mark.parametrize(("value", "hint"), [(SECONDS_BY_MISTAKE, "looks like seconds"),
                                             (NOW * 1000, "looks like microseconds"),
                                             (NOW + 3600_000, ""), (NOW - 8 * 24 * H, "")])
def test_implausible_asserted_times_are_refused_naming_the_field_and_the_range(value: int, hint: str) -> None:
    window = TimeWindow(max_back_ms=7 * 24 * H)
    with pytest.raises(ImplausibleTimeError) as caught:
        window.check("since_ms", value, NOW)
    message = str(caught.value)
    assert message.startswith(f"since_ms {value} ")
    assert f"accepted range {NOW - 7 * 24 * H} .. {NOW + 60_000}" in message and hint in message
    assert window.check("since_ms", NOW - H, NOW) == NOW - H


def test_an_end_asserted_inside_a_confirmed_window_gets_an_empty_final_window() -> None:
    from mes_adapter.confirmations.planning import ConfirmedWindow
    from mes_adapter.production.quantities import Quantities

    a = ContextAssertion(line=LINE, seq=1, since_ms=T0, batch_id="B-1")
    end = T0 + H // 2
    batch = BatchWindow(LINE, "B-1", T0, end, (ContextSegment(T0, end, a),))
    confirmed = [ConfirmedWindow(ConfirmationKind.PARTIAL, T0, T0 + H, 0, Quantities(10, 0))]
    [final] = plan(batch, T0 + 2 * H, H, 60_000, confirmed)
    assert (final.kind, final.start_ms, final.end_ms) == (ConfirmationKind.FINAL, end, end)
