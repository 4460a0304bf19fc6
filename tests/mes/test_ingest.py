"""Ingest: host metric changes → records (batched, classified) and counter deltas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mes_adapter.production.ingest import Ingest, Observation, observation_from_change
from mes_adapter.production.records import RecordKind
from tests.mes.helpers import LINE, build
from uns.conventions import Quality
from uns.isa95 import NamespaceMapping


@dataclass
class FakeMetric:  # the attributes of mes_adapter.host.MetricState the ingest reads
    group_id: str
    edge_node_id: str
    device_id: str | None
    name: str
    value: Any
    quality: Quality
    timestamp_ms: int
    received_ms: int


@dataclass
class FakeChange:
    metric: FakeMetric
    historical: bool = False
    birth: bool = False


def test_changes_flow_into_records_and_counters(tmp_path: Path) -> None:
    p = build(tmp_path)
    ingest = Ingest(p.config, p.production, p.records, max_batch=3)
    mapping = NamespaceMapping()

    def change(name: str, value: Any, ts: int, device: str | None = None, **kw: Any) -> Observation:
        obs = observation_from_change(FakeChange(FakeMetric(
            "acme:plant1", "packaging:line2", device, name, value, kw.pop("quality", Quality.GOOD),
            ts, ts + 5), **kw), mapping)
        assert obs is not None
        return obs

    assert ingest.observe(change("GoodCount", 100, 1_000, birth=True)) == []
    assert ingest.observe(change("State", "Execute", 1_000)) == []
    assert ingest.pending == 2
    [delta] = ingest.observe(change("GoodCount", 130, 2_000))
    assert delta.delta == 30 and ingest.pending == 0  # max_batch reached: flushed
    ingest.observe(change("Alarms/Overtemp", True, 2_500, device="Filler"))
    ingest.observe(change("Temp", 21.5, 2_600, device="Filler", historical=True))
    assert ingest.flush() == 2
    rows = p.records.query(LINE, 0, 10_000)
    assert [(r.metric, r.kind) for r in rows] == [
        ("GoodCount", RecordKind.READING), ("State", RecordKind.STATE), ("GoodCount", RecordKind.READING),
        ("Alarms/Overtemp", RecordKind.ALARM), ("Temp", RecordKind.READING)]
    assert rows[-1].is_historical and rows[-1].cell == "Filler" and rows[0].received_ms == 1_005
    foreign = FakeChange(FakeMetric("legacy", "node", None, "X", 1, Quality.GOOD, 1, 1))
    assert observation_from_change(foreign, mapping) is None
