"""Errors of the simulator: all are the caller's mistake (bad command, unknown tag, bad fault)."""

from __future__ import annotations


class SimulatorError(ValueError):
    """A request the simulated line refuses; the OPC UA shell answers it with a Bad status code.

    ``status_name`` names the asyncua StatusCode the shell returns to an OPC UA caller.
    """

    status_name = "BadInvalidArgument"


class UnknownTagError(SimulatorError):
    status_name = "BadNodeIdUnknown"


class InvalidStateError(SimulatorError):
    status_name = "BadInvalidState"


class NotWritableError(SimulatorError):
    status_name = "BadNotWritable"
