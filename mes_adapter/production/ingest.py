"""Where the host's change stream enters the MES core: one observation → records and counters.

The host (``mes_adapter.host``) decodes Sparkplug and emits metric changes; this module turns each
into an :class:`Observation` (line, cell, metric, value, quality, source time, birth/historical
flags) and hands it to the two consumers that need every value:

* the records store (buffered, flushed in batches by :meth:`Ingest.flush` or when ``max_batch`` is
  reached; the host calls ``flush`` after each payload or on a short timer), classified as state,
  alarm or reading from the line config;
* the production counters, when the metric is a configured counter — persisted at once, because a
  lost counter sample would be a lost increment.

A failed write loses nothing: the records of a failed flush stay queued (in order, ahead of newer
ones) and are written by the next :meth:`Ingest.flush`; the caller stops feeding while
:attr:`Ingest.pending` is at ``max_pending`` (back-pressure up to the host's MQTT reading). A
counter sample that could not be stored waits in the counters' own backlog
(:meth:`ProductionCounters.retry`). Single records that can never be stored (a time SQLite cannot
hold) are quarantined by the store, logged and counted; the rest of their flush is stored.

:func:`observation_from_change` reads the host's ``MetricChange`` by attribute (duck-typed), so this
module does not import the host package and survives its refactors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from mes_adapter.config.mes import MesConfig
from mes_adapter.production.counters import CounterDelta, CounterSample
from mes_adapter.production.quantities import TRANSIENT_ERRORS, ProductionCounters
from mes_adapter.production.records import Record, RecordKind, RecordStorePort
from uns.conventions import Quality
from uns.isa95 import EquipmentPath, NamespaceMapping

log = logging.getLogger(__name__)

#: while writes fail, log the still-failing state at most this often (one line per episode start)
_REPEAT_LOG_S = 30.0


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
    #: the edge flagged the source time as wrong (``FutureTimestamp``, or too old: ``OldTimestamp``)
    clock_flagged: bool = False


class Placement:
    """ISA-95 placement of Sparkplug ids, remembered per (group, edge node, device).

    Why: the same few ids come with every value, and validating them anew each time cost ~40 % of
    the ingest's CPU in a replay (bench/replay_to_mes.py)."""

    def __init__(self, mapping: NamespaceMapping) -> None:
        self._mapping = mapping
        self._known: dict[tuple[str, str, str | None], EquipmentPath | None] = {}

    def __call__(self, group_id: str, edge_node_id: str, device_id: str | None) -> EquipmentPath | None:
        key = (group_id, edge_node_id, device_id)
        try:
            return self._known[key]
        except KeyError:
            pass
        try:
            found: EquipmentPath | None = self._mapping.from_sparkplug(group_id, edge_node_id, device_id)
        except ValueError:
            found = None
        if len(self._known) < 100_000:  # ids come from peers: bound what is remembered
            self._known[key] = found
        return found


def observation_from_change(change: Any, mapping: NamespaceMapping | Placement) -> Observation | None:
    """A host ``MetricChange`` as an :class:`Observation`; None if its ids are not ISA-95 placed.

    The time is the metric's ``timestamp_ms`` (the source time, or the death time once STALE), so a
    STALE restatement after a death is a new row, not a duplicate of the last good value.
    """
    metric = change.metric
    place = mapping if isinstance(mapping, Placement) else Placement(mapping)
    equipment = place(metric.group_id, metric.edge_node_id, metric.device_id)
    if equipment is None:
        return None
    return Observation(line=equipment.line.topic, cell=equipment.cell, metric=metric.name,
                       value=metric.value, quality=metric.quality, source_ts_ms=metric.timestamp_ms,
                       received_ms=metric.received_ms, is_birth=bool(change.birth),
                       is_historical=bool(change.historical),
                       clock_flagged=bool(getattr(metric, "future_timestamp", False)
                                          or getattr(metric, "old_timestamp", False)))


class Ingest:
    """Feeds observations into the records store (batched) and the production counters."""

    def __init__(self, config: MesConfig, production: ProductionCounters, records: RecordStorePort,
                 max_batch: int = 2000, max_pending: int = 200_000) -> None:
        self._production = production
        self._records = records
        self._max_batch = max_batch
        #: stop feeding while this many records wait for the store (see :attr:`full`)
        self.max_pending = max_pending
        self._pending: list[Record] = []
        #: why the last write failed, while it keeps failing (None: writes succeed)
        self.failing: str | None = None
        #: failed write attempts (records flushes and counter samples)
        self.write_failures = 0
        self._logged_at = 0.0
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
        deltas: list[CounterDelta] = []
        if self._production.signal(obs.line, obs.cell, obs.metric) is not None:
            sample = CounterSample(obs.value, obs.source_ts_ms, obs.is_birth, obs.quality,
                                   received_ms=obs.received_ms, historical=obs.is_historical,
                                   clock_flagged=obs.clock_flagged)
            try:
                deltas = self._production.observe(obs.line, obs.cell, obs.metric, sample)
            except TRANSIENT_ERRORS as exc:  # the sample waits in the counters' backlog
                self._failed(exc)
                return []
        if len(self._pending) >= self._max_batch and self.failing is None:
            self.flush()
        return deltas

    def flush(self) -> int:
        """Write the waiting counter samples and the queued records; returns how many records
        were new. On a passing store error (disk full, locked) everything not written stays
        queued, :attr:`failing` says why, and 0 is returned; other errors are raised."""
        try:
            self._production.retry()
        except TRANSIENT_ERRORS as exc:
            self._failed(exc)
            return 0
        pending, self._pending = self._pending, []
        try:
            new = self._records.add_many(pending)
        except TRANSIENT_ERRORS as exc:
            self._pending = pending + self._pending
            self._failed(exc)
            return 0
        except BaseException:
            self._pending = pending + self._pending
            raise
        if self.failing is not None:
            log.warning("ingest writes succeed again after %d failed attempts; nothing was lost",
                        self.write_failures)
            self.failing = None
        return new

    def _failed(self, exc: BaseException) -> None:
        self.write_failures += 1
        reason = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if self.failing is None or now - self._logged_at >= _REPEAT_LOG_S:
            log.error("ingest write failed (%s); %d records and %d counter samples kept, retrying",
                      reason, len(self._pending), self._production.backlog)
            self._logged_at = now
        self.failing = reason

    @property
    def pending(self) -> int:
        """Records and counter samples waiting for their store."""
        return len(self._pending) + self._production.backlog

    @property
    def full(self) -> bool:
        """True while so much waits for the store that the caller must stop feeding."""
        return len(self._pending) >= self.max_pending
