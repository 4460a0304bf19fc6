"""The Sparkplug B 3.0 edge node session: a state machine with no I/O, built like h11.

* :mod:`edge_node.session.core`: :class:`EdgeSession`, the rules (its docstring lists them with
  their tck-ids) and the handlers that apply them;
* :mod:`edge_node.session.machine`: the states and the transition table, as data;
* :mod:`edge_node.session.messages`: births, DATA and deaths as pure functions of the model;
* :mod:`edge_node.session.delivery`: the in-flight window (published, not yet confirmed).

The events and actions are :mod:`edge_node.session_events`; this package re-exports them so the
shell and the tests import everything from ``edge_node.session``.
"""

from uns.sparkplug.errors import LocalProtocolError

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
from .core import EdgeSession, SessionCounters, SessionSettings
from .machine import State
from .messages import BirthEncodeError

# DeviceOffline .. MetricUpdate, LocalProtocolError: importable from here, as from the module this package replaced
__all__ = [
    "DeviceOffline", "DeviceOnline", "LocalProtocolError", "MetricDefinition", "MetricUpdate", "TemplatesDefined",
    "Action", "BirthEncodeError", "CommandFault", "CommandReceived", "Connect", "ConnectFailed", "ConnectStarted",
    "DataConfirmed", "DeliverCommand", "Disconnect", "EdgeSession", "Event", "FetchHistory", "HistoryFetched",
    "MqttConnected", "MqttDisconnected", "PersistBdSeq", "Publish", "RejectedCommand", "SessionCounters",
    "SessionFailed", "SessionSettings", "Shutdown", "State", "StateReceived", "StoreDelete", "StoreForward",
    "Subscribe", "Tick",
]
