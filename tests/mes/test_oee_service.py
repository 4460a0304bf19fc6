"""OEE per batch and per shift from stored state records, counters, context and the calendar."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from mes_adapter.context import ContextAssertion
from mes_adapter.errors import MesInputError
from mes_adapter.oee.publisher import oee_topic
from mes_adapter.oee.service import OeeService
from mes_adapter.oee.shifts import PlannedBreak, ShiftCalendar, ShiftDefinition
from mes_adapter.production.counters import CounterSample
from mes_adapter.production.records import Record, RecordKind
from tests.mes.helpers import LINE, MIN, build
from uns.conventions import Quality
from uns.isa95 import NamespaceMapping

T0 = 1_705_471_200_000  # 2024-01-17T06:00:00Z


def state(ts: int, value: str, quality: Quality = Quality.GOOD) -> Record:
    return Record(line=LINE, cell=None, metric="State", value=value, source_ts_ms=ts,
                  quality=quality, kind=RecordKind.STATE)


def test_batch_and_shift_oee(tmp_path: Path) -> None:
    calendar = ShiftCalendar(shifts=[ShiftDefinition(name="early", start=time(6), end=time(14))],
                             breaks=[PlannedBreak(name="break", start=time(9), end=time(9, 30))])
    p = build(tmp_path, calendar=calendar)
    service = OeeService(p.config, p.context, p.production, p.records, clock=lambda: T0 + 10 * 60 * MIN)
    p.context.assert_context(ContextAssertion(line=LINE, seq=1, since_ms=T0 + 60 * MIN,
                                              batch_id="B-1", product_id="SKU-12"))
    p.context.assert_context(ContextAssertion(line=LINE, seq=2, since_ms=T0 + 240 * MIN,
                                              batch_id="B-1", ended=True))
    p.records.add_many([
        state(T0 - 5 * MIN, "Idle"), state(T0 + 60 * MIN, "Execute"),
        state(T0 + 120 * MIN, "Held"), state(T0 + 121 * MIN, "Execute"),      # micro-stop 60 s
        state(T0 + 150 * MIN, "Aborted"), state(T0 + 170 * MIN, "Execute"),   # 20 min stop
        state(T0 + 210 * MIN, "Execute", Quality.STALE), state(T0 + 215 * MIN, "Execute"),  # 5 min unknown
        state(T0 + 240 * MIN, "Complete")])
    for ts, good, rej in ((T0 + 60 * MIN, 0, 0), (T0 + 239 * MIN, 4_000, 100)):
        p.production.observe(LINE, None, "GoodCount", CounterSample(good, ts))
        p.production.observe(LINE, None, "RejectCount", CounterSample(rej, ts))
    batch = service.batch_oee(LINE, "B-1")
    # 07:00–10:00 = 180 min, break 30 ⇒ PBT 150; stops 20 + 5 ⇒ APT 125 min (micro-stop stays in)
    assert (batch.pbt_ms, batch.apt_ms, batch.micro_stop_count, batch.stop_count) == (
        150 * MIN, 125 * MIN, 1, 2)
    assert batch.performance == pytest.approx(2.0 * 4_100 / (125 * 60))
    assert batch.oee == pytest.approx(2.0 * 4_000 / (150 * 60))
    shift = p.config.calendar.shift_at(T0 + 60 * MIN)
    assert shift is not None
    result = service.shift_oee(LINE, shift)  # 06:00–14:00; 06:00–07:00 Idle = stopped, no batch
    assert result.pbt_ms == 450 * MIN and result.apt_ms == (450 - 60 - 20 - 5 - 240) * MIN
    assert result.good == 4_000
    assert oee_topic(NamespaceMapping(), LINE, "shift") == "acme/plant1/packaging/line2/_mes/oee/shift"
    with pytest.raises(MesInputError, match="never ran"):
        service.batch_oee(LINE, "B-404")
    with pytest.raises(MesInputError, match="not configured"):
        service.window_oee("acme/plant1/packaging/other", batch.window)
