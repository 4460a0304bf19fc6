"""The primary host's STATE lifecycle as a state machine with no I/O (h11 style).

Rules (Sparkplug 3.0, STATE and Host Application; each names the spec's tck-id assertions):

* CONNECT carries a Will on ``spBv1.0/STATE/<host_id>``: JSON ``{"online": false, "timestamp": T}``,
  QoS 1, retained, where T is the time the CONNECT is sent (tck-id-host-topic-phid-death-qos,
  -death-retain, -death-topic, -death-required, -death-payload, -death-payload-timestamp-connect,
  tck-id-payloads-state-will-message*). Clean session (tck-id-message-flow-phid-sparkplug-clean-session-311).
* After CONNACK the host subscribes to its own STATE topic and to ``spBv1.0/#``
  (tck-id-host-topic-phid-birth-sub-required, tck-id-payloads-state-subscribe), or, for a host that
  owns only some groups (``host.groups``, scale-out by group), to ``spBv1.0/<group>/#`` of each of
  them (and their certificates) instead of ``spBv1.0/#``; and only when that
  SUBACK is in, publishes its birth ``{"online": true, "timestamp": T}`` with the *same* T, QoS 1,
  retained, as its first PUBLISH (tck-id-host-topic-phid-birth-message, -birth-required,
  -birth-payload-timestamp, tck-id-payloads-state-birth-payload).
* An ``online: false`` on its own topic whose timestamp is not older than T makes it re-publish
  the birth with T (tck-id-message-flow-hid-sparkplug-state-message-delivered). An older one is
  a stale Will of a previous session and is ignored.
* A clean shutdown publishes ``online: false`` with the *current* time, QoS 1, retained, before
  DISCONNECT (tck-id-host-topic-phid-death-payload-timestamp-disconnect-clean,
  tck-id-operational-behavior-host-application-termination).

The machine is fed events by the MQTT shell and answers with :class:`Action` objects to carry
out. Calling an event in a state where it makes no sense is *our* bug: :class:`LocalProtocolError`.
A peer's bad STATE payload is a :class:`RemoteProtocolError` the shell counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from uns.sparkplug.errors import LocalProtocolError, MalformedPayloadError
from uns.sparkplug.state import StatePayload
from uns.sparkplug.topic import CERTIFICATES_PREFIX, NAMESPACE, StateTopic, certificate_group_filter, group_filter

STATE_QOS = 1


class SessionState(Enum):
    DISCONNECTED = "disconnected"  # no MQTT connection (start, or after a loss)
    CONNECTING = "connecting"      # CONNECT sent with the Will, waiting for CONNACK
    SUBSCRIBING = "subscribing"    # SUBSCRIBE sent, waiting for SUBACK
    ONLINE = "online"              # STATE birth published
    CLOSING = "closing"            # offline published, DISCONNECT to follow
    CLOSED = "closed"              # shut down for good


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class Subscribe:
    #: (filter, qos) in the order they must be sent: certificates first, so an aware broker's
    #: retained births arrive before any live DATA of the same nodes
    filters: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


Action = Publish | Subscribe | Disconnect

# event -> states it is legal in -> next state. All that moves the machine is this table.
_TRANSITIONS: dict[str, dict[SessionState, SessionState]] = {
    "connect": {SessionState.DISCONNECTED: SessionState.CONNECTING},
    "connected": {SessionState.CONNECTING: SessionState.SUBSCRIBING},
    "subscribed": {SessionState.SUBSCRIBING: SessionState.ONLINE},
    "shutdown": {SessionState.ONLINE: SessionState.CLOSING},
    "closed": {SessionState.CLOSING: SessionState.CLOSED, SessionState.DISCONNECTED: SessionState.CLOSED,
               SessionState.ONLINE: SessionState.CLOSED,
               SessionState.CONNECTING: SessionState.CLOSED, SessionState.SUBSCRIBING: SessionState.CLOSED},
    "connection_lost": {SessionState.CONNECTING: SessionState.DISCONNECTED,
                        SessionState.SUBSCRIBING: SessionState.DISCONNECTED,
                        SessionState.ONLINE: SessionState.DISCONNECTED,
                        SessionState.CLOSING: SessionState.CLOSED,
                        SessionState.DISCONNECTED: SessionState.DISCONNECTED},
}


class HostSession:
    """STATE birth/death of one Sparkplug host id on one MQTT server."""

    def __init__(self, host_id: str, *, use_certificates: bool = True,
                 groups: tuple[str, ...] | None = None) -> None:
        self.topic = str(StateTopic(host_id))
        self.host_id = host_id
        self.use_certificates = use_certificates
        #: the Sparkplug groups this host owns; None: every group (``spBv1.0/#``)
        self.groups = groups
        self.state = SessionState.DISCONNECTED
        #: the CONNECT time of the current (or last) connection; Will and birth share it
        self.connect_timestamp: int | None = None
        self.reasserted = 0
        self.stale_offline_ignored = 0
        self.foreign_online_seen = 0

    def _move(self, event: str) -> None:
        allowed = _TRANSITIONS[event]
        if self.state not in allowed:
            raise LocalProtocolError(f"host session: {event!r} is not allowed in state {self.state.value!r}")
        self.state = allowed[self.state]

    def _state(self, online: bool, timestamp: int) -> Publish:
        return Publish(self.topic, StatePayload(online=online, timestamp=timestamp).to_bytes(), STATE_QOS, True)

    # -- events ---------------------------------------------------------------------------------

    def connect(self, now_ms: int) -> Publish:
        """We are about to send CONNECT at ``now_ms``: returns the Will to register with it."""
        self._move("connect")
        self.connect_timestamp = now_ms
        return self._state(False, now_ms)

    def connected(self) -> Subscribe:
        """CONNACK arrived: subscribe before anything is published."""
        self._move("connected")
        filters: list[tuple[str, int]] = []
        if self.groups is not None:
            # no overlapping filters (a broker may deliver a message once per matching one): the own
            # STATE topic, then each owned group, never spBv1.0/# (other hosts' STATE is not seen)
            if self.use_certificates:
                filters += [(certificate_group_filter(group), 1) for group in self.groups]
            filters.append((self.topic, 1))
            filters += [(group_filter(group), 1) for group in self.groups]
            return Subscribe(tuple(filters))
        if self.use_certificates:
            filters.append((f"{CERTIFICATES_PREFIX}{NAMESPACE}/#", 1))
        filters.append((self.topic, 1))
        filters.append((f"{NAMESPACE}/#", 1))  # literally spBv1.0/#, as the TCK expects
        return Subscribe(tuple(filters))

    def subscribed(self) -> Publish:
        """SUBACK arrived: the STATE birth, first PUBLISH of the session, with the Will's timestamp."""
        self._move("subscribed")
        assert self.connect_timestamp is not None
        return self._state(True, self.connect_timestamp)

    def state_received(self, payload: bytes) -> list[Action]:
        """A message on our own STATE topic. Raises MalformedPayloadError for bad JSON."""
        if self.state is not SessionState.ONLINE:
            return []  # a retained leftover seen while subscribing; our birth replaces it anyway
        assert self.connect_timestamp is not None
        state = StatePayload.from_bytes(payload)
        if state.online:
            if state.timestamp != self.connect_timestamp:
                # another host with our id (tck-id-operational-behavior-host-application-host-id)
                self.foreign_online_seen += 1
            return []
        if state.timestamp < self.connect_timestamp:
            self.stale_offline_ignored += 1
            return []
        self.reasserted += 1
        return [self._state(True, self.connect_timestamp)]

    def shutdown(self, now_ms: int) -> list[Action]:
        """Clean shutdown: offline with the current time, then DISCONNECT."""
        if self.state is not SessionState.ONLINE:
            self._move("closed")
            return []
        self._move("shutdown")
        return [self._state(False, now_ms), Disconnect()]

    def closed(self) -> None:
        """The connection is gone after a shutdown (or we give up before going online)."""
        if self.state is not SessionState.CLOSED:
            self._move("closed")

    def connection_lost(self) -> None:
        """The broker will deliver our Will; the next connect() starts a new timestamp."""
        self._move("connection_lost")

    @property
    def online(self) -> bool:
        return self.state is SessionState.ONLINE


def parse_state(payload: bytes) -> StatePayload:
    """Another host's STATE (for observability); raises MalformedPayloadError."""
    return StatePayload.from_bytes(payload)


__all__ = ["Action", "Disconnect", "HostSession", "MalformedPayloadError", "Publish", "SessionState",
           "Subscribe", "parse_state"]
