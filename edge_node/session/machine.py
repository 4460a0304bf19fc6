"""The edge session's state machine: which events each state accepts, and where each trigger leads.

Both are data (in the style of h11's ``_state.py``): :data:`ACCEPTS` says which event types a state
takes at all (anything else is our caller's misuse, a :class:`LocalProtocolError`), and
:data:`TRANSITIONS` maps (state, trigger) to the next state. A handler in
:mod:`edge_node.session.core` never assigns a state: it names the trigger that happened (the
primary host came online, the connection was lost, ...) and :class:`StateMachine` looks the next
state up. A trigger the table has no row for is a bug in the session, not a peer's fault, so it
raises. Why triggers and not event types: one event can lead to different states (a STATE message
births us, or sends us away), and the table should say so rather than the handler's ``if``.
"""

from __future__ import annotations

from enum import Enum

from uns.sparkplug.errors import LocalProtocolError

from ..model import DeviceOffline, DeviceOnline, TemplatesDefined
from ..session_events import (
    CommandReceived,
    ConnectFailed,
    ConnectStarted,
    DataConfirmed,
    HistoryFetched,
    MqttConnected,
    MqttDisconnected,
    Shutdown,
    StateReceived,
    Tick,
)

__all__ = ["ACCEPTS", "TRANSITIONS", "State", "StateMachine", "Trigger"]


class State(Enum):
    DISCONNECTED = "DISCONNECTED"  # no MQTT session; changes go to the store
    CONNECTING = "CONNECTING"  # CONNECT (with the Will) under way
    WAITING_HOST = "WAITING_HOST"  # connected and subscribed; primary host not online yet
    ONLINE = "ONLINE"  # born: DATA flows
    DISCONNECTING = "DISCONNECTING"  # we asked the shell to disconnect (host offline, next server)
    #: a handler failed (a birth that does not encode, a bug): nothing is published until the shell
    #: has dropped the connection and connects again from a clean state
    ERROR = "ERROR"
    CLOSED = "CLOSED"  # shut down; only the tail of the connection is accepted


class Trigger(Enum):
    """What happened, as far as the state is concerned."""

    CONNECT_STARTED = "connect started"
    CONNECT_FAILED = "connect failed"
    CONNACK_BIRTH = "CONNACK, no primary host to wait for"
    CONNACK_WAIT_HOST = "CONNACK, waiting for the primary host"
    HOST_ONLINE = "primary host online"
    LEAVE_SERVER = "leave this server (host offline, Next Server)"
    LOST = "connection gone"
    SHUTDOWN = "shutdown"
    FAILED = "handler failed"


_S = State
_T = Trigger

#: events every state takes (values and devices keep moving whatever the connection does)
_ANY_TIME = frozenset({Tick, DeviceOnline, DeviceOffline, HistoryFetched, DataConfirmed, TemplatesDefined})

#: state -> the event types it accepts; any other is a :class:`LocalProtocolError` of the caller
ACCEPTS: dict[State, frozenset[type]] = {
    _S.DISCONNECTED: _ANY_TIME | {ConnectStarted, Shutdown},
    _S.CONNECTING: _ANY_TIME | {ConnectFailed, MqttConnected, MqttDisconnected, Shutdown},
    _S.WAITING_HOST: _ANY_TIME | {StateReceived, CommandReceived, MqttDisconnected, Shutdown},
    _S.ONLINE: _ANY_TIME | {StateReceived, CommandReceived, MqttDisconnected, Shutdown},
    _S.DISCONNECTING: _ANY_TIME | {StateReceived, CommandReceived, MqttDisconnected, Shutdown},
    _S.ERROR: _ANY_TIME | {StateReceived, CommandReceived, ConnectStarted, ConnectFailed, MqttConnected,
                           MqttDisconnected, Shutdown},
    _S.CLOSED: frozenset({DataConfirmed, MqttDisconnected, ConnectFailed, Tick, HistoryFetched, Shutdown,
                          StateReceived, CommandReceived}),
}

_FAILS = {_T.FAILED: _S.ERROR, _T.SHUTDOWN: _S.CLOSED}

#: (state, trigger) -> next state. A trigger missing from a state's row is a bug of the session.
TRANSITIONS: dict[State, dict[Trigger, State]] = {
    _S.DISCONNECTED: {_T.CONNECT_STARTED: _S.CONNECTING, **_FAILS},
    _S.CONNECTING: {_T.CONNECT_FAILED: _S.DISCONNECTED, _T.CONNACK_BIRTH: _S.ONLINE,
                    _T.CONNACK_WAIT_HOST: _S.WAITING_HOST, _T.LOST: _S.DISCONNECTED, **_FAILS},
    _S.WAITING_HOST: {_T.HOST_ONLINE: _S.ONLINE, _T.LEAVE_SERVER: _S.DISCONNECTING, _T.LOST: _S.DISCONNECTED,
                      **_FAILS},
    _S.ONLINE: {_T.LEAVE_SERVER: _S.DISCONNECTING, _T.LOST: _S.DISCONNECTED, **_FAILS},
    _S.DISCONNECTING: {_T.LOST: _S.DISCONNECTED, **_FAILS},
    _S.ERROR: {_T.CONNECT_STARTED: _S.CONNECTING, _T.CONNECT_FAILED: _S.DISCONNECTED, _T.LOST: _S.DISCONNECTED,
               _T.SHUTDOWN: _S.CLOSED},
    _S.CLOSED: {},
}


class StateMachine:
    """The current state, moved only through :data:`TRANSITIONS`."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.DISCONNECTED

    def check(self, event_type: type) -> None:
        """Raise :class:`LocalProtocolError` if the current state does not take this event at all."""
        if event_type not in ACCEPTS[self.state]:
            raise LocalProtocolError(f"{event_type.__name__} is not allowed in state {self.state.value}")

    def fire(self, trigger: Trigger) -> State:
        """Move to the state the table gives for this trigger; returns it."""
        target = TRANSITIONS[self.state].get(trigger)
        if target is None:  # pragma: no cover - a bug in the session, never a peer's doing
            raise AssertionError(f"no transition from {self.state.value} on {trigger.value}")
        self.state = target
        return target
