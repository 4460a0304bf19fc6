"""The I/O shell around :class:`QualityEpisodeDetector`: host changes in, stored rows and ``_alarms`` out.

Fed by its own host change stream (like ingest). For each action of the pure detector it:

* binds the episode to the batch, work order and phase active on the line at the episode's
  *source* start time (the context timeline), stores it (open: ``end_ms`` NULL), and publishes a
  retained ``{"kind": "quality", "state": "active", ...}`` on
  ``<line>/_alarms/<cell>/<tag path>`` (node-level tags: ``<line>/_alarms/<tag path>``);
* on close, sets ``end_ms`` on the same row and replaces the retained message with
  ``"state": "cleared"`` and the end, so a plant app subscribing later still sees the last episode.

Episodes left open by a previous run are loaded at construction, so the next GOOD closes the
stored row rather than being lost, and a birth restating the still-bad tag opens nothing new.
A tag that does not follow the ISA-95 mapping has no line to bind to and is ignored. A birth
replayed from a broker's birth certificate (``$sparkplug/certificates``, read by a host that starts
after the edge) restates values as of the edge's original birth, so it neither opens nor closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from mes_adapter.context import ContextService
from mes_adapter.host import Change, ChangeStream, MetricChange, MetricState, drain
from mes_adapter.status.data_status import iso
from mes_adapter.unwritten import keep_newest
from uns.conventions import Quality
from uns.isa95 import ALARMS, EquipmentPath, NamespaceMapping

from .detector import (
    Action,
    EpisodeOpened,
    QualityEpisodeDetector,
    QualitySample,
    TagKey,
    sample_reason,
    status_name,
)
from .store import EpisodeStore, QualityEpisode

log = logging.getLogger("uns.adapter.episodes")

_BATCH = 5000  # changes per store transaction


@dataclass
class _Written:
    """What one transaction wrote; applied to the detector and counters only after its commit."""

    opened: dict[TagKey, tuple[int, int]] = field(default_factory=dict)  # key -> (episode id, start_ms)
    announce: list[tuple[int, EquipmentPath]] = field(default_factory=list)
    opens: int = 0
    closes: int = 0

#: ``(topic, payload, retain)`` → the UNS link
Publish = Callable[[str, bytes, bool], None]
#: a state → its UNS topic (None when it is not mirrored)
TopicOf = Callable[[MetricState], str | None]


def sample_of(state: MetricState) -> QualitySample:
    """The detector's view of one live value: the edge's own verdict (``quality_reason``,
    ``raw_value``, decoded by the live model from ``QualityReason``/``RawValue``) wins over the
    reason derived from the quality and status code."""
    reason = sample_reason(state.quality, state.status_code, state.quality_reason)
    return QualitySample(TagKey(state.group_id, state.edge_node_id, state.device_id, state.name), state.quality,
                         state.timestamp_ms, state.received_ms, reason, state.status_code, state.raw_value,
                         no_value=state.value is None and state.quality in _NO_STATEMENT)


#: a null in these qualities says nothing about the tag: GOOD null is a birth before the first read
#: (or a command-only metric, which never has a value); STALE null is such a metric after a death.
#: A STALE null after a BAD sample is inside the BAD sample's episode already.
_NO_STATEMENT = frozenset({Quality.GOOD, Quality.STALE})


def alarm_topic(mapping: NamespaceMapping, equipment: EquipmentPath, metric: str) -> str:
    """``<line>/_alarms/<cell>/<tag path>``, or ``<line>/_alarms/<tag path>`` for a line-level tag."""
    cell = [equipment.cell] if equipment.cell else []
    return mapping.line_topic(equipment.line, ALARMS, *cell, *metric.split("/"))


def alarm_payload(episode: QualityEpisode) -> bytes:
    body = {"kind": episode.kind, "state": "active" if episode.active else "cleared", "reason": episode.reason,
            "quality": episode.quality, "status": episode.status, "status_code": episode.status_code,
            "raw_value": episode.raw_value, "start_ms": episode.start_ms, "end_ms": episode.end_ms,
            "batch_id": episode.batch_id, "work_order_id": episode.work_order_id, "phase": episode.phase,
            "line": episode.line, "cell": episode.cell, "metric": episode.metric, "topic": episode.topic,
            "episode_id": episode.id}
    return json.dumps(body, separators=(",", ":"), default=str).encode()


class EpisodeService:
    """Detects, stores and publishes quality episodes (see module doc)."""

    def __init__(self, store: EpisodeStore, context: ContextService, mapping: NamespaceMapping,
                 topic_of: TopicOf, publish: Publish, notify: Callable[[QualityEpisode], None] | None = None) -> None:
        self.store = store
        self._context = context
        self._mapping = mapping
        self._topic_of = topic_of
        self._publish = publish
        self._notify = notify
        self.detector = QualityEpisodeDetector()
        self.detector.restore(store.open_episodes())
        self.opened = 0
        self.closed = 0
        self.errors = 0
        #: detector actions whose transaction failed, written first by the next drain (in order)
        self._unstored: list[tuple[Action, MetricState]] = []
        #: actions given up because the store failed for longer than the kept actions allow
        self.dropped = 0
        #: why the last write failed, until one succeeds again (for readiness)
        self.failing: str | None = None

    @property
    def waiting(self) -> int:
        """Actions kept from failed transactions, not yet stored."""
        return len(self._unstored)

    async def run(self, stream: ChangeStream, stopping: asyncio.Event) -> None:
        await drain(stream, stopping, self.handle_many, _BATCH)

    def handle(self, change: Change) -> None:
        self.handle_many([change])

    def handle_many(self, changes: list[Change]) -> None:
        """Run the detector over ``changes`` (pure, cheap); only when something opened or closed,
        write those in one store transaction, then publish them (after the commit, so the UNS never
        announces an episode the store does not hold). Plain GOOD data costs no write at all.

        A transaction that fails (disk full, read-only file) stores nothing, binds nothing and loses
        nothing: its actions are kept, in order, and written first by the next drain. The detector
        learns an episode's store id only after the commit, so a rolled-back insert's row id (which
        SQLite hands out again) can never make a later close end another tag's episode.
        """
        actions = self._unstored
        for change in changes:
            if isinstance(change, MetricChange) and not change.from_certificate:
                state = change.metric
                actions.extend((a, state)
                               for a in self.detector.observe(sample_of(state), historical=change.historical))
        if not actions:
            return
        written = _Written()
        try:
            with self.store.batch():
                for action, state in actions:
                    self._store(action, state, written)
        except Exception as exc:  # noqa: BLE001 - the commit failed (disk full?): keep, count, say it, go on
            self.errors += 1
            self._keep_unstored(actions)
            if self.failing is None:  # once per failure episode, not once per drain
                log.exception("quality episodes of %d change(s) not stored; kept to be written when the store "
                              "accepts writes again", len(actions))
            self.failing = f"quality episode store failing: {exc} ({len(self._unstored)} action(s) waiting)"
            return
        self._unstored = []
        self.failing = None
        for key, (episode_id, start_ms) in written.opened.items():
            self.detector.bind(key, episode_id, start_ms)
        self.opened += written.opens
        self.closed += written.closes
        # once per episode, as stored now (opened and closed in one transaction: its cleared state)
        for episode_id, equipment in dict(written.announce).items():
            try:
                self._announce(episode_id, equipment)
            except Exception:  # noqa: BLE001 - stored already; the UNS copy is a courtesy that must not stop us
                self.errors += 1
                log.exception("quality episode %d not published", episode_id)

    def _keep_unstored(self, actions: list[tuple[Action, MetricState]]) -> None:
        """Keep what a failed transaction held (:func:`mes_adapter.unwritten.keep_newest`); what is
        given up is counted and said."""
        self._unstored, over = keep_newest(actions)
        if over:
            self.dropped += over
            log.error("quality episode store still failing: %d action(s) dropped (%d in all), the newest %d kept",
                      over, self.dropped, len(self._unstored))

    def _store(self, action: Action, state: MetricState, written: _Written) -> None:
        try:
            equipment = self._mapping.from_sparkplug(state.group_id, state.edge_node_id, state.device_id)
        except ValueError:
            return  # not on an ISA-95 line: nothing to bind it to
        try:
            if isinstance(action, EpisodeOpened):
                episode_id = self._opened(action, state, equipment)
                written.opened[action.key] = (episode_id, action.start_ms)
                written.opens += 1
                written.announce.append((episode_id, equipment))
                return
            episode_id = action.episode.episode_id
            if episode_id is None:  # opened in this transaction (e.g. both kept from a failed one)
                pending = written.opened.get(action.key)
                if pending is None or pending[1] != action.episode.start_ms:
                    return  # its open was never stored (a row that could not be): nothing to close
                episode_id = pending[0]
            self.store.close_episode(episode_id, action.end_ms, action.sample.received_ms)
            written.closes += 1
            written.announce.append((episode_id, equipment))
        except sqlite3.OperationalError:
            raise  # the store itself (disk full, read-only, locked): the whole transaction is retried
        except Exception:  # noqa: BLE001 - one row that cannot be stored must not lose the others
            self.errors += 1
            log.exception("quality episode of %s not recorded", state.name)

    def _opened(self, action: EpisodeOpened, state: MetricState, equipment: EquipmentPath) -> int:
        sample = action.sample
        line = equipment.line.topic
        context = self._context.active_at(line, sample.timestamp_ms)
        return self.store.open(
            line=line, cell=equipment.cell, key=sample.key, topic=self._topic_of(state), quality=sample.quality.value,
            reason=sample.reason or "bad_status", status_code=sample.status_code,
            status=status_name(sample.status_code), raw_value=sample.raw_value, start_ms=sample.timestamp_ms,
            batch_id=context.batch_id if context else None, work_order_id=context.work_order_id if context else None,
            phase=context.phase if context else None, received_ms=sample.received_ms)

    def _announce(self, episode_id: int, equipment: EquipmentPath) -> None:
        episode = self.store.get(episode_id)
        if episode is None:
            return
        self._publish(alarm_topic(self._mapping, equipment, episode.metric), alarm_payload(episode), True)
        if self._notify is not None:
            self._notify(episode)

    def window_gaps(self, line: str, start_ms: int, end_ms: int, inputs: set[tuple[str | None, str]] | None = None,
                    limit: int = 5) -> list[str]:
        """Reasons a window of ``line`` is incomplete: episodes on its inputs ``{(cell, metric)}``
        (every tag when None) overlapping ``[start_ms, end_ms)``; for OEE."""
        found = [e for e in self.store.query(line, start_ms, end_ms, limit=10_000)
                 if inputs is None or (e.cell, e.metric) in inputs]
        reasons = []
        for e in found[:limit]:
            tag = e.metric if e.cell is None else f"{e.cell}/{e.metric}"
            why = e.reason if e.status is None else f"{e.reason} {e.status}"
            when = (f"since {iso(e.start_ms)}, still active" if e.end_ms is None
                    else f"from {iso(e.start_ms)} to {iso(e.end_ms)}")
            reasons.append(f"{tag} {e.quality} ({why}) {when}")
        if len(found) > limit:
            reasons.append(f"and {len(found) - limit} more quality episode(s) in the window")
        return reasons
