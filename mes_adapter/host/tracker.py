"""What a Sparkplug host knows about every edge node and device, with no I/O (h11 style).

Fed ``(topic, payload, now_ms)`` by the MQTT shell, :class:`EdgeTracker` answers with events
(:class:`NodeBorn`, :class:`MetricsChanged`, :class:`NodeDied`, :class:`RebirthNeeded`, ...). The
rules it enforces, stated once:

* An NBIRTH starts a session: aliases and datatypes are learned (one
  :class:`~uns.sparkplug.catalog.EdgeNodeCatalog` per node), its ``bdSeq`` is remembered, its
  ``seq`` is accepted whatever it is and the sequence resyncs from it (the spec's assertions
  disagree on an NBIRTH's ``seq``: 0, or any of 0..255). Devices of
  an earlier session need a new DBIRTH (the NBIRTH forgot their aliases). All DBIRTHs directly
  follow the NBIRTH (tck-id-payloads-dbirth-order), so a device that was online and is not born
  again by the first other message after the NBIRTH is declared dead then: a rebirth does not
  make the mirror blink STALE.
* Every later edge message (DBIRTH, NDATA, DDATA, DDEATH) must carry ``seq`` = previous + 1 mod
  256 (tck-id-payloads-sequence-num-incrementing). A gap is answered with a rebirth request; the
  data is still applied (it is newer than what we had) and the sequence resyncs.
* Reorder timeout (``reorder_timeout_ms`` > 0, tck-id-operational-behavior-host-reordering-param):
  a message whose ``seq`` is ahead of the expected one is held and starts the node's timer
  (-reordering-start). When the missing messages arrive, everything is applied in ``seq`` order
  and the timer stops, with no rebirth (-reordering-success). When :meth:`EdgeTracker.tick`
  finds the timer expired, the gap is a gap: rebirth request (-reordering-rebirth), and the held
  messages are applied in ``seq`` order. A ``seq`` behind the expected one is a gap at once. With
  0 (the default) every gap is answered at once.
* DATA, DBIRTH or DDEATH of a node we hold no birth for (a host that joined mid-session, a node
  that restarted and whose NBIRTH was lost), DDATA of a device without DBIRTH, an alias or name
  no birth declared, a value whose type differs from its birth, or bytes that are not a Sparkplug
  payload: the message is dropped and a rebirth is requested. Each cause can be switched off
  (the spec says triggers should be configurable, rebirth storms cost bandwidth).
* Rebirth requests are throttled per node: at most one per ``rebirth_throttle_ms``; the rest are
  counted as suppressed.
* NDEATH is matched to the current NBIRTH by ``bdSeq`` alone; a death whose bdSeq does not match
  (a late Will of an older session, a duplicate) is ignored. A matching one takes the node and
  all its devices offline at the host's receive time
  (tck-id-operational-behavior-edge-node-termination-host-action-ndeath-*); a DDEATH takes one
  device offline at the DDEATH payload timestamp (-ddeath-devices-offline, -ddeath-devices-tags-stale).
* Births served retained by a Sparkplug-aware broker under ``$sparkplug/certificates/`` let a
  late host learn nodes without a rebirth. They may be old, so the next message's ``seq`` is
  accepted as a resync, and a node that has sent a live NBIRTH on this connection ignores them.
* When the host loses its own connection every node goes offline (spec ch. 5: all metrics STALE).

What a broken or compromised edge must not do to the UNS (the host's own defence, beyond the spec):

* Metric names become topic levels. A birth metric whose name no topic may hold (control
  characters incl. U+007F, ``+``/``#``, empty folders, longer than ``max_metric_name_bytes``; see
  :mod:`uns.sparkplug.names`) is dropped *alone*, counted by reason in ``metrics_refused`` and
  reported as an ``invalid_metric_name`` violation; the rest of the birth is applied. Sparkplug lets
  a name be any UTF-8 (tck-id-payloads-name-requirement only asks for a name), so the birth is a
  valid one the UNS cannot fully show; refusing it whole would take every good tag of the node
  down and loop on rebirths for a name that will not change. Its later values are dropped too
  (counted as ``refused_values``). A birth whose bytes are not a Sparkplug payload (a name that is
  not UTF-8 breaks tck-id-message-flow-edge-node-birth-publish-nbirth-payload) is refused whole.
* One node (with its devices) may declare at most ``max_metrics_per_node`` metrics; further new
  ones are refused the same way (reason ``node_limit``).
* Birth churn: more than ``birth_limit`` live births of one node within ``birth_window_ms`` (an
  NBIRTH, or a DBIRTH of a device already born in the session) quarantines the node: it goes
  offline (its tags STALE, reason ``quarantined``), a :class:`NodeQuarantined` event alarms it,
  nothing it sends is applied, nor the broker's certificate copies of its births (counted in
  ``quarantined_messages``), and no rebirth is requested of
  it. It leaves after ``quarantine_quiet_ms`` without a birth (or :meth:`EdgeTracker.release`);
  its next message then earns a rebirth request as usual, so the UNS is rebuilt from a fresh birth.
* A metric the previous birth of its node or device declared and the new one does not (or every
  metric of a device not born again after its node's NBIRTH) is a ghost: it is STALE at once, and
  ``retire_grace_ms`` later (unless declared again) a :class:`MetricsRetired` event tells the
  mirror to delete its retained topics. ``None`` keeps ghosts STALE for ever.
* Templates (``uns.sparkplug.templates``): the NBIRTH's template definitions stay in the node's
  catalog and are not tags (no model entry, no UNS topic; counted in ``template_definitions``).
  An instance its definitions do not describe (unknown ``template_ref``, a member the definition
  lacks, a birth instance missing members) is a ``template_instance`` violation: the message is
  not applied and a rebirth is requested.
* DataSets: one whose rows, columns and types do not agree (a row with more or fewer values than
  columns, columns without types, a wrong ``num_of_columns``) is a ``dataset`` violation, handled
  the same way; the node's other messages keep being applied.

Every peer mistake is a :class:`ProtocolViolation` event (counted by kind, logged with its topic
by the shell), never an exception: nothing a peer sends can stop the tracker.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from uns.conventions import BDSEQ
from uns.sparkplug.catalog import EdgeNodeCatalog
from uns.sparkplug.codec import decode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import (
    DataSetError,
    DataTypeMismatchError,
    InvalidTopicError,
    MalformedPayloadError,
    RemoteProtocolError,
    UnknownAliasError,
)
from uns.sparkplug.model import Metric, Payload
from uns.sparkplug.names import DEFAULT_MAX_NAME_BYTES, metric_name_problem
from uns.sparkplug.peek import peek_seq
from uns.sparkplug.templates import TemplateInstanceError, check_instances, is_definition
from uns.sparkplug.topic import (
    MessageType,
    SparkplugTopic,
    StateTopic,
    parse_certificate_topic,
    parse_topic,
)

_T = TypeVar("_T")

NodeKey = tuple[str, str]  # (group_id, edge_node_id), the edge node descriptor


class RebirthCause(StrEnum):
    SEQ_GAP = "seq_gap"
    UNKNOWN_ALIAS = "unknown_alias"
    DATA_BEFORE_BIRTH = "data_before_birth"
    DATATYPE_MISMATCH = "datatype_mismatch"
    MALFORMED = "malformed"


ALL_CAUSES = frozenset(RebirthCause)


# ------------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class NodeBorn:
    node: NodeKey
    bd_seq: int | None
    at_ms: int
    from_certificate: bool = False


@dataclass(frozen=True, slots=True)
class DeviceBorn:
    node: NodeKey
    device_id: str
    at_ms: int
    from_certificate: bool = False


@dataclass(frozen=True, slots=True)
class MetricsChanged:
    """Decoded metrics of one message; ``birth`` means a full restatement (NBIRTH/DBIRTH)."""

    node: NodeKey
    device_id: str | None
    metrics: list[Metric]
    received_ms: int
    birth: bool = False
    from_certificate: bool = False


@dataclass(frozen=True, slots=True)
class NodeDied:
    node: NodeKey
    bd_seq: int | None
    at_ms: int
    reason: str  # "ndeath" | "host_disconnected"


@dataclass(frozen=True, slots=True)
class DeviceDied:
    node: NodeKey
    device_id: str
    at_ms: int
    reason: str  # "ddeath" | "not_reborn"


@dataclass(frozen=True, slots=True)
class RebirthNeeded:
    node: NodeKey
    cause: RebirthCause
    detail: str


@dataclass(frozen=True, slots=True)
class NodeQuarantined:
    """A node re-births faster than the host allows: nothing of it is applied until released."""

    node: NodeKey
    at_ms: int
    detail: str


@dataclass(frozen=True, slots=True)
class NodeReleased:
    node: NodeKey
    at_ms: int
    reason: str  # "quiet" | "operator"


@dataclass(frozen=True, slots=True)
class MetricsRetired:
    """Metrics no birth declares any more, past their grace: their retained topics go."""

    node: NodeKey
    device_id: str | None
    names: tuple[str, ...]
    at_ms: int


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """A peer broke Sparkplug; the message (or part of it) was not applied."""

    topic: str
    kind: str
    detail: str


Event = (NodeBorn | DeviceBorn | MetricsChanged | NodeDied | DeviceDied | RebirthNeeded | ProtocolViolation
         | NodeQuarantined | NodeReleased | MetricsRetired)


# ------------------------------------------------------------------------------------------- state


@dataclass(slots=True)
class _Node:
    catalog: EdgeNodeCatalog = field(default_factory=EdgeNodeCatalog)
    born: bool = False          # we hold a usable birth of the current session
    online: bool = False
    bd_seq: int | None = None
    next_seq: int | None = None  # None: unknown, the next message resyncs
    live_born: bool = False     # a live NBIRTH arrived on this host connection
    from_certificate: bool = False
    devices: dict[str, bool] = field(default_factory=dict)  # device_id -> online
    awaiting: set[str] = field(default_factory=set)  # online before the NBIRTH, no DBIRTH yet
    last_seen_ms: int | None = None
    #: seq -> (topic, parsed topic, payload, receive time) of messages that came too early
    held: dict[int, tuple[str, SparkplugTopic, bytes, int]] = field(default_factory=dict)
    reorder_deadline_ms: int | None = None
    #: names declared by the latest accepted birth, per device (None: the node itself)
    declared: dict[str | None, frozenset[str]] = field(default_factory=dict)
    #: names a birth declared that the host refused, per device: their values are dropped
    refused: dict[str | None, frozenset[str]] = field(default_factory=dict)
    #: (device, name) -> when its retained topics go, unless a birth declares it again
    retiring: dict[tuple[str | None, str], int] = field(default_factory=dict)
    #: receive times of recent live births (churn window)
    births: deque[int] = field(default_factory=deque)
    quarantined_since: int | None = None
    last_birth_ms: int | None = None
    #: devices online when the node was quarantined: a later NBIRTH must restate them
    quarantined_devices: set[str] = field(default_factory=set)


@dataclass(slots=True)
class TrackerCounters:
    messages: int = 0
    nbirths: int = 0
    dbirths: int = 0
    ndeaths: int = 0
    ddeaths: int = 0
    data_messages: int = 0
    metrics_decoded: int = 0
    certificates_used: int = 0
    certificates_ignored: int = 0
    commands_seen: int = 0
    seq_gaps: int = 0
    #: messages held for the reorder timeout, and gaps it closed without a rebirth
    reorder_held: int = 0
    reorder_recovered: int = 0
    rebirths_suppressed: int = 0
    rebirths_requested: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    #: birth metrics the host refused to mirror, by reason (see uns.sparkplug.names, "node_limit")
    metrics_refused: Counter[str] = field(default_factory=Counter)
    #: values of refused metrics dropped from DATA messages
    refused_values: int = 0
    quarantines: int = 0
    quarantine_releases: int = 0
    #: messages of quarantined nodes, not applied
    quarantined_messages: int = 0
    #: metrics whose retained topics were retired (no birth declares them any more)
    metrics_retired: int = 0
    #: template definitions learned from NBIRTHs (kept by the catalog, not mirrored as tags)
    template_definitions: int = 0


class EdgeTracker:
    """Per edge node: births, sequence, bdSeq, devices, online state and rebirth decisions."""

    def __init__(self, *, rebirth_throttle_ms: int = 5000, max_payload_bytes: int = 1 << 20,
                 rebirth_causes: frozenset[RebirthCause] = ALL_CAUSES, reorder_timeout_ms: int = 0,
                 max_metric_name_bytes: int = DEFAULT_MAX_NAME_BYTES, max_metrics_per_node: int = 10_000,
                 birth_limit: int = 20, birth_window_ms: int = 60_000, quarantine_quiet_ms: int = 60_000,
                 retire_grace_ms: int | None = 300_000) -> None:
        self.rebirth_throttle_ms = rebirth_throttle_ms
        self.max_metric_name_bytes = max_metric_name_bytes
        self.max_metrics_per_node = max_metrics_per_node
        self.birth_limit = birth_limit
        self.birth_window_ms = birth_window_ms
        self.quarantine_quiet_ms = quarantine_quiet_ms
        self.retire_grace_ms = retire_grace_ms
        self._next_retire_ms: int | None = None
        self.reorder_timeout_ms = reorder_timeout_ms
        self.max_payload_bytes = max_payload_bytes
        self.rebirth_causes = rebirth_causes
        self.counters = TrackerCounters()
        self._nodes: dict[NodeKey, _Node] = {}
        self._last_rebirth: dict[NodeKey, int] = {}

    # -- read access -------------------------------------------------------------------------

    def catalog(self, group_id: str, edge_node_id: str) -> EdgeNodeCatalog | None:
        node = self._nodes.get((group_id, edge_node_id))
        return node.catalog if node is not None and node.born else None

    def is_online(self, group_id: str, edge_node_id: str, device_id: str | None = None) -> bool:
        node = self._nodes.get((group_id, edge_node_id))
        if node is None or not node.online:
            return False
        return True if device_id is None else node.devices.get(device_id, False)

    def quarantined(self) -> list[NodeKey]:
        """Nodes whose messages are not applied now (birth churn)."""
        return [key for key, node in self._nodes.items() if node.quarantined_since is not None]

    def release(self, group_id: str, edge_node_id: str, now_ms: int) -> list[Event]:
        """An operator lets a quarantined node back in; its next message earns a rebirth request."""
        node = self._nodes.get((group_id, edge_node_id))
        if node is None or node.quarantined_since is None:
            return []
        return self._release(node, (group_id, edge_node_id), now_ms, "operator")

    # -- the common path ---------------------------------------------------------------------

    def _screen(self, events: list[Event], topic: str, payload: bytes, parse: Callable[[str], _T]) -> _T | None:
        """Size and topic checks every message passes first; a violation is recorded, not raised."""
        if len(payload) > self.max_payload_bytes:
            self._violation(events, topic, "oversize",
                            f"{len(payload)} bytes exceed max_payload_bytes={self.max_payload_bytes}")
            return None
        try:
            return parse(topic)
        except InvalidTopicError as exc:
            self._violation(events, topic, "invalid_topic", str(exc))
            return None

    def handle(self, topic: str, payload: bytes, now_ms: int) -> list[Event]:
        """One message from ``spBv1.0/#``. Never raises for anything a peer can send."""
        self.counters.messages += 1
        events: list[Event] = []
        parsed = self._screen(events, topic, payload, parse_topic)
        if parsed is None:
            return events
        if isinstance(parsed, StateTopic):
            return events  # host STATE is the session's business
        kind = parsed.message_type
        if kind.is_command:
            self.counters.commands_seen += 1
            return events
        key = parsed.node
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = _Node()
        node.last_seen_ms = now_ms
        if self._next_retire_ms is not None and now_ms >= self._next_retire_ms:
            self._retire_due(events, now_ms)
        if node.quarantined_since is not None:
            assert node.last_birth_ms is not None
            if now_ms - node.last_birth_ms < self.quarantine_quiet_ms:
                self.counters.quarantined_messages += 1
                if kind.is_birth:
                    node.last_birth_ms = now_ms  # the quiet period starts again
                return events
            events.extend(self._release(node, key, now_ms, "quiet"))
        if kind.is_birth and self._churn(events, topic, key, node, parsed, now_ms):
            return events
        if kind is MessageType.NBIRTH:
            self._nbirth(events, topic, key, node, payload, now_ms, certificate=False)
        elif kind is MessageType.NDEATH:
            self._ndeath(events, topic, key, node, payload, now_ms)
        else:
            self._session_message(events, topic, parsed, key, node, payload, now_ms)
        return events

    def handle_certificate(self, topic: str, payload: bytes, now_ms: int) -> list[Event]:
        """A birth served by a Sparkplug-aware broker on ``$sparkplug/certificates/...``."""
        events: list[Event] = []
        parsed = self._screen(events, topic, payload, parse_certificate_topic)
        if parsed is None:
            return events
        key = parsed.node
        node = self._nodes.get(key)
        if node is not None and node.quarantined_since is not None:
            self.counters.quarantined_messages += 1  # a copy of a churning birth is churn too
            return events
        if parsed.message_type is MessageType.NBIRTH:
            if node is not None and node.live_born:
                self.counters.certificates_ignored += 1
                return events
            if node is None:
                node = self._nodes[key] = _Node()
            self._nbirth(events, topic, key, node, payload, now_ms, certificate=True)
            return events
        # DBIRTH certificate: only for a node we know from certificates, never over a live session
        if node is None or node.live_born or not node.born or parsed.device_id is None:
            self.counters.certificates_ignored += 1
            return events
        self._dbirth(events, topic, key, node, parsed.device_id, payload, now_ms, certificate=True)
        return events

    def tick(self, now_ms: int) -> list[Event]:
        """Expire reorder timers (a gap still open is a gap) and ghost metrics' grace."""
        events: list[Event] = []
        for key, node in self._nodes.items():
            if node.reorder_deadline_ms is not None and now_ms >= node.reorder_deadline_ms:
                expected = node.next_seq
                first = min(node.held, key=lambda seq: (seq - (expected or 0)) % 256)
                topic = node.held[first][0]
                self.counters.seq_gaps += 1
                self._violation(events, topic, "seq_gap", f"seq {expected} did not arrive within "
                                f"reorder_timeout_ms={self.reorder_timeout_ms}; next held seq {first}")
                self._rebirth(events, key, RebirthCause.SEQ_GAP,
                              f"{topic}: seq {expected} missing after {self.reorder_timeout_ms} ms", now_ms)
                self._apply_all_held(events, key, node)
        if self._next_retire_ms is not None and now_ms >= self._next_retire_ms:
            self._retire_due(events, now_ms)  # last: held messages just applied may have made ghosts
        return events

    def next_reorder_deadline_ms(self) -> int | None:
        """When :meth:`tick` has something to do (None: nothing is held, no ghost is due)."""
        deadlines = [n.reorder_deadline_ms for n in self._nodes.values() if n.reorder_deadline_ms is not None]
        if self._next_retire_ms is not None:
            deadlines.append(self._next_retire_ms)
        return min(deadlines) if deadlines else None

    def host_disconnected(self, now_ms: int) -> list[Event]:
        """Our own connection is gone: every node is offline and every metric STALE (spec ch. 5)."""
        events: list[Event] = []
        for key, node in self._nodes.items():
            _drop_held(node)
            if node.online:
                events.append(NodeDied(key, node.bd_seq, now_ms, "host_disconnected"))
            node.online = False
            node.born = False
            node.live_born = False
            node.next_seq = None
            node.awaiting.clear()
            for device_id in node.devices:
                node.devices[device_id] = False
        return events

    # -- message kinds -----------------------------------------------------------------------

    def _nbirth(self, events: list[Event], topic: str, key: NodeKey, node: _Node, data: bytes,
                now_ms: int, *, certificate: bool) -> None:
        if not certificate:
            _drop_held(node)  # messages of the previous session: the new birth restates everything
        self._settle(events, key, node, now_ms)
        if node.online:
            node.awaiting = {device_id for device_id, online in node.devices.items() if online}
        if not certificate:
            node.awaiting |= node.quarantined_devices
            node.quarantined_devices.clear()
        for device_id in node.devices:
            node.devices[device_id] = False
        try:
            payload = node.catalog.decode(MessageType.NBIRTH, data)
            _check_text(payload)
            check_instances(payload.metrics, node.catalog.template_definitions, birth=True)
        except RemoteProtocolError as exc:
            self._settle(events, key, node, now_ms)
            node.born = node.online = False
            node.next_seq = None
            self._violation(events, topic, _cause_of(exc)[1], str(exc))
            self._rebirth(events, key, RebirthCause.MALFORMED, f"{topic}: {exc}", now_ms)
            return
        self.counters.nbirths += 1
        if certificate:
            self.counters.certificates_used += 1
        bd_seq = None
        metrics: list[Metric] = []
        for metric in payload.metrics:
            if metric.name == BDSEQ:
                bd_seq = metric.value if isinstance(metric.value, int) else None
            elif is_definition(metric):
                self.counters.template_definitions += 1  # a type, not a tag: the catalog keeps it
            else:
                metrics.append(metric)
        if bd_seq is None:
            self._violation(events, topic, "missing_bdseq", "NBIRTH has no integer bdSeq metric "
                            "(tck-id-payloads-nbirth-bdseq); any NDEATH will be accepted")
        if payload.seq is None and not certificate:
            self._violation(events, topic, "missing_seq", "NBIRTH has no seq (tck-id-topics-nbirth-seq-num)")
        metrics = self._admit(events, topic, key, node, None, metrics, now_ms)
        node.born = node.online = True
        node.bd_seq = bd_seq
        node.from_certificate = certificate
        node.live_born = node.live_born or not certificate
        node.next_seq = None if certificate or payload.seq is None else (payload.seq + 1) % 256
        self.counters.metrics_decoded += len(metrics)
        events.append(NodeBorn(key, bd_seq, now_ms, certificate))
        events.append(MetricsChanged(key, None, metrics, now_ms, birth=True, from_certificate=certificate))

    def _ndeath(self, events: list[Event], topic: str, key: NodeKey, node: _Node, data: bytes,
                now_ms: int) -> None:
        try:
            payload = decode_payload(data, MessageType.NDEATH)
        except RemoteProtocolError as exc:
            self._violation(events, topic, "malformed", str(exc))
            return
        bd_seq = _bd_seq(payload)
        if node.held and (node.bd_seq is None or bd_seq == node.bd_seq):
            self._apply_all_held(events, key, node)  # the session ends: what it sent still counts
        if not node.online:
            self._violation(events, topic, "stale_ndeath", f"NDEATH bdSeq={bd_seq} for a node that is not online")
            return
        if node.bd_seq is not None and bd_seq != node.bd_seq:
            self._violation(events, topic, "stale_ndeath",
                            f"NDEATH bdSeq={bd_seq} does not match the NBIRTH's bdSeq={node.bd_seq}; ignored")
            return
        self.counters.ndeaths += 1
        node.awaiting.clear()  # NodeDied takes every device offline
        node.online = False
        node.born = False
        node.live_born = False
        node.next_seq = None
        for device_id in node.devices:
            node.devices[device_id] = False
        events.append(NodeDied(key, bd_seq, now_ms, "ndeath"))

    def _session_message(self, events: list[Event], topic: str, parsed: SparkplugTopic, key: NodeKey,
                         node: _Node, data: bytes, now_ms: int) -> None:
        if self.reorder_timeout_ms > 0 and node.born and node.next_seq is not None:
            seq = peek_seq(data)
            if seq is not None and 0 < (seq - node.next_seq) % 256 < 128:
                if seq not in node.held:
                    self.counters.reorder_held += 1
                node.held[seq] = (topic, parsed, data, now_ms)
                if node.reorder_deadline_ms is None:
                    node.reorder_deadline_ms = now_ms + self.reorder_timeout_ms
                return
            self._apply_message(events, topic, parsed, key, node, data, now_ms)
            if node.held:
                self._release_held(events, key, node, now_ms)
            return
        self._apply_message(events, topic, parsed, key, node, data, now_ms)

    def _release_held(self, events: list[Event], key: NodeKey, node: _Node, now_ms: int) -> None:
        """Apply held messages while the next one expected is among them. None left: the timer
        stops (a gap closed in time). Some left: a gap remains, and keeps (or starts) the timer."""
        while node.next_seq is not None and node.next_seq in node.held:
            topic, parsed, data, received_ms = node.held.pop(node.next_seq)
            self._apply_message(events, topic, parsed, key, node, data, received_ms)
        if node.held:
            if node.reorder_deadline_ms is None:
                node.reorder_deadline_ms = now_ms + self.reorder_timeout_ms
            return
        if node.reorder_deadline_ms is not None:
            self.counters.reorder_recovered += 1
        node.reorder_deadline_ms = None

    def _apply_all_held(self, events: list[Event], key: NodeKey, node: _Node) -> None:
        """Every held message is newer than what we had: apply them all in seq order, each one
        resyncing the sequence (a gap between them was already answered, or no longer matters)."""
        expected = node.next_seq or 0
        for seq in sorted(node.held, key=lambda held: (held - expected) % 256):
            topic, parsed, data, received_ms = node.held[seq]
            node.next_seq = seq
            self._apply_message(events, topic, parsed, key, node, data, received_ms)
        _drop_held(node)

    def _apply_message(self, events: list[Event], topic: str, parsed: SparkplugTopic, key: NodeKey,
                       node: _Node, data: bytes, now_ms: int) -> None:
        kind = parsed.message_type
        if not node.born:
            self._violation(events, topic, "data_before_birth", f"{kind} before any NBIRTH of this session")
            self._rebirth(events, key, RebirthCause.DATA_BEFORE_BIRTH, f"{kind} on {topic} before NBIRTH", now_ms)
            return
        if kind is MessageType.DBIRTH:
            assert parsed.device_id is not None
            self._dbirth(events, topic, key, node, parsed.device_id, data, now_ms, certificate=False)
            return
        self._settle(events, key, node, now_ms)
        device_id = parsed.device_id
        try:
            payload = node.catalog.decode(kind, data, device_id)
            _check_text(payload)
            if kind in (MessageType.NDATA, MessageType.DDATA):
                check_instances(payload.metrics, node.catalog.template_definitions, birth=False)
        except RemoteProtocolError as exc:
            self._check_seq(events, topic, key, node, peek_seq(data), now_ms)
            if device_id is not None and not node.devices.get(device_id, False):
                self._device_not_born(events, topic, key, kind, now_ms)
                return
            cause, what = _cause_of(exc)
            self._violation(events, topic, what, str(exc))
            self._rebirth(events, key, cause, f"{topic}: {exc}", now_ms)
            return
        self._check_seq(events, topic, key, node, payload.seq, now_ms)
        if device_id is not None and not node.devices.get(device_id, False):
            if kind is MessageType.DDEATH:
                self._violation(events, topic, "stale_ddeath", f"DDEATH of device {device_id!r} that is not online")
            else:
                self._device_not_born(events, topic, key, kind, now_ms)
            return
        if kind is MessageType.DDEATH:
            assert device_id is not None
            self.counters.ddeaths += 1
            node.devices[device_id] = False
            events.append(DeviceDied(key, device_id, payload.timestamp or now_ms, "ddeath"))
            return
        self.counters.data_messages += 1
        self.counters.metrics_decoded += len(payload.metrics)
        metrics = payload.metrics
        refused = node.refused.get(device_id)
        if refused:
            metrics = [metric for metric in metrics if metric.name not in refused]
            self.counters.refused_values += len(payload.metrics) - len(metrics)
        events.append(MetricsChanged(key, device_id, metrics, now_ms))

    def _dbirth(self, events: list[Event], topic: str, key: NodeKey, node: _Node, device_id: str,
                data: bytes, now_ms: int, *, certificate: bool) -> None:
        try:
            payload = node.catalog.decode(MessageType.DBIRTH, data, device_id)
            _check_text(payload)
            check_instances(payload.metrics, node.catalog.template_definitions, birth=True)
        except RemoteProtocolError as exc:
            if not certificate:
                self._check_seq(events, topic, key, node, peek_seq(data), now_ms)
            node.devices[device_id] = False
            self._violation(events, topic, _cause_of(exc)[1], str(exc))
            self._rebirth(events, key, RebirthCause.MALFORMED, f"{topic}: {exc}", now_ms)
            return
        if certificate:
            self.counters.certificates_used += 1
        else:
            self._check_seq(events, topic, key, node, payload.seq, now_ms)
        self.counters.dbirths += 1
        self.counters.metrics_decoded += len(payload.metrics)
        metrics = self._admit(events, topic, key, node, device_id, payload.metrics, now_ms)
        node.awaiting.discard(device_id)
        node.devices[device_id] = True
        events.append(DeviceBorn(key, device_id, now_ms, certificate))
        events.append(MetricsChanged(key, device_id, metrics, now_ms, birth=True,
                                     from_certificate=certificate))

    # -- helpers -----------------------------------------------------------------------------

    def _settle(self, events: list[Event], key: NodeKey, node: _Node, now_ms: int) -> None:
        """The birth sequence is over: devices of the old session not born again are gone."""
        if node.awaiting:
            for device_id in sorted(node.awaiting):
                events.append(DeviceDied(key, device_id, now_ms, "not_reborn"))
                self._schedule_retire(node, device_id, node.declared.pop(device_id, frozenset()), now_ms)
                node.refused.pop(device_id, None)
            node.awaiting.clear()

    # -- the host's defence of the UNS ---------------------------------------------------------

    def _admit(self, events: list[Event], topic: str, key: NodeKey, node: _Node, device_id: str | None,
               metrics: list[Metric], now_ms: int) -> list[Metric]:
        """The birth metrics the UNS may show: valid names, within the node's limit (see the
        module docstring). Records what this birth declares and schedules the ghosts' retirement."""
        others = sum(len(names) for device, names in node.declared.items() if device != device_id)
        room = self.max_metrics_per_node - others
        accepted: list[Metric] = []
        names: set[str] = set()
        refused: set[str] = set()
        first: dict[str, str] = {}
        refused_by: Counter[str] = Counter()
        for metric in metrics:
            problem = metric_name_problem(metric.name, self.max_metric_name_bytes)
            if problem is None and metric.name not in names and len(names) >= room:
                problem = ("node_limit", f"metric {metric.name!r} is beyond max_metrics_per_node="
                           f"{self.max_metrics_per_node} of this node")
            if problem is not None:
                reason, detail = problem
                refused_by[reason] += 1
                first.setdefault(reason, detail)
                if isinstance(metric.name, str):
                    refused.add(metric.name)
                continue
            assert metric.name is not None
            names.add(metric.name)
            accepted.append(metric)
        for reason, count in refused_by.items():
            self.counters.metrics_refused[reason] += count
            kind = "metric_limit" if reason == "node_limit" else "invalid_metric_name"
            self._violation(events, topic, kind, f"{count} birth metric(s) not mirrored ({reason}), "
                            f"first: {first[reason]}")
        declared = frozenset(names)
        gone = node.declared.get(device_id, frozenset()) - declared
        node.declared[device_id] = declared
        node.refused[device_id] = frozenset(refused)
        for name in declared:
            node.retiring.pop((device_id, name), None)
        self._schedule_retire(node, device_id, gone, now_ms)
        return accepted

    def _schedule_retire(self, node: _Node, device_id: str | None, names: frozenset[str], now_ms: int) -> None:
        if self.retire_grace_ms is None or not names:
            return
        due = now_ms + self.retire_grace_ms
        for name in names:
            node.retiring[(device_id, name)] = due
        if self._next_retire_ms is None or due < self._next_retire_ms:
            self._next_retire_ms = due

    def _retire_due(self, events: list[Event], now_ms: int) -> None:
        upcoming: int | None = None
        for key, node in self._nodes.items():
            if not node.retiring:
                continue
            due: dict[str | None, list[str]] = {}
            for (device_id, name), at in list(node.retiring.items()):
                if at <= now_ms:
                    del node.retiring[(device_id, name)]
                    due.setdefault(device_id, []).append(name)
                elif upcoming is None or at < upcoming:
                    upcoming = at
            for device_id, names in due.items():
                self.counters.metrics_retired += len(names)
                events.append(MetricsRetired(key, device_id, tuple(sorted(names)), now_ms))
        self._next_retire_ms = upcoming

    def _churn(self, events: list[Event], topic: str, key: NodeKey, node: _Node, parsed: SparkplugTopic,
               now_ms: int) -> bool:
        """Count a live birth; True when it puts the node in quarantine (the birth is not applied).

        A DBIRTH counts only for a device already born in this session: the DBIRTHs that follow
        an NBIRTH are one birth of the node, not churn."""
        if parsed.message_type is MessageType.DBIRTH and not node.devices.get(parsed.device_id or "", False):
            return False
        window = node.births
        window.append(now_ms)
        while window and window[0] <= now_ms - self.birth_window_ms:
            window.popleft()
        if len(window) <= self.birth_limit:
            return False
        detail = (f"{len(window)} births within {self.birth_window_ms} ms (birth_limit={self.birth_limit}); "
                  f"not mirrored until {self.quarantine_quiet_ms} ms without a birth")
        self.counters.quarantines += 1
        self.counters.quarantined_messages += 1
        node.quarantined_since = node.last_birth_ms = now_ms
        self._violation(events, topic, "birth_churn", detail)
        events.append(NodeQuarantined(key, now_ms, detail))
        _drop_held(node)
        node.awaiting.clear()
        if node.online:
            node.quarantined_devices = {device_id for device_id, online in node.devices.items() if online}
            events.append(NodeDied(key, node.bd_seq, now_ms, "quarantined"))
        node.online = node.born = node.live_born = False
        node.next_seq = None
        for device_id in node.devices:
            node.devices[device_id] = False
        return True

    def _release(self, node: _Node, key: NodeKey, now_ms: int, reason: str) -> list[Event]:
        node.quarantined_since = node.last_birth_ms = None
        node.births.clear()
        self.counters.quarantine_releases += 1
        return [NodeReleased(key, now_ms, reason)]

    def _device_not_born(self, events: list[Event], topic: str, key: NodeKey, kind: MessageType,
                         now_ms: int) -> None:
        self._violation(events, topic, "data_before_birth", f"{kind} before the device's DBIRTH")
        self._rebirth(events, key, RebirthCause.DATA_BEFORE_BIRTH, f"{kind} on {topic} before DBIRTH", now_ms)

    def _check_seq(self, events: list[Event], topic: str, key: NodeKey, node: _Node, seq: int | None,
                   now_ms: int) -> None:
        if seq is None or not 0 <= seq <= 255:
            self._violation(events, topic, "missing_seq", f"seq {seq!r} is not in 0..255 "
                            "(tck-id-payloads-sequence-num-always-included)")
            node.next_seq = None
            return
        expected = node.next_seq
        node.next_seq = (seq + 1) % 256
        if expected is not None and seq != expected:
            self.counters.seq_gaps += 1
            self._violation(events, topic, "seq_gap", f"seq {seq}, expected {expected}")
            self._rebirth(events, key, RebirthCause.SEQ_GAP, f"{topic}: seq {seq}, expected {expected}", now_ms)

    def _rebirth(self, events: list[Event], key: NodeKey, cause: RebirthCause, detail: str, now_ms: int) -> None:
        if cause not in self.rebirth_causes:
            return
        node = self._nodes.get(key)
        if node is not None and node.quarantined_since is not None:
            self.counters.rebirths_suppressed += 1  # a churning node is not asked for more births
            return
        last = self._last_rebirth.get(key)
        if last is not None and now_ms - last < self.rebirth_throttle_ms:
            self.counters.rebirths_suppressed += 1
            return
        self._last_rebirth[key] = now_ms
        self.counters.rebirths_requested[cause.value] += 1
        events.append(RebirthNeeded(key, cause, detail))

    def _violation(self, events: list[Event], topic: str, kind: str, detail: str) -> None:
        self.counters.violations[kind] += 1
        events.append(ProtocolViolation(topic, kind, detail))


_TEXT_TYPES = frozenset({DataType.String, DataType.Text, DataType.UUID})


def _drop_held(node: _Node) -> None:
    node.held.clear()
    node.reorder_deadline_ms = None


def _check_text(payload: Payload) -> None:
    """Names and string values must be text.

    With the upb protobuf backend a proto2 ``string`` field holding invalid UTF-8 reads back as
    ``bytes`` instead of failing, so the decoder can hand us a ``bytes`` name or String value.
    """
    for metric in payload.metrics:
        if metric.name is not None and not isinstance(metric.name, str):
            raise MalformedPayloadError(f"metric name {metric.name!r} is not valid UTF-8")
        if metric.datatype in _TEXT_TYPES and metric.value is not None and not isinstance(metric.value, str):
            raise MalformedPayloadError(f"metric {metric.name or metric.alias!r}: string value is not valid UTF-8")


def _bd_seq(payload: Payload) -> int | None:
    for metric in payload.metrics:
        if metric.name == BDSEQ and isinstance(metric.value, int) and not isinstance(metric.value, bool):
            return metric.value
    return None


def _cause_of(exc: RemoteProtocolError) -> tuple[RebirthCause, str]:
    if isinstance(exc, UnknownAliasError):
        return RebirthCause.UNKNOWN_ALIAS, "unknown_alias"
    if isinstance(exc, DataTypeMismatchError):
        return RebirthCause.DATATYPE_MISMATCH, "datatype_mismatch"
    if isinstance(exc, TemplateInstanceError):
        return RebirthCause.MALFORMED, "template_instance"
    if isinstance(exc, DataSetError):
        return RebirthCause.MALFORMED, "dataset"
    return RebirthCause.MALFORMED, "malformed"
