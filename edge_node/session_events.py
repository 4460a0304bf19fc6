"""The vocabulary of :class:`edge_node.session.EdgeSession`: events it takes, actions it returns.

Plain frozen dataclasses, no behaviour: the rules live in :mod:`edge_node.session`. Split out so
the shell (:mod:`edge_node.mqtt_client`) and tests can name them without the machine's internals.
The device events are the OPC UA side's own :class:`edge_node.model.DeviceOnline` and
:class:`edge_node.model.DeviceOffline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from uns.sparkplug.model import Metric
from uns.sparkplug.topic import MessageType

from .model import DeviceOffline, DeviceOnline, MetricUpdate, TemplatesDefined

__all__ = [
    "Action", "CommandFault", "CommandReceived", "Connect", "ConnectFailed", "ConnectStarted", "DataConfirmed",
    "DeliverCommand", "Disconnect", "Event", "FetchHistory", "HistoryFetched", "MqttConnected",
    "MqttDisconnected", "PersistBdSeq", "Publish", "RejectedCommand", "SessionFailed", "Shutdown", "StateReceived",
    "StoreDelete", "StoreForward", "Subscribe", "Tick",
]


# ----------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class ConnectStarted:
    """The shell is about to open a connection (to the broker it chose)."""


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """The connection attempt ended before CONNACK (refused, unreachable, timed out)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class MqttConnected:
    """CONNACK received."""


@dataclass(frozen=True, slots=True)
class MqttDisconnected:
    """The MQTT connection is gone (lost, or closed after our :class:`Disconnect`)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class StateReceived:
    """A message on ``spBv1.0/STATE/<host_id>``."""

    host_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """An NCMD (``device_id`` None) or DCMD addressed to this node."""

    device_id: str | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class DataConfirmed:
    """The broker routed our DATA with this ``seq`` (and, in order, everything before it).

    ``seq=None``: everything published so far is confirmed (a later QoS 1 publish was acknowledged;
    the broker handles one client's packets in order).
    """

    seq: int | None = None
    #: the connection the confirmation belongs to (:attr:`Publish.connection`); a late one is ignored
    connection: int | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """One publish interval has passed: publish the batch, pace the backlog, run deferred rebirths."""


@dataclass(frozen=True, slots=True)
class HistoryFetched:
    """The answer to :class:`FetchHistory`: buffered values in source-time order."""

    updates: list[MetricUpdate]
    exhausted: bool


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Stop: flush, publish NDEATH if born, disconnect."""


Event = (ConnectStarted | ConnectFailed | MqttConnected | MqttDisconnected | StateReceived | CommandReceived
         | DataConfirmed | Tick | HistoryFetched | Shutdown | DeviceOnline | DeviceOffline | TemplatesDefined)


# ---------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class PersistBdSeq:
    """Make ``bd_seq`` durable before the CONNECT that carries it."""

    bd_seq: int


@dataclass(frozen=True, slots=True)
class Connect:
    """Open the MQTT connection with this Will (QoS 1, retain 0) and a clean session."""

    will_topic: str
    will_payload: bytes
    bd_seq: int
    will_qos: int = 1
    will_retain: bool = False


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Subscribe and wait for the SUBACK before the next action.

    ``required=False``: the delivery echo; if the broker refuses it, the shell confirms DATA when
    the write succeeds instead.
    """

    filters: tuple[str, ...]
    qos: int = 1
    required: bool = True


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    message_type: MessageType
    seq: int | None
    #: the connection it belongs to; the shell drops it if that connection is gone
    connection: int
    #: number of metric values it carries (for statistics)
    values: int = 0
    #: a QoS 1 publish whose acknowledgement confirms everything before it (send DataConfirmed(None))
    fence: bool = False


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the connection. ``publish_will``: MQTT 5 reason 0x04 (the spec's intentional disconnect)."""

    reason: str
    next_server: bool
    publish_will: bool
    #: connect again after this disconnect even though ``next_server`` is false (the ERROR path:
    #: same server, clean state); a disconnect with neither is the shutdown's last one
    reconnect: bool = False


@dataclass(frozen=True, slots=True)
class StoreForward:
    """Write these changes to the store-and-forward buffer (durable before the next Tick)."""

    updates: list[MetricUpdate]


@dataclass(frozen=True, slots=True)
class StoreDelete:
    """These buffered rows were delivered: forget them."""

    ids: list[int]


@dataclass(frozen=True, slots=True)
class FetchHistory:
    """Read up to ``limit`` buffered values after ``after=(ts, id)`` for these targets; answer HistoryFetched."""

    limit: int
    after: tuple[int, int] | None
    devices: frozenset[str | None]


@dataclass(frozen=True, slots=True)
class DeliverCommand:
    """NCMD/DCMD metrics other than ``Node Control/Rebirth``, for the command handler."""

    device_id: str | None
    metrics: list[Metric]


class CommandFault(StrEnum):
    """Why the session could not turn an NCMD/DCMD into metrics for the command handler."""

    #: not a Sparkplug B payload, or a metric in it breaks the payload rules (no name nor alias,
    #: a datatype other than the birth's, bad UTF-8)
    MALFORMED = "malformed"
    #: a DCMD for a device this node never declared
    UNKNOWN_DEVICE = "unknown_device"
    #: an alias this node's births never gave (tck-id-payloads-alias-data-cmd-requirement)
    UNKNOWN_ALIAS = "unknown_alias"
    #: a metric name this node's births never declared
    UNKNOWN_METRIC = "unknown_metric"


@dataclass(frozen=True, slots=True)
class RejectedCommand:
    """An NCMD/DCMD the session could not decode: counted in ``bad_commands`` and handed on as is.

    The session cannot answer a command, but whoever executes commands must audit the refusal
    and answer the requester (a denied command is never silent). The
    raw bytes go along so that side can still read a command id from the envelope. Emitted only
    with :attr:`edge_node.session.SessionSettings.report_rejected_commands`, so a shell written
    before this action existed never sees it.
    """

    topic: str
    device_id: str | None
    payload: bytes
    fault: CommandFault
    error: str


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """A handler of the session failed (a birth that does not encode, a bug of ours): the session
    is in ERROR. The shell logs it; the :class:`Disconnect` that follows when connected (after an
    NDEATH if the session was born) ends the connection, and the next one starts from a clean
    state. Why an action and not an exception: an exception would end whichever task fed the
    event (the reader, the connection loop) and leave the session half way through a transition."""

    #: the event type whose handler failed
    event: str
    #: the state the session was in
    state: str
    #: the error, with its type (e.g. ``BirthEncodeError: NBIRTH cannot be encoded: 'Line/Speed' ...``)
    error: str


Action = (PersistBdSeq | Connect | Subscribe | Publish | Disconnect | StoreForward | StoreDelete | FetchHistory
          | DeliverCommand | RejectedCommand | SessionFailed)
