"""The plain-JSON UNS mirror: where each metric goes, what its JSON says, and when it is sent.

Pure: fed :class:`~mes_adapter.host.live_model.Change` records and a clock, it hands back the
retained messages to publish (QoS 1 by default, retained, by :mod:`.mirror_publisher`).

Topics. Ids that follow the ISA-95 convention (``uns.isa95.NamespaceMapping``) go to
``[<mirror_root>/]<enterprise>/<site>/<area>/<line>[/<cell>]/<metric path>``. Ids that do not
(a third-party edge node named ``Plant 1``/``gw-07``) fall back to
``<fallback_root>/<group_id>/<edge_node_id>[/<device_id>]/<metric path>`` (``fallback_root``
defaults to ``sparkplug``), so nothing a node publishes is lost from the UNS. ``bdSeq`` is
session bookkeeping, not a tag; ``Node Control/*`` and ``Device Control/*`` are commands, so they
are left out unless ``include_control_metrics``.

Payloads. ``uns.uns_payload.UnsValue`` (built by ``value_json``, the same bytes without the model,
when a message is taken for sending: a change conflated away is never turned into JSON) on the
metric topic (value, source timestamp, quality,
status code, datatype, unit) and ``UnsMeta`` on its ``_meta`` sibling (datatype, unit, range,
description, Sparkplug ids and alias; a template's name, version and members, a DataSet's
columns), the latter sent when a birth changes it. A template instance is one JSON object of its
members and a DataSet a list of row objects (:mod:`.template_json`). STALE values
keep their last value and carry the death time. Historical values are never mirrored.

Conflation. Per topic at most one message per ``interval_ms``: the first change of a quiet tag
goes out at once, changes inside the interval are held and only the latest is sent when the
interval ends. Held messages also absorb back-pressure: while the shell is busy publishing, newer
values replace older unsent ones, so nothing older is ever published after something newer and
the broker is not flooded by fast tags.

Retirement. A metric no birth declares any more (the tracker's ``MetricsRetired``, after its
grace) has its value and ``_meta`` topics deleted: an empty retained message replaces whatever is
pending for them, so the UNS ends up holding exactly the tags the edges declare.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from uns.isa95 import NamespaceMapping, metric_path_levels
from uns.sparkplug.control import BDSEQ, CONTROL_PREFIXES
from uns.sparkplug.model import DataSet, Template
from uns.uns_payload import UnsMeta, value_json

from .live_model import Change, MetricChange, MetricState
from .template_json import dataset_columns, template_meta, uns_value

log = logging.getLogger("uns.host.mirror")

#: "not in the topic cache" (None there means "not mirrored")
_UNKNOWN: tuple[str, str] = ("", "")


class MirrorMessage(NamedTuple):
    """One retained message to publish (a named tuple: one is built per mirrored change)."""

    topic: str
    payload: bytes
    #: host receive time of the newest change in this message (for mirror lag)
    received_ms: int


@dataclass(slots=True)
class _Pending:
    payload: bytes
    received_ms: int
    #: when :meth:`UnsMirror.take` handed it out (0: not yet)
    sent_ms: int = 0
    #: a value topic's state whose JSON :meth:`UnsMirror.take` builds into ``payload`` (None:
    #: ``payload`` is final): a fast tag's changes replace one another here at no JSON cost
    state: MetricState | None = None


@dataclass(slots=True)
class MirrorCounters:
    offered: int = 0
    conflated: int = 0
    taken: int = 0
    #: values whose JSON could not be built when taken (our bug; logged, the rest still sent)
    unencodable: int = 0
    unmapped_topics: int = 0
    skipped_metrics: int = 0
    retired_topics: int = 0


class UnsMirror:
    def __init__(self, mapping: NamespaceMapping | None = None, *, interval_ms: int = 100,
                 fallback_root: str = "sparkplug", include_control_metrics: bool = False) -> None:
        self.mapping = mapping or NamespaceMapping()
        self.interval_ms = interval_ms
        self.fallback_root = fallback_root.strip("/")
        self.include_control_metrics = include_control_metrics
        self.counters = MirrorCounters()
        self._topics: dict[tuple[str, str, str | None, str], tuple[str, str] | None] = {}
        self._prefixes: dict[tuple[str, str, str | None], tuple[str, bool]] = {}
        self._ready: dict[str, _Pending] = {}
        self._held: dict[str, _Pending] = {}
        self._due: list[tuple[int, str]] = []  # heap of (due_ms, topic) for _held
        self._last_meta: dict[str, bytes] = {}
        #: the last message taken per topic (what the broker should be retaining) and when
        self._retained: dict[str, _Pending] = {}

    # -- topics ------------------------------------------------------------------------------

    def topics_for(self, group_id: str, edge_node_id: str, device_id: str | None,
                   name: str) -> tuple[str, str] | None:
        """(value topic, meta topic) of a metric, or None if it is not mirrored."""
        key = (group_id, edge_node_id, device_id, name)
        try:
            return self._topics[key]
        except KeyError:
            pass
        topics: tuple[str, str] | None
        if name == BDSEQ or (not self.include_control_metrics and name.startswith(CONTROL_PREFIXES)):
            topics = None
        else:
            prefix = self._prefix(group_id, edge_node_id, device_id)
            try:
                path = metric_path_levels(name)
            except ValueError:
                topics = None
            else:
                value_topic = f"{prefix}/{path}"
                topics = (value_topic, f"{value_topic}/_meta")
        self._topics[key] = topics
        return topics

    def _prefix(self, group_id: str, edge_node_id: str, device_id: str | None) -> str:
        key = (group_id, edge_node_id, device_id)
        cached = self._prefixes.get(key)
        if cached is not None:
            return cached[0]
        try:
            equipment = self.mapping.from_sparkplug(group_id, edge_node_id, device_id)
            prefix = self.mapping._root(equipment.topic)  # noqa: SLF001 - the mapping's own root rule
            mapped = True
        except ValueError:
            levels = [self.fallback_root, group_id, edge_node_id] + ([device_id] if device_id else [])
            prefix = "/".join(level for level in levels if level)
            mapped = False
            self.counters.unmapped_topics += 1
        self._prefixes[key] = (prefix, mapped)
        return prefix

    # -- shaping -----------------------------------------------------------------------------

    @staticmethod
    def value_payload(state: MetricState) -> bytes:
        """The ``UnsValue`` JSON of a state, built without the model (one per sent value: the hot path)."""
        value = state.value
        if value.__class__ is not float:  # a float is its own JSON value (non-finite: value_json's null)
            value = uns_value(value)
        return value_json(value, state.timestamp_ms, state.quality, state.status_code,
                          state.datatype, state.unit, False, state.future_timestamp, state.quality_reason,
                          state.raw_value)

    @staticmethod
    def meta_payload(state: MetricState) -> bytes:
        return UnsMeta(datatype=state.datatype, unit=state.unit, eng_low=state.eng_low, eng_high=state.eng_high,
                       description=state.description, group_id=state.group_id,
                       edge_node_id=state.edge_node_id, device_id=state.device_id, metric_name=state.name,
                       alias=state.alias,
                       template=template_meta(state.value) if isinstance(state.value, Template) else None,
                       columns=dataset_columns(state.value) if isinstance(state.value, DataSet) else None,
                       ).to_bytes()

    # -- flow --------------------------------------------------------------------------------

    def offer(self, changes: Iterable[Change], now_ms: int) -> None:
        # once per change at 10,000 changes/s: the topic cache is read directly (a metric state
        # begins with the four ids ``topics_for`` keys on) and the counters are added once
        cache = self._topics
        ready, held, retained = self._ready, self._held, self._retained
        offered = skipped = conflated = 0
        for change in changes:
            if not isinstance(change, MetricChange) or change.historical:
                continue
            state = change.metric
            topics = cache.get(state[:4], _UNKNOWN)
            if topics is _UNKNOWN:
                topics = self.topics_for(state.group_id, state.edge_node_id, state.device_id, state.name)
            if topics is None:
                skipped += 1
                continue
            offered += 1
            if change.birth:
                meta = self.meta_payload(state)
                if self._last_meta.get(topics[1]) != meta:
                    self._last_meta[topics[1]] = meta
                    self._queue(topics[1], meta, state.received_ms, now_ms)
            # ``_queue`` inlined for the value topic: conflate onto a pending message, or a new one
            # ready now unless its interval since the last one sent is still running; the state
            # is kept and its JSON built by ``take`` (only for the changes that are sent)
            topic = topics[0]
            pending = ready.get(topic) or held.get(topic)
            if pending is not None:
                pending.state = state
                pending.received_ms = state.received_ms
                conflated += 1
                continue
            last = retained.get(topic)
            if last is None or last.sent_ms + self.interval_ms <= now_ms:
                ready[topic] = _Pending(b"", state.received_ms, 0, state)
            else:
                self._queue(topic, b"", state.received_ms, now_ms, state)
        counters = self.counters
        counters.offered += offered
        counters.skipped_metrics += skipped
        counters.conflated += conflated

    def retire(self, group_id: str, edge_node_id: str, device_id: str | None, names: Iterable[str],
               now_ms: int) -> int:
        """Delete the retained topics of metrics no birth declares any more; returns how many."""
        retired = 0
        for name in names:
            topics = self._topics.pop((group_id, edge_node_id, device_id, name), None)
            if topics is None:
                topics = self.topics_for(group_id, edge_node_id, device_id, name)
                self._topics.pop((group_id, edge_node_id, device_id, name), None)
            if topics is None:
                continue
            for topic in topics:
                if topic in self._retained or topic in self._ready or topic in self._held:
                    self._last_meta.pop(topic, None)
                    self._queue(topic, b"", now_ms, now_ms)
                    retired += 1
        self.counters.retired_topics += retired
        return retired

    def _queue(self, topic: str, payload: bytes, received_ms: int, now_ms: int,
               state: MetricState | None = None) -> None:
        """Queue ``payload`` for ``topic`` (or, with ``state``, the value JSON ``take`` builds)."""
        pending = self._ready.get(topic) or self._held.get(topic)
        if pending is not None:
            pending.payload = payload  # conflate: the newer value replaces the unsent older one
            pending.state = state
            pending.received_ms = received_ms
            self.counters.conflated += 1
            return
        last = self._retained.get(topic)
        due = now_ms if last is None else last.sent_ms + self.interval_ms
        if due <= now_ms:
            self._ready[topic] = _Pending(payload, received_ms, 0, state)
        else:
            self._held[topic] = _Pending(payload, received_ms, 0, state)
            heapq.heappush(self._due, (due, topic))

    def take(self, now_ms: int, limit: int | None = None) -> list[MirrorMessage]:
        """Messages that may be published now (oldest first); marks them sent at ``now_ms``."""
        due = self._due
        while due and due[0][0] <= now_ms:
            _, topic = heapq.heappop(due)
            pending = self._held.pop(topic, None)
            if pending is not None:
                self._ready[topic] = pending
        out: list[MirrorMessage] = []
        ready = self._ready
        retained = self._retained
        # one walk over the dict per call: next(iter(ready)) per message re-walks the slots of
        # every entry popped before (quadratic on a large backlog)
        topics = list(ready) if limit is None else list(islice(ready, limit))
        pop = ready.pop
        append = out.append
        new = tuple.__new__
        value_payload = self.value_payload
        for topic in topics:
            pending = pop(topic)
            state = pending.state
            if state is not None:
                pending.state = None
                try:
                    pending.payload = value_payload(state)
                except Exception:  # our bug (a value the JSON cannot hold): this one is not sent
                    self.counters.unencodable += 1
                    log.exception("UNS mirror: no JSON for %s = %r; not published", topic, state.value)
                    continue
            pending.sent_ms = now_ms
            if pending.payload:
                retained[topic] = pending
            else:
                retained.pop(topic, None)  # a deletion: nothing to resend on a new connection
            append(new(MirrorMessage, (topic, pending.payload, pending.received_ms)))
        self.counters.taken += len(out)
        return out

    def restore(self, messages: Iterable[MirrorMessage]) -> int:
        """Put back messages a lost connection may not have delivered; returns how many topics.

        The latest of them per topic is queued to go out at once, unless the topic already holds a
        newer unsent value: those came later from the model, so restoring can never put an older
        value after a newer one.
        """
        latest: dict[str, MirrorMessage] = {}
        for message in messages:
            latest[message.topic] = message
        restored = 0
        for topic, message in latest.items():
            if topic in self._ready or topic in self._held:
                continue
            self._ready[topic] = _Pending(message.payload, message.received_ms)
            restored += 1
        return restored

    def resend_retained(self) -> int:
        """Queue the last message of every topic again, to go out at once; returns how many.

        For a new connection to a broker that may have lost its retained store (a restart
        without persistence, a failover to another broker): the UNS must show every tag and its
        ``_meta`` again without waiting for edges to re-birth, and ``_meta`` would otherwise
        only be resent when a birth changes it. A topic with a newer unsent value keeps that one.
        """
        resent = 0
        for topic, last in self._retained.items():
            if topic in self._ready or topic in self._held:
                continue
            self._ready[topic] = _Pending(last.payload, last.received_ms)
            resent += 1
        return resent

    def next_due_ms(self) -> int | None:
        """When the earliest held message becomes ready (None if nothing is held)."""
        if self._ready:
            return 0
        return self._due[0][0] if self._due else None

    @property
    def pending(self) -> int:
        return len(self._ready) + len(self._held)
