"""Errors of the simulator: all are the caller's mistake (bad command, unknown tag, bad fault)."""

from __future__ import annotations


class SimulatorError(ValueError):
    """A request the simulated line refuses; the OPC UA shell answers it with a Bad status code.

    ``status_name`` names the asyncua StatusCode the shell returns to an OPC UA caller.
    """

    status_name = "BadInvalidArgument"


class UnknownTag(SimulatorError):
    status_name = "BadNodeIdUnknown"


class InvalidState(SimulatorError):
    status_name = "BadInvalidState"


class NotWritable(SimulatorError):
    status_name = "BadNotWritable"
