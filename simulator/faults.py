"""Fault injection on tag values: what a failing sensor or PLC link looks like to an OPC UA client.

A fault rewrites the published sample of one tag for a time window. Kinds, and what the client sees:

=================  ==========================================================================
bad_status         value null, StatusCode BadSensorFailure (or the code given)
comm_error         value null, StatusCode BadCommunicationError
uncertain          the last usable value, StatusCode UncertainLastUsableValue (or the code given)
spike              the spike value (default -9999), Good, fresh source timestamp
freeze             nothing changes any more (value, status and source timestamp stay put)
future_timestamp   the real value with a SourceTimestamp ``value`` seconds ahead (default 3600)
past_timestamp     the real value with a SourceTimestamp ``value`` seconds behind (default 2 days)
=================  ==========================================================================

A fault lasts ``duration_s`` from injection, and at least one published tick (so a spike with
duration 0 is seen once). When several faults cover one tag the latest injected one wins.
This module does no I/O and imports no OPC UA library: status codes are plain integers.
Alarms are the other fault surface: OPC UA conditions raised on demand (Jam, DoorOpen, EStop) or by a
process disturbance (the temperature limit alarm), see :mod:`simulator.alarms`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from simulator.errors import SimulatorError

GOOD = 0x00000000
UNCERTAIN_LAST_USABLE_VALUE = 0x40900000
BAD_COMMUNICATION_ERROR = 0x80050000
BAD_SENSOR_FAILURE = 0x808C0000


class FaultKind(StrEnum):
    BAD_STATUS = "bad_status"
    COMM_ERROR = "comm_error"
    UNCERTAIN = "uncertain"
    SPIKE = "spike"
    FREEZE = "freeze"
    FUTURE_TIMESTAMP = "future_timestamp"
    PAST_TIMESTAMP = "past_timestamp"

    @classmethod
    def parse(cls, text: str) -> FaultKind:
        """Accept ``bad-status``, ``BadStatus``-ish spellings from CLIs and OPC UA callers."""
        key = text.strip().lower().replace("-", "_")
        aliases = {"badstatus": "bad_status", "bad": "bad_status", "commerror": "comm_error",
                   "futuretimestamp": "future_timestamp", "future": "future_timestamp",
                   "pasttimestamp": "past_timestamp", "past": "past_timestamp"}
        key = aliases.get(key, key)
        try:
            return cls(key)
        except ValueError:
            valid = ", ".join(kind.value for kind in cls)
            raise SimulatorError(f"unknown fault kind {text!r}; use one of: {valid}") from None


DEFAULT_STATUS: dict[FaultKind, int] = {
    FaultKind.BAD_STATUS: BAD_SENSOR_FAILURE,
    FaultKind.COMM_ERROR: BAD_COMMUNICATION_ERROR,
    FaultKind.UNCERTAIN: UNCERTAIN_LAST_USABLE_VALUE,
}
DEFAULT_SPIKE = -9999.0
DEFAULT_FUTURE_S = 3600.0
DEFAULT_PAST_S = 172_800.0


@dataclass(frozen=True)
class Sample:
    """A tag value as published: value, OPC UA StatusCode (int) and SourceTimestamp (epoch s)."""

    value: Any
    status: int
    source_ts: float


@dataclass
class Fault:
    id: int
    kind: FaultKind
    tag: str
    start: float
    until: float
    value: float | None = None
    status: int | None = None
    applied: bool = False

    def active(self, now: float) -> bool:
        return now < self.until or not self.applied


_fault_ids = itertools.count(1)


def make_fault(kind: FaultKind, tag: str, now: float, duration_s: float, value: float | None,
               status: int | None) -> Fault:
    if duration_s < 0:
        raise SimulatorError(f"fault duration must be >= 0 s, got {duration_s}")
    if status is not None and kind not in DEFAULT_STATUS:
        raise SimulatorError("a status code only applies to bad_status, comm_error or uncertain")
    if status is not None and not 0 <= status <= 0xFFFFFFFF:
        raise SimulatorError(f"status code {status} is not a UInt32")
    return Fault(next(_fault_ids), kind, tag, now, now + duration_s, value, status)


def apply_fault(fault: Fault, raw: Sample, previous: Sample | None, now: float) -> Sample:
    """What to publish for ``raw`` while ``fault`` is active, given what was published last."""
    kind = fault.kind
    if kind is FaultKind.FREEZE:
        return previous if previous is not None else raw
    if kind is FaultKind.SPIKE:
        spike = DEFAULT_SPIKE if fault.value is None else fault.value
        if previous is not None and previous.value == spike and previous.status == GOOD:
            return previous
        return Sample(spike, GOOD, now)
    if kind is FaultKind.FUTURE_TIMESTAMP:
        ahead = DEFAULT_FUTURE_S if fault.value is None else fault.value
        if previous is not None and previous.value == raw.value and previous.source_ts > now:
            return previous
        return Sample(raw.value, raw.status, now + ahead)
    if kind is FaultKind.PAST_TIMESTAMP:
        behind = DEFAULT_PAST_S if fault.value is None else fault.value
        if previous is not None and previous.value == raw.value and previous.source_ts < now - behind / 2:
            return previous
        return Sample(raw.value, raw.status, now - behind)
    status = fault.status if fault.status is not None else DEFAULT_STATUS[kind]
    if previous is not None and previous.status == status:
        return previous  # the source noticed once; no new notification per tick
    if kind is FaultKind.UNCERTAIN:
        last_usable = previous.value if previous is not None else raw.value
        return Sample(last_usable, status, now)
    return Sample(None, status, now)
