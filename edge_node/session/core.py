"""The Sparkplug B 3.0 edge node session: a state machine with no I/O (in the style of h11).

Events (:mod:`edge_node.session_events`) go in through :meth:`EdgeSession.send` (and value changes through the hot-path
:meth:`EdgeSession.submit`); :class:`Action` objects come out, for the MQTT shell
(:mod:`edge_node.mqtt_client`) to execute *in the order given*. The session never touches a socket,
a file or the event loop, and takes its clock as an argument, so every rule below is tested
without a network (tests/edge_node/test_session_*.py).

Rules (Sparkplug B 3.0; each names the spec's tck-id assertions it implements):

1. Every CONNECT carries the Will ``NDEATH`` (QoS 1, retain 0) with exactly one metric, ``bdSeq``
   (Int64), and no ``seq`` (tck-id-payloads-ndeath-will-message-qos, -retain, tck-id-topics-ndeath-payload,
   tck-id-topics-ndeath-seq). The bdSeq is persisted *before* the CONNECT is sent
   (:class:`PersistBdSeq`), goes up by one (mod 256) after every CONNECT that reached CONNACK, and
   once more after a process restart, because we cannot know whether the last one reached the
   broker (tck-id-topics-nbirth-bdseq-increment). A failed connect attempt reuses it.
2. After CONNACK: subscribe NCMD, DCMD of every device, and the primary host's STATE, all QoS 1,
   *before* any birth (tck-id-message-flow-edge-node-ncmd-subscribe, -device-dcmd-subscribe,
   -primary-application-state-with-multiple-servers-state-subs).
3. With a primary host configured, no birth until its STATE says ``online: true``; a STATE counts
   only if its timestamp is >= the last one accepted (the first always counts); others are stale
   and ignored (tck-id-message-flow-edge-node-birth-publish-phid-wait, -wait-id, -wait-online,
   -wait-timestamp). An accepted ``online: false`` while born: publish NDEATH, disconnect, and go
   to the next server (…-phid-offline, tck-id-operational-behavior-edge-node-termination-host-offline*).
   Not yet born: wait on this server if it is the only one, else walk to the next one.
4. Birth sequence: NBIRTH with ``seq`` 0, ``bdSeq`` equal to the Will's, ``Node Control/Rebirth``
   = false (Boolean, never aliased) and every node metric (name, alias, datatype, current value or
   ``is_null``, timestamp), metrics in timestamp order; then one DBIRTH per online device with
   seq +1 (tck-id-topics-nbirth-*, tck-id-payloads-dbirth-*, tck-id-operational-behavior-data-publish-nbirth-order).
5. ``seq`` is one counter for the node and its devices: every DBIRTH, NDATA, DDATA and DDEATH
   takes the next value, 255 wraps to 0 (tck-id-payloads-sequence-num-incrementing).
6. Aliases are given once, from the metric definitions, unique across node and devices, and the
   same in every birth of this process (tck-id-payloads-alias-uniqueness). NDATA/DDATA carry the
   alias only and no datatype (tck-id-payloads-alias-data-cmd-requirement, -datatype-not-req).
7. Report by exception, batched: value changes wait for the next :class:`Tick` (one publish
   interval) and go out as one NDATA/DDATA per target, metrics in timestamp order; several values
   of one metric share a message when their timestamps differ, else a new message starts.
8. ``Node Control/Rebirth`` = true in an NCMD: a new birth sequence on the same connection, seq
   back to 0, same bdSeq, no NDEATH (tck-id-operational-behavior-data-commands-rebirth-action-1..3),
   at most one per ``rebirth_throttle_s`` (a request inside the window is deferred, not dropped).
   ``Node Control/Next Server`` = true (optional in the spec, born false like Rebirth): NDEATH,
   then disconnect and connect to the next broker of the list (the same one if there is only one),
   as when the primary host goes offline. An operator uses it to move edges off a broker before
   maintenance without touching them.
9. Store-and-forward: a change that cannot be published at its Tick (not born, host offline,
   device not born) is handed to the store (:class:`StoreForward`). Once born, the backlog is
   read back (:class:`FetchHistory`) in source-time order and published as ``is_historical``
   metrics after the live data of each Tick, a bounded amount per Tick and in flight.
10. Delivery: a published DATA stays *in flight* until confirmed (:class:`DataConfirmed`: the
    broker echoed it back, or a later QoS 1 publish was acknowledged). In-flight live values are
    handed to the store if the connection drops first; in-flight stored rows are deleted only when
    confirmed. So a change is published once, and again (as historical) only if the broker died
    before routing it, or the primary host died shortly after it was routed (rule 15).
11. Clean shutdown: last DATA, then NDEATH (QoS 1), then DISCONNECT
    (tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath).
12. An NCMD/DCMD that cannot be decoded (not Sparkplug, unknown device, an alias or name no
    birth of ours declared: tck-id-payloads-alias-data-cmd-requirement, a datatype other than the
    birth's) is a peer's fault: counted in ``bad_commands``, logged, and with
    ``report_rejected_commands`` handed to the shell as :class:`RejectedCommand` so the command
    side can audit and answer it. None of its metrics is delivered, not even a rebirth request.

13. A handler that fails (a birth whose current values the codec refuses, or a bug of ours) does
    not escape :meth:`EdgeSession.send`: the session enters ``ERROR`` and returns
    :class:`SessionFailed`, then (if connected) a :class:`Disconnect` with ``reconnect=True``,
    after an NDEATH if the session was born (a first birth that failed put no NBIRTH on the wire,
    so it owes no death). The shell logs it, drops the connection and connects again; the
    disconnect empties the delivery window as any lost connection does (rule 10), so the next
    connection starts clean. The values a birth could not encode are forgotten first (counted in
    ``values_unencodable``): the next birth carries them as null instead of failing again.

14. Templates: :class:`TemplatesDefined` gives the template definitions (``_types_/<name>``), which
    every NBIRTH carries beside the node controls (tck-id-payloads-template-definition-nbirth-only).
    A set whose versions differ from the last (a type changed on the server) while born is an
    immediate rebirth, so no instance of the new version is published under the old definition;
    instances of a type whose version changed are null in that birth until the source reads them
    again (its DeviceOnline then re-births the device); the same set again is nothing. A template
    instance in DATA may carry only its changed members (tck-id-payloads-template-instance-members-data);
    the current value a birth carries is the last complete instance with those applied, so births
    stay complete.

15. The primary host's death loses nothing it had received and not yet stored. What the broker
    confirmed (rule 10) within ``host_loss_resend_ms`` before an accepted ``online: false`` of the
    primary host is handed to the store with the values in flight, and so reaches the host's next
    run as historical metrics (rule 9); so is what is still in flight, which the NDEATH's fence would
    otherwise confirm as routed (to a host that is gone). The broker routed these values, but a host that was killed,
    or froze and was killed, lost what sat in its socket and its write queues; its STATE tells us
    only afterwards. The host keeps one of each value (same metric and source time), so the values
    it did store are not doubled. Nothing is re-sent at a connection loss of our own: the host is
    fine then, and in-flight values already go back to the store (rule 10).

Whose fault: :class:`LocalProtocolError` (from :mod:`uns.sparkplug.errors`) for our callers'
misuse (an event not allowed in this state, an undefined metric): raised, and the state does not
change; a peer breaking Sparkplug (bad NCMD, bad STATE) is counted in :attr:`EdgeSession.counters`
and logged, never raised; a failure of our own is rule 13.

Layout (h11 style): the states and the transition table are :mod:`edge_node.session.machine`,
message contents and encoding :mod:`edge_node.session.messages`, the in-flight window
:mod:`edge_node.session.delivery`; this module holds the rules that tie them together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from uns.conventions import BDSEQ, NODE_NEXT_SERVER, NODE_REBIRTH, is_quality_marker
from uns.sparkplug.codec import decode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import EncodeError, LocalProtocolError, RemoteProtocolError, UnknownAliasError
from uns.sparkplug.model import Metric, Template, now_ms
from uns.sparkplug.state import StatePayload
from uns.sparkplug.templates import definition_for, merge_instance
from uns.sparkplug.topic import MessageType, StateTopic, device_filter, device_prefix, node_topic, validate_id

from ..model import DeviceOffline, DeviceOnline, MetricDefinition, MetricUpdate, TemplatesDefined
from ..session_events import (
    Action,
    CommandFault,
    CommandReceived,
    Connect,
    ConnectFailed,
    ConnectStarted,
    DataConfirmed,
    DeliverCommand,
    Disconnect,
    Event,
    FetchHistory,
    HistoryFetched,
    MqttConnected,
    MqttDisconnected,
    PersistBdSeq,
    Publish,
    RejectedCommand,
    SessionFailed,
    Shutdown,
    StateReceived,
    StoreDelete,
    StoreForward,
    Subscribe,
    Tick,
)
from .delivery import DeliveryWindow
from .machine import State, StateMachine, Trigger
from .messages import (
    BirthEncodeError,
    MetricInfo,
    MetricKey,
    birth_metrics,
    chunk_values,
    data_metrics,
    definition_properties,
    encode_birth,
    encode_data,
    encode_ddeath,
    encode_ndeath,
    node_controls,
    where,
)

if TYPE_CHECKING:
    from ..sparkplug_config import EdgeSparkplugConfig

__all__ = ["EdgeSession", "SessionCounters", "SessionSettings", "State"]

log = logging.getLogger("edge_node.session")

#: NCMD metrics the session acts on itself (born false, never aliased, not definable by tags)
_NODE_CONTROLS = (NODE_REBIRTH, NODE_NEXT_SERVER)
#: states in which an MQTT session is up
_CONNECTED = frozenset({State.WAITING_HOST, State.ONLINE, State.DISCONNECTING})


# -------------------------------------------------------------------------------- the session


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What the session needs from :class:`edge_node.sparkplug_config.EdgeSparkplugConfig`."""

    group_id: str
    edge_node_id: str
    primary_host_id: str | None = None
    several_servers: bool = False
    max_metrics_per_message: int = 1000
    rebirth_throttle_ms: int = 5000
    confirm_delivery: bool = True
    replay_values_per_tick: int = 10_000
    replay_max_in_flight: int = 50_000
    #: rule 15: values confirmed this long before the primary host's death are stored again (0: off)
    host_loss_resend_ms: int = 0
    #: also hand every NCMD/DCMD that cannot be decoded to the shell as :class:`RejectedCommand`
    #: (rule 12); off by default so callers that predate that action see the same actions as before
    report_rejected_commands: bool = False

    @classmethod
    def from_config(cls, config: EdgeSparkplugConfig) -> SessionSettings:
        return cls(
            group_id=config.group_id, edge_node_id=config.edge_node_id, primary_host_id=config.primary_host_id,
            several_servers=len(config.brokers) > 1, max_metrics_per_message=config.max_metrics_per_message,
            rebirth_throttle_ms=int(config.rebirth_throttle_s * 1000), confirm_delivery=config.confirm_delivery,
            replay_values_per_tick=config.store.replay_values_per_tick,
            replay_max_in_flight=config.store.replay_max_in_flight,
            host_loss_resend_ms=int(config.host_loss_resend_s * 1000) if config.primary_host_id else 0,
        )


@dataclass(slots=True)
class SessionCounters:
    """Monotonic counters (for Prometheus) plus a few gauges; see :attr:`EdgeSession.counters`."""

    connects: int = 0
    nbirths: int = 0
    dbirths: int = 0
    ddeaths: int = 0
    rebirths: int = 0
    rebirths_throttled: int = 0
    #: rebirths because the template definitions changed (a type changed on the OPC UA server)
    template_rebirths: int = 0
    next_server_requests: int = 0
    data_messages: int = 0
    values_submitted: int = 0
    values_published: int = 0
    values_replayed: int = 0
    values_stored: int = 0
    values_confirmed: int = 0
    values_unencodable: int = 0
    replay_unknown_metric: int = 0
    bad_commands: int = 0
    bad_state: int = 0
    stale_state: int = 0
    other_host_state: int = 0
    commands_delivered: int = 0
    host_offline_disconnects: int = 0
    #: values confirmed shortly before the primary host's death, stored again for it (rule 15)
    values_resent_after_host_loss: int = 0
    #: handler failures that put the session in ERROR (rule 13)
    session_errors: int = 0


@dataclass(slots=True)
class _Device:
    online: bool = False
    born: bool = False
    order: int = 0


class EdgeSession:
    """One edge node's Sparkplug session; see the module docstring for the rules."""

    def __init__(self, settings: SessionSettings, definitions: Iterable[MetricDefinition], *,
                 last_bd_seq: int | None = None, has_backlog: bool = False,
                 clock: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        validate_id(settings.group_id, "group_id")
        validate_id(settings.edge_node_id, "edge_node_id")
        if settings.primary_host_id is not None:
            validate_id(settings.primary_host_id, "primary_host_id")
        self._clock = clock
        self.counters = SessionCounters()
        self._machine = StateMachine()
        self._metrics: dict[MetricKey, MetricInfo] = {}
        self._by_alias: dict[int, MetricInfo] = {}
        self._devices: dict[str, _Device] = {}
        self._define(definitions)
        g, e = settings.group_id, settings.edge_node_id
        self._topics = {
            MessageType.NBIRTH: node_topic(g, MessageType.NBIRTH, e),
            MessageType.NDATA: node_topic(g, MessageType.NDATA, e),
            MessageType.NDEATH: node_topic(g, MessageType.NDEATH, e),
            MessageType.NCMD: node_topic(g, MessageType.NCMD, e),
        }
        self._device_topics = {
            d: {t: node_topic(g, t, e, d) for t in (MessageType.DBIRTH, MessageType.DDATA, MessageType.DDEATH,
                                                  MessageType.DCMD)}
            for d in self._devices
        }
        # bdSeq (rule 1)
        self._bd_seq = 0 if last_bd_seq is None else (last_bd_seq + 1) % 256
        self._bd_seq_used = False
        self._connection = 0
        # sequence and birth state
        self._seq = 0
        self._last_birth_ms: int | None = None
        self._rebirth_due: int | None = None
        # primary host (rule 3)
        self._last_state_ts: int | None = None
        self._host_online = settings.primary_host_id is None
        # values
        self._cvt: dict[MetricKey, MetricUpdate] = {}
        self._pending: list[MetricUpdate] = []
        self._window = DeliveryWindow(settings.host_loss_resend_ms)
        # backlog (rule 9)
        self._history_pending = has_backlog
        self._history_cursor: tuple[int, int] | None = None
        self._fetch_outstanding = False
        self._device_order = 0
        # template definitions the NBIRTH declares (rule 14)
        self._templates: tuple[Metric, ...] = ()

    # -- introspection ----------------------------------------------------------------------

    @property
    def _state(self) -> State:
        return self._machine.state

    @property
    def state(self) -> State:
        return self._machine.state

    @property
    def born(self) -> bool:
        return self._state is State.ONLINE

    @property
    def connected(self) -> bool:
        return self._state in _CONNECTED

    @property
    def bd_seq(self) -> int:
        """The bdSeq of the current (or next) CONNECT."""
        return self._bd_seq

    @property
    def seq(self) -> int:
        """The ``seq`` the last edge message carried (0 after an NBIRTH)."""
        return (self._seq - 1) % 256

    @property
    def connection(self) -> int:
        return self._connection

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def in_flight_values(self) -> int:
        """Values published but not yet confirmed by the broker."""
        return self._window.values

    @property
    def host_online(self) -> bool:
        return self._host_online

    def alias_of(self, device_id: str | None, name: str) -> int:
        return self._metrics[(device_id, name)].alias

    def datatype_of(self, device_id: str | None, name: str) -> DataType:
        info = self._metrics.get((device_id, name))
        if info is None:
            raise LocalProtocolError(f"metric {name!r} of {where(device_id)} is not defined")
        return info.datatype

    def device_online(self, device_id: str) -> bool:
        dev = self._devices.get(device_id)
        return dev is not None and dev.online

    # -- the hot path -----------------------------------------------------------------------

    def submit(self, update: MetricUpdate) -> None:
        """Take one change; it is published or handed to the store at the next :class:`Tick`."""
        if self._state is State.CLOSED:
            raise LocalProtocolError("the edge session is closed; no more values are accepted")
        key = (update.device_id, update.name)
        if key not in self._metrics:
            raise LocalProtocolError(
                f"metric {update.name!r} of {where(update.device_id)} is not in the metric definitions; "
                "every metric must be declared before the birth (tck-id-topics-nbirth-metric-reqs)")
        if not update.is_historical and _supersedes(update, self._cvt.get(key)):
            self._cvt[key] = _complete(update, self._cvt.get(key))
        self._pending.append(update)
        self.counters.values_submitted += 1

    def set_current(self, update: MetricUpdate) -> None:
        """A node metric's value as read when its source (re)connects: a state, not a change.

        Before the NBIRTH it only becomes the current value, which the NBIRTH carries (so a birth
        does not say null for a tag that was read a moment before, and the read is not replayed
        as history). Once born it is published like any change: the NBIRTH is already out."""
        if self._state is State.ONLINE:
            self.submit(update)
            return
        if self._state is State.CLOSED:
            raise LocalProtocolError("the edge session is closed; no more values are accepted")
        key = (update.device_id, update.name)
        if update.device_id is not None or key not in self._metrics:
            raise LocalProtocolError(f"set_current() takes node metrics that are defined; got {update.name!r} "
                                     f"of {where(update.device_id)}")
        if _supersedes(update, self._cvt.get(key)):
            self._cvt[key] = update

    # -- events -----------------------------------------------------------------------------

    def send(self, event: Event) -> list[Action]:
        """Feed one event; returns the actions to execute, in order.

        Raises :class:`LocalProtocolError` for our caller's misuse (the state does not change).
        Any other failure of a handler becomes the ERROR path (rule 13), never an exception."""
        kind = type(event)
        self._machine.check(kind)
        before = self._state
        pending = self._pending
        try:
            return _HANDLERS[kind](self, event)
        except EncodeError as exc:  # a LocalProtocolError, but ours, not the caller's: rule 13
            return self._fail(event, exc, before, pending)
        except LocalProtocolError:
            raise
        except Exception as exc:  # noqa: BLE001 - rule 13: reported as an action, never a crash
            return self._fail(event, exc, before, pending)

    def _fail(self, event: Event, exc: Exception, before: State, pending: list[MetricUpdate]) -> list[Action]:
        """Rule 13: ERROR, and leave the connection so the shell starts a clean one.

        ``before`` is the state before the handler ran: only a session that was born (ONLINE)
        owes the host an NDEATH; one whose first birth failed has no NBIRTH out, and an NDEATH
        (or the Will) would only be a stale death to the host. ``pending`` is the batch as it was
        before the handler: one that took it over and failed half way must not lose what it had
        not published yet (to the store with it)."""
        state = self._state
        self.counters.session_errors += 1
        if isinstance(exc, BirthEncodeError):
            for key, _error in exc.bad:
                if self._cvt.pop(key, None) is not None:
                    self.counters.values_unencodable += 1
        error = f"{type(exc).__name__}: {exc}"
        log.error("edge session failed on %s in state %s (%s); disconnecting to start clean",
                  type(event).__name__, state.value, error, exc_info=not isinstance(exc, EncodeError))
        actions: list[Action] = [SessionFailed(type(event).__name__, state.value, error)]
        if self._pending is not pending:
            kept = {id(u) for u in self._pending} | self._window.live_ids()
            actions += self._store([u for u in pending if id(u) not in kept])
        if state is State.CLOSED or isinstance(event, Shutdown):
            if state is not State.CLOSED:
                self._machine.fire(Trigger.SHUTDOWN)
            return actions
        leaving = state is State.DISCONNECTING or state is State.ERROR  # a Disconnect is already on its way
        connected = state in _CONNECTED
        if state is not State.ERROR:
            self._machine.fire(Trigger.FAILED)
        if leaving or not connected:
            return actions
        born = before is State.ONLINE
        if born:  # NDEATH first, as on every intentional disconnect of a born node (rule 11)
            actions.append(self._publish(MessageType.NDEATH, None, encode_ndeath(self._bd_seq, self._clock()),
                                         qos=1, fence=True))
        actions.append(Disconnect(f"session error: {error}", next_server=False, publish_will=born, reconnect=True))
        return actions

    # connection lifecycle -------------------------------------------------------------------

    def _on_connect_started(self, _: ConnectStarted) -> list[Action]:
        if self._bd_seq_used:
            self._bd_seq = (self._bd_seq + 1) % 256
            self._bd_seq_used = False
        self._connection += 1
        self._machine.fire(Trigger.CONNECT_STARTED)
        will = encode_ndeath(self._bd_seq, self._clock())
        return [PersistBdSeq(self._bd_seq), Connect(self._topics[MessageType.NDEATH], will, self._bd_seq)]

    def _on_connect_failed(self, event: ConnectFailed) -> list[Action]:
        if self._state in (State.CONNECTING, State.ERROR):
            self._machine.fire(Trigger.CONNECT_FAILED)
        return []

    def _on_connected(self, _: MqttConnected) -> list[Action]:
        self._bd_seq_used = True
        if self._state is State.ERROR:  # failed while connecting: this connection is not used
            return [Disconnect("session error while connecting", next_server=False, publish_will=False,
                               reconnect=True)]
        self.counters.connects += 1
        filters = [self._topics[MessageType.NCMD]]
        filters += [self._device_topics[d][MessageType.DCMD] for d in self._devices]
        if self.settings.primary_host_id is not None:
            filters.append(str(StateTopic(self.settings.primary_host_id)))
        actions: list[Action] = [Subscribe(tuple(filters))]
        if self.settings.confirm_delivery:
            echo = [self._topics[MessageType.NDATA]]
            if self._devices:
                echo.append(device_filter(self.settings.group_id, MessageType.DDATA, self.settings.edge_node_id))
            actions.append(Subscribe(tuple(echo), qos=0, required=False))
        # Each server has its own retained STATE, always the newest there: judge timestamps per connection
        self._last_state_ts = None
        if self.settings.primary_host_id is None:
            self._machine.fire(Trigger.CONNACK_BIRTH)
            actions += self._birth_sequence()
        else:
            self._host_online = False
            self._machine.fire(Trigger.CONNACK_WAIT_HOST)
        return actions

    def _on_disconnected(self, event: MqttDisconnected) -> list[Action]:
        stored, had_rows = self._window.drop()
        if had_rows:
            self._history_pending = True
        stored += self._pending
        self._pending = []
        self._history_cursor = None
        self._fetch_outstanding = False
        self._rebirth_due = None
        for dev in self._devices.values():
            dev.born = False
        if self._state is not State.CLOSED:
            self._machine.fire(Trigger.LOST)
        return self._store(stored)

    def _on_shutdown(self, _: Shutdown) -> list[Action]:
        actions: list[Action] = []
        if self._state is State.ONLINE:
            actions += self._flush_live()
        connected = self.connected
        if self._state is not State.CLOSED:
            self._machine.fire(Trigger.SHUTDOWN)
        if connected:
            # NDEATH first (rule 11); its PUBACK confirms every DATA before it (fence)
            actions.append(self._publish(MessageType.NDEATH, None, encode_ndeath(self._bd_seq, self._clock()),
                                         qos=1, fence=True))
            actions.append(Disconnect("shutdown", next_server=False, publish_will=True))
        stored = self._pending
        self._pending = []
        actions += self._store(stored)
        return actions

    # primary host ---------------------------------------------------------------------------

    def _on_state(self, event: StateReceived) -> list[Action]:
        if self._state in (State.CLOSED, State.ERROR):
            return []
        primary = self.settings.primary_host_id
        if primary is None or event.host_id != primary:
            self.counters.other_host_state += 1
            return []
        try:
            state = StatePayload.from_bytes(event.payload)
        except RemoteProtocolError as exc:
            self.counters.bad_state += 1
            log.warning("ignoring bad STATE of primary host %r: %s", primary, exc)
            return []
        if self._last_state_ts is not None and state.timestamp < self._last_state_ts:
            self.counters.stale_state += 1
            log.info("ignoring stale STATE of %r (timestamp %d < last %d)", primary, state.timestamp,
                     self._last_state_ts)
            return []
        self._last_state_ts = state.timestamp
        self._host_online = state.online
        if self._state is State.DISCONNECTING:
            return []
        if state.online:
            if self._state is State.WAITING_HOST:
                self._machine.fire(Trigger.HOST_ONLINE)
                return self._birth_sequence()
            return []
        if self._state is State.ONLINE:
            self.counters.host_offline_disconnects += 1
            log.warning("primary host %r went offline: NDEATH, disconnect, next server", primary)
            self._machine.fire(Trigger.LEAVE_SERVER)
            return [*self._resend_to_next_host(primary),
                    self._publish(MessageType.NDEATH, None, encode_ndeath(self._bd_seq, self._clock()),
                                  qos=1, fence=True),
                    Disconnect(f"primary host {primary} offline", next_server=True, publish_will=True)]
        if self.settings.several_servers:  # WAITING_HOST: try the next server, where the host may be online
            self._machine.fire(Trigger.LEAVE_SERVER)
            return [Disconnect(f"primary host {primary} offline on this server", next_server=True,
                               publish_will=False)]
        return []

    def _resend_to_next_host(self, primary: str) -> list[Action]:
        """Rule 15: what the broker confirmed shortly before the host's death, and what is still in
        flight, stored again. In flight too: the NDEATH that follows is a fence whose PUBACK would
        confirm those values as routed, to a host that is gone."""
        if not self._window.keep_ms:
            return []
        recent = self._window.recent(self._clock())
        in_flight, had_rows = self._window.drop()
        if had_rows:  # stored rows in flight stay in the store: read the backlog again
            self._restart_history()
        recent += in_flight
        if not recent:
            return []
        self.counters.values_resent_after_host_loss += len(recent)
        log.warning("primary host %r went offline: the %d value(s) published in the last %.1f s are stored "
                    "again, to reach it as historical (what it had received but not stored died with it)",
                    primary, len(recent), self._window.keep_ms / 1000)
        return self._store(recent)

    # commands ---------------------------------------------------------------------------------

    def _on_command(self, event: CommandReceived) -> list[Action]:
        if self._state is State.CLOSED:
            return []
        device_id = event.device_id
        if device_id is not None and device_id not in self._devices:
            return self._reject(event, CommandFault.UNKNOWN_DEVICE, f"DCMD for unknown device {device_id!r}")
        message_type = MessageType.NCMD if device_id is None else MessageType.DCMD
        unknown: list[CommandFault] = []  # which lookup failed: the error types do not say

        def resolve(name: str | None, alias: int | None) -> tuple[str, DataType]:
            if alias is not None:
                info = self._by_alias.get(alias)
                if info is None or info.device_id != device_id:
                    unknown.append(CommandFault.UNKNOWN_ALIAS)
                    raise UnknownAliasError(f"{message_type} alias {alias} is not a metric of {where(device_id)}")
                return info.name, info.datatype
            if device_id is None and name in _NODE_CONTROLS:
                return name, DataType.Boolean
            info = self._metrics.get((device_id, name))  # type: ignore[arg-type]
            if info is None:
                unknown.append(CommandFault.UNKNOWN_METRIC)
                raise UnknownAliasError(f"{message_type} metric {name!r} is not a metric of {where(device_id)}")
            return info.name, info.datatype

        try:
            payload = decode_payload(event.payload, message_type, resolve)
        except RemoteProtocolError as exc:
            fault = unknown[-1] if isinstance(exc, UnknownAliasError) and unknown else CommandFault.MALFORMED
            return self._reject(event, fault, f"bad {message_type} for {where(device_id)}: {exc}")
        actions: list[Action] = []
        rebirth = next_server = False
        others: list[Metric] = []
        for metric in payload.metrics:
            if device_id is None and metric.name == NODE_REBIRTH:
                rebirth = rebirth or metric.value is True
            elif device_id is None and metric.name == NODE_NEXT_SERVER:
                next_server = next_server or metric.value is True
            else:
                others.append(metric)
        if next_server and self._state is State.ONLINE:
            self.counters.next_server_requests += 1
            log.warning("NCMD %s: NDEATH, disconnect, next server", NODE_NEXT_SERVER)
            self._machine.fire(Trigger.LEAVE_SERVER)
            return [self._publish(MessageType.NDEATH, None, encode_ndeath(self._bd_seq, self._clock()),
                                  qos=1, fence=True),
                    Disconnect(NODE_NEXT_SERVER, next_server=True, publish_will=True)]
        if rebirth:
            actions += self._request_rebirth()
        if others:
            self.counters.commands_delivered += 1
            actions.append(DeliverCommand(device_id, others))
        return actions

    def _reject(self, event: CommandReceived, fault: CommandFault, error: str) -> list[Action]:
        """A peer's command we cannot decode: count and log it, and hand it on (rule 12)."""
        self.counters.bad_commands += 1
        log.warning("ignoring %s (%s)", error, fault.value)
        if not self.settings.report_rejected_commands:
            return []
        g, e = self.settings.group_id, self.settings.edge_node_id
        topic = (self._topics[MessageType.NCMD] if event.device_id is None
                 else device_prefix(g, MessageType.DCMD, e) + event.device_id)
        return [RejectedCommand(topic, event.device_id, event.payload, fault, error)]

    def _request_rebirth(self) -> list[Action]:
        if self._state is not State.ONLINE:
            return []  # a birth sequence is coming anyway once we are online
        now = self._clock()
        due = (self._last_birth_ms or 0) + self.settings.rebirth_throttle_ms
        if now >= due and self._rebirth_due is None:
            self.counters.rebirths += 1
            log.info("rebirth requested (NCMD Node Control/Rebirth): publishing a new birth sequence")
            return self._birth_sequence()
        self.counters.rebirths_throttled += 1
        if self._rebirth_due is None:
            self._rebirth_due = due
            log.info("rebirth request throttled; rebirth at +%d ms", due - now)
        return []

    # templates (rule 14) --------------------------------------------------------------------

    def _on_templates(self, event: TemplatesDefined) -> list[Action]:
        if _versions(event.definitions) == _versions(self._templates):
            return []  # the same types read again (a reconnect): nothing to declare anew
        changed = bool(self._templates)
        self._templates = tuple(event.definitions)
        definitions = {d.name: d.value for d in self._templates if isinstance(d.name, str)
                       and isinstance(d.value, Template)}
        for key, current in list(self._cvt.items()):
            if isinstance(current.value, Template):
                definition = definition_for(current.value.template_ref or "", definitions)
                if definition is None or definition.version != current.value.version:
                    del self._cvt[key]  # an instance of the old type: null until the source reads it again
        if self._state is not State.ONLINE:
            return []  # the next NBIRTH carries them
        self.counters.template_rebirths += 1
        log.info("template definitions %s: rebirth with %s", "changed" if changed else "declared",
                 _versions(self._templates))
        self.counters.rebirths += 1
        return self._birth_sequence()

    # devices ----------------------------------------------------------------------------------

    def _on_device_online(self, event: DeviceOnline) -> list[Action]:
        dev = self._device(event.device_id)
        for update in event.current:
            if update.device_id != event.device_id:
                raise LocalProtocolError(
                    f"DeviceOnline({event.device_id!r}) carries a value of {where(update.device_id)}")
            key = (update.device_id, update.name)
            if key not in self._metrics:
                raise LocalProtocolError(f"metric {update.name!r} of {where(update.device_id)} is not defined")
            self._cvt[key] = update
        if not dev.online:
            self._device_order += 1
            dev.order = self._device_order
        dev.online = True
        if self._state is not State.ONLINE:
            return []
        # already born: a new DBIRTH replaces the old one (new current values); no DDEATH needed.
        # Changes submitted before it and not yet sent go first, as on DeviceOffline: sent after
        # the birth they would overwrite its newer values at every host (an object instance's
        # partial sample before its re-read, seen as a stuck null member in a loaded run)
        actions = self._send_pending_of(event.device_id) if dev.born else []
        actions.append(self._dbirth(event.device_id))
        self._restart_history()
        return actions

    def _on_device_offline(self, event: DeviceOffline) -> list[Action]:
        dev = self._device(event.device_id)
        actions: list[Action] = []
        if self._state is State.ONLINE and dev.born:
            actions += self._send_pending_of(event.device_id)
            seq = self._next_seq()
            actions.append(self._publish(MessageType.DDEATH, event.device_id, encode_ddeath(self._clock(), seq),
                                         seq=seq))
            self.counters.ddeaths += 1
        dev.online = False
        dev.born = False
        return actions

    def _send_pending_of(self, device_id: str) -> list[Action]:
        """A born device's changes not sent yet, as DDATA now: before its DDEATH or a new DBIRTH,
        never after (after a birth they would overwrite its newer values at every host)."""
        mine = [u for u in self._pending if u.device_id == device_id]
        if not mine:
            return []
        self._pending = [u for u in self._pending if u.device_id != device_id]
        return self._publish_values(device_id, mine, from_store=False)

    def _device(self, device_id: str) -> _Device:
        dev = self._devices.get(device_id)
        if dev is None:
            raise LocalProtocolError(f"device {device_id!r} has no metric definitions; known devices: "
                                     f"{', '.join(sorted(self._devices)) or 'none'}")
        return dev

    # ticks, delivery, backlog -----------------------------------------------------------------

    def _on_tick(self, _: Tick) -> list[Action]:
        actions: list[Action] = []
        if self._state is State.ONLINE and self._rebirth_due is not None and self._clock() >= self._rebirth_due:
            self._rebirth_due = None
            self.counters.rebirths += 1
            log.info("rebirth requested earlier (throttled) is due: publishing a new birth sequence")
            actions += self._birth_sequence()
        actions += self._flush_live()
        if (self._state is State.ONLINE and self._history_pending and not self._fetch_outstanding):
            room = min(self.settings.replay_values_per_tick, self.settings.replay_max_in_flight - self._window.rows)
            if room > 0:
                self._fetch_outstanding = True
                targets = frozenset([None, *(d for d, dev in self._devices.items() if dev.born)])
                actions.append(FetchHistory(room, self._history_cursor, targets))
        return actions

    def _on_history(self, event: HistoryFetched) -> list[Action]:
        self._fetch_outstanding = False
        if self._state is not State.ONLINE:
            return []  # the rows stay in the store
        if event.exhausted:
            self._history_pending = False
        if not event.updates:
            return []
        last = event.updates[-1]
        self._history_cursor = (last.timestamp, last.seq_id or 0)
        by_target: dict[str | None, list[MetricUpdate]] = {}
        unknown: list[int] = []
        for update in event.updates:
            row_id = update.seq_id
            if row_id is None or self._window.holds_row(row_id):
                continue
            if (update.device_id, update.name) not in self._metrics:
                unknown.append(row_id)
                continue
            if update.device_id is not None and not self._devices[update.device_id].born:
                continue
            by_target.setdefault(update.device_id, []).append(update)
        actions: list[Action] = []
        if unknown:
            self.counters.replay_unknown_metric += len(unknown)
            log.warning("dropping %d buffered values of metrics no longer defined", len(unknown))
            actions.append(StoreDelete(unknown))
        for device_id, updates in by_target.items():
            actions += self._publish_values(device_id, updates, from_store=True)
        return actions

    def _on_confirmed(self, event: DataConfirmed) -> list[Action]:
        if event.connection is not None and event.connection != self._connection:
            return []
        confirmed, rows = self._window.confirm(event.seq, self._clock() if self._window.keep_ms else 0)
        self.counters.values_confirmed += confirmed
        return [StoreDelete(rows)] if rows else []

    def _restart_history(self) -> None:
        self._history_cursor = None
        self._history_pending = True

    def _flush_live(self) -> list[Action]:
        pending = self._pending
        if not pending:
            return []
        self._pending = []
        if self._state is not State.ONLINE:
            return self._store(pending)
        if self._window.values >= self.settings.replay_max_in_flight + self.settings.max_metrics_per_message * 100:
            # the broker is not confirming (stuck, or routing slower than we produce): keep memory
            # bounded, buffer on disk and replay once confirmations catch up
            return self._store(pending)
        by_target: dict[tuple[str | None, bool], list[MetricUpdate]] = {}
        keep: list[MetricUpdate] = []
        devices = self._devices
        for update in pending:
            device_id = update.device_id
            if device_id is not None and not devices[device_id].born:
                keep.append(update)
                continue
            key = (device_id, update.is_historical)
            group = by_target.get(key)
            if group is None:
                by_target[key] = [update]
            else:
                group.append(update)
        actions: list[Action] = []
        for (device_id, _historical), updates in by_target.items():
            actions += self._publish_values(device_id, updates, from_store=False)
        actions += self._store(keep)
        return actions

    def _store(self, updates: list[MetricUpdate]) -> list[Action]:
        if not updates:
            return []
        self._history_pending = True
        self.counters.values_stored += len(updates)
        return [StoreForward(updates)]

    # -- building messages (contents: :mod:`edge_node.session.messages`) -------------------------

    def _publish_values(self, device_id: str | None, updates: list[MetricUpdate], *, from_store: bool) -> list[Action]:
        """NDATA/DDATA messages for one target: timestamp order, bounded size, no (metric, ts) twice."""
        message_type = MessageType.NDATA if device_id is None else MessageType.DDATA
        actions: list[Action] = []
        for chunk in chunk_values(updates, self.settings.max_metrics_per_message):
            actions += self._data_message(message_type, device_id, chunk, from_store)
        return actions

    def _data_message(self, message_type: MessageType, device_id: str | None, updates: list[MetricUpdate],
                      from_store: bool) -> list[Action]:
        metrics = data_metrics(self._metrics, device_id, updates, from_store)
        if not metrics:
            return []
        encoded = encode_data(message_type, updates, metrics, self._clock(), self._seq)
        for update, error in encoded.dropped:
            self.counters.values_unencodable += 1
            log.error("dropping value of %r (%s): %s", update.name, where(device_id), error)
        if encoded.payload is None:
            return []
        updates = encoded.updates
        seq = self._next_seq()  # taken only once the payload encoded: a bad value never burns a seq
        if from_store:
            self._window.add_stored(seq, updates)
            self.counters.values_replayed += len(updates)
        else:
            self._window.add_live(seq, updates)
            self.counters.values_published += len(updates)
        self.counters.data_messages += 1
        return [self._publish(message_type, device_id, encoded.payload, seq=seq, values=len(updates))]

    def _birth_sequence(self) -> list[Action]:
        """NBIRTH (seq 0) then a DBIRTH per online device (rule 4).

        A current value that does not encode raises :class:`BirthEncodeError` (rule 13)."""
        now = self._clock()
        self._seq = 0
        self._last_birth_ms = now
        self._rebirth_due = None
        metrics = birth_metrics(self._infos(None), self._cvt, now)
        seq = self._next_seq()
        fixed = [*node_controls(self._bd_seq, now), *(_restamped(d, now) for d in self._templates)]
        payload, count = encode_birth(MessageType.NBIRTH, fixed, metrics, now, seq)
        actions: list[Action] = [self._publish(MessageType.NBIRTH, None, payload, seq=seq, values=count)]
        self.counters.nbirths += 1
        for dev in self._devices.values():
            dev.born = False
        for device_id, dev in sorted(self._devices.items(), key=lambda kv: kv[1].order):
            if dev.online:
                actions.append(self._dbirth(device_id))
        self._restart_history()
        return actions

    def _dbirth(self, device_id: str) -> Publish:
        now = self._clock()
        metrics = birth_metrics(self._infos(device_id), self._cvt, now)
        seq = self._next_seq()
        payload, count = encode_birth(MessageType.DBIRTH, [], metrics, now, seq)
        self._devices[device_id].born = True
        self.counters.dbirths += 1
        return self._publish(MessageType.DBIRTH, device_id, payload, seq=seq, values=count)

    def _infos(self, device_id: str | None) -> list[MetricInfo]:
        return [info for key, info in self._metrics.items() if key[0] == device_id]

    def _publish(self, message_type: MessageType, device_id: str | None, payload: bytes, *, seq: int | None = None,
                 qos: int = 0, fence: bool = False, values: int = 0) -> Publish:
        topic = (self._topics[message_type] if device_id is None
                 else self._device_topics[device_id][message_type])
        return Publish(topic, payload, qos, False, message_type, seq, self._connection, values, fence)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    # -- definitions ----------------------------------------------------------------------------

    def _define(self, definitions: Iterable[MetricDefinition]) -> None:
        lowered: dict[MetricKey, str] = {}
        alias = 0
        for definition in definitions:
            key = (definition.device_id, definition.name)
            if key in self._metrics:
                raise LocalProtocolError(
                    f"metric {definition.name!r} of {where(definition.device_id)} is defined twice")
            if not definition.name:
                raise LocalProtocolError("a metric definition has an empty name")
            if definition.device_id is None and definition.name in (BDSEQ, *_NODE_CONTROLS):
                raise LocalProtocolError(f"{definition.name!r} is reserved by Sparkplug; the session sends it")
            if definition.device_id is not None and definition.device_id not in self._devices:
                validate_id(definition.device_id, "device_id")
                self._devices[definition.device_id] = _Device()
            folded = (definition.device_id, definition.name.casefold())
            if folded in lowered:
                log.warning("metrics %r and %r of %s differ only by case (tck-id-case-sensitivity-metric-names)",
                            lowered[folded], definition.name, where(definition.device_id))
            lowered[folded] = definition.name
            alias += 1
            info = MetricInfo(definition.device_id, definition.name, DataType(definition.datatype), alias, definition,
                              definition_properties(definition))
            self._metrics[key] = info
            self._by_alias[alias] = info


def _complete(update: MetricUpdate, current: MetricUpdate | None) -> MetricUpdate:
    """The current value a birth carries: a template instance in DATA may hold only the members that
    changed (edge_node.templates.TemplateCatalog.delta), so it is applied on top of the last
    complete instance; births stay complete (tck-id-payloads-template-instance-members-birth)."""
    if (isinstance(update.value, Template) and not update.is_null and current is not None
            and isinstance(current.value, Template) and not current.is_null):
        return replace(update, value=merge_instance(current.value, update.value))
    return update


def _versions(definitions: Iterable[Metric]) -> dict[str | None, str | None]:
    return {d.name: d.value.version if isinstance(d.value, Template) else None for d in definitions}


def _restamped(definition: Metric, now: int) -> Metric:
    return replace(definition, timestamp=now)


_HANDLERS: dict[type, Callable[[EdgeSession, object], list[Action]]] = {
    ConnectStarted: EdgeSession._on_connect_started,  # type: ignore[dict-item]
    ConnectFailed: EdgeSession._on_connect_failed,  # type: ignore[dict-item]
    MqttConnected: EdgeSession._on_connected,  # type: ignore[dict-item]
    MqttDisconnected: EdgeSession._on_disconnected,  # type: ignore[dict-item]
    StateReceived: EdgeSession._on_state,  # type: ignore[dict-item]
    CommandReceived: EdgeSession._on_command,  # type: ignore[dict-item]
    DataConfirmed: EdgeSession._on_confirmed,  # type: ignore[dict-item]
    Tick: EdgeSession._on_tick,  # type: ignore[dict-item]
    HistoryFetched: EdgeSession._on_history,  # type: ignore[dict-item]
    Shutdown: EdgeSession._on_shutdown,  # type: ignore[dict-item]
    DeviceOnline: EdgeSession._on_device_online,  # type: ignore[dict-item]
    DeviceOffline: EdgeSession._on_device_offline,  # type: ignore[dict-item]
    TemplatesDefined: EdgeSession._on_templates,  # type: ignore[dict-item]
}


def _supersedes(update: MetricUpdate, current: MetricUpdate | None) -> bool:
    """Whether ``update`` becomes the current value a birth carries: a newer sample does, and so does
    anything after the edge's own marker (Bad, stale, a flagged timestamp), even when its source
    timestamp is older: after a reconnect the recovery value keeps the time it last changed."""
    return current is None or update.timestamp >= current.timestamp or is_quality_marker(current.properties)
