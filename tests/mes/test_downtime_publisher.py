"""The retained ``_mes/oee`` publisher: what it publishes for a line, and only when the figures change."""

from __future__ import annotations

import json
from datetime import time
from pathlib import Path

from mes_adapter.context import ContextAssertion
from mes_adapter.oee.publisher import OeePublisher
from mes_adapter.oee.service import OeeService
from mes_adapter.oee.shifts import ShiftCalendar, ShiftDefinition
from mes_adapter.production.counters import CounterSample
from mes_adapter.production.records import Record, RecordKind
from tests.mes.helpers import LINE, MIN, build
from uns.conventions import Quality
from uns.isa95 import NamespaceMapping

T0 = 1_705_471_200_000  # 2024-01-17T06:00:00Z


def test_batch_and_shift_oee_published_once_per_change(tmp_path: Path) -> None:
    calendar = ShiftCalendar(shifts=[ShiftDefinition(name="early", start=time(6), end=time(14))])
    p = build(tmp_path, calendar=calendar)
    clock = {"now": T0 + 70 * MIN}
    oee = OeeService(p.config, p.context, p.production, p.records, clock=lambda: clock["now"])
    sent: list[tuple[str, dict]] = []
    publisher = OeePublisher(p.config, p.context, oee, NamespaceMapping(),
                             lambda topic, payload: sent.append((topic, json.loads(payload))),
                             losses=lambda line, window: {"unexplained": {"lost_s": 0.0, "stops": 0}},
                             clock=lambda: clock["now"])
    p.context.assert_context(ContextAssertion(line=LINE, seq=1, since_ms=T0 + 10 * MIN, batch_id="B-1",
                                              product_id="SKU-12"))
    p.context.assert_context(ContextAssertion(line=LINE, seq=2, since_ms=T0 + 40 * MIN, batch_id="B-1", ended=True))
    p.records.add_many([Record(line=LINE, cell=None, metric="State", value="Execute", source_ts_ms=T0,
                               quality=Quality.GOOD,
                               kind=RecordKind.STATE)])
    for ts, good in ((T0 + 10 * MIN, 0), (T0 + 39 * MIN, 600)):
        p.production.observe(LINE, None, "GoodCount", CounterSample(good, ts))
        p.production.observe(LINE, None, "RejectCount", CounterSample(0, ts))

    assert publisher.tick() == 2
    topics = [t for t, _ in sent]
    assert topics == ["acme/plant1/packaging/line2/_mes/oee/batch", "acme/plant1/packaging/line2/_mes/oee/shift"]
    batch, shift = sent[0][1], sent[1][1]
    assert {k: batch[k] for k in ("line", "scope", "key", "batches", "shifts", "start_ms", "end_ms", "good",
                                  "availability", "performance", "quality", "data_complete", "computed_at_ms")} == {
        "line": LINE, "scope": "batch", "key": "B-1", "batches": ["B-1"], "shifts": ["2024-01-17/early"],
        "start_ms": T0 + 10 * MIN, "end_ms": T0 + 40 * MIN, "good": 600, "availability": 1.0,
        "performance": 2.0 * 600 / (30 * 60), "quality": 1.0, "data_complete": True, "computed_at_ms": T0 + 70 * MIN}
    assert batch["losses"] == {"unexplained": {"lost_s": 0.0, "stops": 0}}
    assert (shift["key"], shift["batches"], shift["end_ms"]) == ("2024-01-17/early", ["B-1"], T0 + 70 * MIN)

    assert publisher.tick() == 0  # nothing changed: nothing published
    clock["now"] += MIN  # the finished batch is unchanged (computed_at alone does not count); the shift grew
    assert publisher.tick() == 1
    assert sent[-1][0].endswith("/_mes/oee/shift") and sent[-1][1]["end_ms"] == T0 + 71 * MIN
