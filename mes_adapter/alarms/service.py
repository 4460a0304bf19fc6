"""The I/O shell around :class:`ConditionFolder`: host changes in, journal rows and retained ``_alarms`` out.

Fed by its own lossless host change stream. After each drained batch of changes, every condition
whose state changed is bound to the batch, work order and phase active on its line at the event's
*source* time (the context timeline), written to the :class:`AlarmJournal` (one transaction), and
then published retained on ``<line>/_alarms/<cell>/_conditions/<ConditionName>`` with
``"kind": "condition"`` (after the commit: the UNS never announces what the journal does not hold).
A cleared alarm stays retained with ``"active": false``; a death restates the last state with
``"stale": true``. Quality episodes share ``_alarms`` on ``<line>/_alarms/<cell>/<tag path>`` with
``"kind": "quality"``; ``_conditions`` is a reserved-looking segment no tag path starts with
(tag paths are ISA-95 names, which cannot start with ``_``), so the two never collide.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from mes_adapter.context import ContextService
from mes_adapter.host import Change, ChangeStream, MetricChange, drain
from mes_adapter.unwritten import keep_newest
from uns.conventions import Quality
from uns.isa95 import ALARMS, EquipmentPath, NamespaceMapping

from .fold import ConditionFolder, ConditionKey, ConditionState, condition_field
from .store import AlarmEvent, AlarmJournal, key_of, state_of

log = logging.getLogger("uns.adapter.alarms")

_BATCH = 5000  # changes per drain

_Row = tuple[str, "str | None", ConditionKey, ConditionState, object]
#: the sub-path of ``_alarms`` that holds condition alarms (quality episodes use the tag path)
CONDITIONS = "_conditions"

#: ``(topic, payload, retain)`` → the UNS link
Publish = Callable[[str, bytes, bool], None]


def condition_topic(mapping: NamespaceMapping, equipment: EquipmentPath, condition: str) -> str:
    """``<line>/_alarms/<cell>/_conditions/<ConditionName>`` (no cell: ``<line>/_alarms/_conditions/<Name>``)."""
    cell = [equipment.cell] if equipment.cell else []
    return mapping.line_topic(equipment.line, ALARMS, *cell, CONDITIONS, condition)


def condition_payload(event: AlarmEvent) -> bytes:
    """The documented retained JSON (docs/alarms.md, "The UNS: `_alarms`")."""
    body = {"kind": "condition", "condition": event.condition, "active": event.active, "acked": event.acked,
            "confirmed": event.confirmed, "retain": event.retain, "severity": event.severity,
            "message": event.message, "state": event.state, "stale": event.stale,
            "source_ts_ms": event.source_ts_ms, "received_ms": event.received_ms,
            "condition_id": event.condition_id, "event_id": event.event_id, "line": event.line, "cell": event.cell,
            "batch_id": event.batch_id, "work_order_id": event.work_order_id, "phase": event.phase,
            "journal_id": event.id}
    return json.dumps(body, separators=(",", ":")).encode()


class AlarmService:
    """Folds, journals and publishes condition alarms (see module doc)."""

    def __init__(self, journal: AlarmJournal, context: ContextService, mapping: NamespaceMapping,
                 publish: Publish, notify: Callable[[AlarmEvent], None] | None = None,
                 on_journaled: Callable[[AlarmEvent, AlarmEvent | None], None] | None = None) -> None:
        self.journal = journal
        self._context = context
        self._mapping = mapping
        self._publish = publish
        self._notify = notify
        #: called with each journaled row and the condition's row before it (exception and hold rules)
        self.on_journaled = on_journaled
        self.folder = ConditionFolder()
        self._last: dict[ConditionKey, AlarmEvent] = {}
        for event in journal.latest():
            self.folder.restore(key_of(event), state_of(event))
            self._last[key_of(event)] = event
        self.journaled = 0
        #: journal rows whose transaction failed, written first by the next drain (in order)
        self._unjournaled: list[_Row] = []
        #: alarm changes given up: the journal failed for longer than the kept rows allow (logged)
        self.not_journaled = 0
        self.errors = 0
        #: why the last write failed, until one succeeds again (for readiness)
        self.failing: str | None = None

    async def run(self, stream: ChangeStream, stopping: asyncio.Event) -> None:
        await drain(stream, stopping, self.handle_many, _BATCH)

    def handle_many(self, changes: list[Change]) -> None:
        for change in changes:
            if not isinstance(change, MetricChange) or change.from_certificate or change.historical:
                continue
            state = change.metric
            found = condition_field(state.name)
            if found is None:
                continue
            name, field_name = found
            self.folder.observe(ConditionKey(state.group_id, state.edge_node_id, state.device_id, name), field_name,
                                state.value, stale=state.quality is Quality.STALE,
                                source_ts_ms=state.source_timestamp_ms, received_ms=state.received_ms)
        changed = self.folder.flush()
        if changed or self._unjournaled:
            self._record(changed)

    @property
    def waiting(self) -> int:
        """Journal rows kept from failed transactions, not yet written."""
        return len(self._unjournaled)

    def _record(self, changed: list[tuple[ConditionKey, ConditionState]]) -> None:
        """Journal the changed conditions (rows kept from a failed write first, in order), then
        publish and run the rules. A failed write loses nothing: its rows are kept, bound to the
        context of their own source time already, and written first by the next drain."""
        rows = self._unjournaled
        for key, state in changed:
            try:
                equipment = self._mapping.from_sparkplug(key.group_id, key.edge_node_id, key.device_id)
            except ValueError:
                continue  # not on an ISA-95 line: nothing to bind it to
            line = equipment.line.topic
            rows.append((line, equipment.cell, key, state, self._context.active_at(line, state.source_ts_ms)))
        if not rows:
            return
        try:
            ids = self.journal.append_many(rows)
        except Exception as exc:  # noqa: BLE001 - the commit failed (disk full?): keep, count, say it, go on
            self.errors += 1
            rows, over = keep_newest(rows)
            if over:
                self.not_journaled += over
                log.error("alarm journal still failing: %d alarm change(s) given up (%d in all)", over,
                          self.not_journaled)
            self._unjournaled = rows
            if self.failing is None:
                log.exception("%d alarm change(s) not journaled yet; kept to be written when the journal accepts "
                              "writes again", len(rows))
            self.failing = f"alarm journal failing: {exc} ({len(rows)} change(s) waiting)"
            return
        self._unjournaled = []
        self.failing = None
        self.journaled += len(ids)
        for journal_id, (_line, _cell, key, _state, _ctx) in zip(ids, rows, strict=True):
            event = self.journal.get(journal_id)
            if event is None:
                continue
            previous, self._last[key] = self._last.get(key), event
            if self.on_journaled is not None:
                self.on_journaled(event, previous)
            try:
                equipment = self._mapping.from_sparkplug(key.group_id, key.edge_node_id, key.device_id)
                self._publish(condition_topic(self._mapping, equipment, key.name), condition_payload(event), True)
                if self._notify is not None:
                    self._notify(event)
            except Exception:  # noqa: BLE001 - journaled already; the UNS copy must not stop us
                self.errors += 1
                log.exception("alarm %s not published", key.name)
