"""Shared builders for the MES tests: one configured line with good/reject/consumed counters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mes_adapter.config.mes import CounterSignal, LineConfig, MesConfig, StateSignal
from mes_adapter.confirmations.outbox import Outbox
from mes_adapter.confirmations.service import ConfirmationService
from mes_adapter.context import ContextService, ContextStore
from mes_adapter.production.counters import CounterRole
from mes_adapter.production.quantities import ProductionCounters, ProductionStore
from mes_adapter.production.records import RecordStore

LINE = "acme/plant1/packaging/line2"
MIN = 60_000
H = 60 * MIN


def line_config() -> LineConfig:
    return LineConfig(
        line=LINE,
        counters=[CounterSignal(metric="GoodCount", role=CounterRole.GOOD),
                  CounterSignal(metric="RejectCount", role=CounterRole.REJECT, modulus=2**16),
                  CounterSignal(metric="Preforms", cell="Blower", role=CounterRole.CONSUMED,
                                material_id="RM-PET-500")],
        state=StateSignal(metric="State"),
        ideal_cycle_s={"SKU-12": 2.0}, default_ideal_cycle_s=1.0)


@dataclass
class Parts:
    config: MesConfig
    context: ContextService
    production: ProductionCounters
    outbox: Outbox
    records: RecordStore
    confirmations: ConfirmationService


def build(tmp_path: Path, **overrides: object) -> Parts:
    settings: dict[str, object] = {"partial_interval_s": 3600, "confirmation_grace_s": 60, **overrides}
    config = MesConfig(data_dir=tmp_path, lines=[line_config()], **settings)  # type: ignore[arg-type]
    context = ContextService(ContextStore(config.context_db))
    production = ProductionCounters(config, ProductionStore(config.production_db))
    outbox = Outbox(config.outbox_db)
    records = RecordStore(config.records_db)
    return Parts(config, context, production, outbox, records,
                 ConfirmationService(config, context, production, outbox))
