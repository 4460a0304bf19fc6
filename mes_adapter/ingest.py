"""Where the host's change stream enters the MES core: one observation → records and counters.

The host (``mes_adapter.host``) decodes Sparkplug and emits metric changes; this module turns each
into an :class:`Observation` (line, cell, metric, value, quality, source time, birth/historical
flags) and hands it to the two consumers that need every value:

* the records store (buffered, flushed in batches by :meth:`Ingest.flush` or when ``max_batch`` is
  reached; the host calls ``flush`` after each payload or on a short timer), classified as state,
  alarm or reading from the line config;
* the production counters, when the metric is a configured counter — persisted at once, because a
  lost counter sample would be a lost increment.

:func:`observation_from_change` reads the host's ``MetricChange`` by attribute (duck-typed), so this
module does not import the host package and survives its refactors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uns.conventions import Quality
from uns.isa95 import NamespaceMapping

from mes_adapter.config import MesConfig
from mes_adapter.counters import CounterDelta, CounterSample
from mes_adapter.production import ProductionCounters
from mes_adapter.records import Record, RecordKind, RecordStore


@dataclass(frozen=True, slots=True)
class Observation:
    """One value of one metric of a line, as the MES core needs it."""

    line: str
    cell: str | None
    metric: str
    value: Any
    quality: Quality
    source_ts_ms: int
    received_ms: int | None = None
    is_birth: bool = False
    is_historical: bool = False


def observation_from_change(change: Any, mapping: NamespaceMapping) -> Observation | None:
    """A host ``MetricChange`` as an :class:`Observation`; None if its ids are not ISA-95 placed.

    The time is the metric's ``timestamp_ms`` (the source time, or the death time once STALE), so a
    STALE restatement after a death is a new row, not a duplicate of the last good value.
    """
    metric = change.metric
    try:
        equipment = mapping.from_sparkplug(metric.group_id, metric.edge_node_id, metric.device_id)
    except ValueError:
        return None
    return Observation(line=equipment.line.topic, cell=equipment.cell, metric=metric.name,
                       value=metric.value, quality=metric.quality, source_ts_ms=metric.timestamp_ms,
                       received_ms=metric.received_ms, is_birth=bool(change.birth),
                       is_historical=bool(change.historical))


class Ingest:
    """Feeds observations into the records store (batched) and the production counters."""

    def __init__(self, config: MesConfig, production: ProductionCounters, records: RecordStore,
                 max_batch: int = 2000) -> None:
        self._production = production
        self._records = records
        self._max_batch = max_batch
        self._pending: list[Record] = []
        self._state = {(c.line, c.state.cell or "", c.state.metric): True
                       for c in config.lines if c.state is not None}
        self._alarm_prefixes = {c.line: tuple(c.alarm_prefixes) for c in config.lines}

    def kind(self, obs: Observation) -> RecordKind:
        if (obs.line, obs.cell or "", obs.metric) in self._state:
            return RecordKind.STATE
        if obs.metric.startswith(self._alarm_prefixes.get(obs.line, ("Alarms/",))):
            return RecordKind.ALARM
        return RecordKind.READING

    def observe(self, obs: Observation) -> list[CounterDelta]:
        """Queue the record, count the counter; returns the counter deltas (mostly empty)."""
        self._pending.append(Record(
            line=obs.line, cell=obs.cell, metric=obs.metric, value=obs.value,
            source_ts_ms=obs.source_ts_ms, quality=obs.quality, kind=self.kind(obs),
            received_ms=obs.received_ms, is_historical=obs.is_historical))
        deltas = self._production.observe(
            obs.line, obs.cell, obs.metric,
            CounterSample(obs.value, obs.source_ts_ms, obs.is_birth, obs.quality))
        if len(self._pending) >= self._max_batch:
            self.flush()
        return deltas

    def flush(self) -> int:
        """Write the queued records in one transaction; returns how many were new."""
        pending, self._pending = self._pending, []
        return self._records.add_many(pending)

    @property
    def pending(self) -> int:
        return len(self._pending)
