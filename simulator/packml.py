"""PackML (ISA-TR88.00.02) unit state machine, as data.

Rules, stated once:

* State codes are the PackTags ``Status.StateCurrent`` numbers (0 Undefined ... 17 Complete);
  consumers must map by *name* across sources (OPC 30060 renumbers them), so both are published.
* Wait states (Idle, Held, Suspended, Stopped, Aborted, Complete, Execute) change only on a command.
* Acting states ("-ing") finish on their own after the configured acting time ("state complete",
  SC) and go to the state in :data:`STATE_COMPLETE`.
* A command that is not in :data:`TRANSITIONS` for the current state is refused with
  :class:`InvalidCommandError`; the caller's fault, never a crash of the line.

Only Execute produces parts.
"""

from __future__ import annotations

from enum import IntEnum

from simulator.errors import InvalidStateError


class State(IntEnum):
    UNDEFINED = 0
    CLEARING = 1
    STOPPED = 2
    STARTING = 3
    IDLE = 4
    SUSPENDED = 5
    EXECUTE = 6
    STOPPING = 7
    ABORTING = 8
    ABORTED = 9
    HOLDING = 10
    HELD = 11
    UNHOLDING = 12
    SUSPENDING = 13
    UNSUSPENDING = 14
    RESETTING = 15
    COMPLETING = 16
    COMPLETE = 17

    @property
    def label(self) -> str:
        """The PackML state name as plants write it: ``Execute``, ``Held``..."""
        return self.name.capitalize()


class Command(IntEnum):
    """PackTags ``Command.CntrlCmd`` numbers, plus ``Complete`` (the SC of a finished batch)."""

    RESET = 1
    START = 2
    STOP = 3
    HOLD = 4
    UNHOLD = 5
    SUSPEND = 6
    UNSUSPEND = 7
    ABORT = 8
    CLEAR = 9
    COMPLETE = 100


class InvalidCommandError(InvalidStateError):
    """A command the current state does not accept (the caller's mistake, reported as BadInvalidState)."""

    def __init__(self, command: Command, state: State) -> None:
        super().__init__(f"command {command.name.capitalize()} is not allowed in state {state.label}")
        self.command = command
        self.state = state


S = State
_STOPPABLE = (S.IDLE, S.STARTING, S.EXECUTE, S.HOLDING, S.HELD, S.UNHOLDING, S.SUSPENDING,
              S.SUSPENDED, S.UNSUSPENDING, S.COMPLETING, S.COMPLETE, S.RESETTING)
_ABORTABLE = (*_STOPPABLE, S.STOPPED, S.STOPPING, S.CLEARING)

TRANSITIONS: dict[tuple[State, Command], State] = {
    (S.IDLE, Command.START): S.STARTING,
    (S.STOPPED, Command.RESET): S.RESETTING,
    (S.COMPLETE, Command.RESET): S.RESETTING,
    (S.EXECUTE, Command.HOLD): S.HOLDING,
    (S.HELD, Command.UNHOLD): S.UNHOLDING,
    (S.EXECUTE, Command.SUSPEND): S.SUSPENDING,
    (S.SUSPENDED, Command.UNSUSPEND): S.UNSUSPENDING,
    (S.EXECUTE, Command.COMPLETE): S.COMPLETING,
    (S.HELD, Command.COMPLETE): S.COMPLETING,
    (S.SUSPENDED, Command.COMPLETE): S.COMPLETING,
    (S.ABORTED, Command.CLEAR): S.CLEARING,
    **{(state, Command.STOP): S.STOPPING for state in _STOPPABLE},
    **{(state, Command.ABORT): S.ABORTING for state in _ABORTABLE},
}

STATE_COMPLETE: dict[State, State] = {
    S.STARTING: S.EXECUTE,
    S.HOLDING: S.HELD,
    S.UNHOLDING: S.EXECUTE,
    S.SUSPENDING: S.SUSPENDED,
    S.UNSUSPENDING: S.EXECUTE,
    S.COMPLETING: S.COMPLETE,
    S.RESETTING: S.IDLE,
    S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED,
    S.CLEARING: S.STOPPED,
}


def next_state(state: State, command: Command) -> State:
    """The state a command leads to, or :class:`InvalidCommandError`."""
    try:
        return TRANSITIONS[(state, command)]
    except KeyError:
        raise InvalidCommandError(command, state) from None


def is_acting(state: State) -> bool:
    return state in STATE_COMPLETE
