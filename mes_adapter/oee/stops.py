"""Stop events from a machine-state timeline: debounce and the micro-stop cutoff. Pure, no I/O.

Why one function for both OEE and the loss buckets: availability (``compute_oee``) and the loss
buckets of :mod:`mes_adapter.downtime` must count the same stops, or the buckets would not add up to
the availability loss a user sees next to them.

* A stop is a contiguous stretch that is neither ``RUNNING`` nor planned downtime (``STOPPED``,
  ``UNKNOWN``, no state known).
* **Debounce**: a state tag that flaps (stop, run for a moment, stop again) is one stop. Two stops
  separated by a ``RUNNING`` stretch shorter than ``debounce_ms`` merge into one event; its lost
  time (``down_ms``) is the stopped time only, the short runs in between stay production time.
* **Micro-stop**: an event whose lost time is at most ``micro_stop_ms`` is a micro-stop, counted as
  performance (speed) loss, not availability (``None``: every stop is availability loss, ISO strict).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mes_adapter.oee.compute import Interval, MachineState, overlap_ms

_DOWN = (MachineState.STOPPED, MachineState.UNKNOWN)


@dataclass(frozen=True, slots=True)
class StopEvent:
    """One (debounced) stop: from its first stopped moment to its last, and the time it lost."""

    start_ms: int
    end_ms: int
    #: stopped time inside the event (the short runs merged by debounce are not lost time)
    down_ms: int
    #: the stopped pieces, for clipping the event to a window or planned downtime
    pieces: tuple[Interval, ...]
    micro: bool
    #: the event was still going at the end of the timeline it was cut from
    open: bool = False


def detect_stops(pieces: Sequence[tuple[Interval, MachineState]], *, debounce_ms: int = 0,
                 micro_stop_ms: int | None = None) -> list[StopEvent]:
    """Stop events of a timeline cut into ``(interval, state)`` pieces (see ``state_intervals``)."""
    groups: list[list[Interval]] = []
    last_end: int | None = None
    for iv, state in pieces:
        if state in _DOWN:
            if groups and last_end is not None and iv.start_ms - last_end < max(debounce_ms, 1) \
                    and _only_running_between(pieces, last_end, iv.start_ms):
                groups[-1].append(iv)
            else:
                groups.append([iv])
            last_end = iv.end_ms
        elif state is MachineState.PLANNED_DOWNTIME:
            last_end = None  # planned downtime ends a flap: what follows is a new stop
    end_of_timeline = pieces[-1][0].end_ms if pieces else 0
    out = []
    for group in groups:
        down = sum(iv.duration_ms for iv in group)
        out.append(StopEvent(
            start_ms=group[0].start_ms, end_ms=group[-1].end_ms, down_ms=down, pieces=tuple(group),
            micro=micro_stop_ms is not None and down <= micro_stop_ms,
            open=group[-1].end_ms == end_of_timeline))
    return out


def _only_running_between(pieces: Sequence[tuple[Interval, MachineState]], start: int, end: int) -> bool:
    return all(state is MachineState.RUNNING for iv, state in pieces
               if iv.start_ms < end and iv.end_ms > start)


def lost_in(event: StopEvent, window: Interval, planned: Sequence[Interval]) -> int:
    """The event's lost time inside ``window`` and outside planned downtime (sorted, disjoint)."""
    total = 0
    for piece in event.pieces:
        part = piece.clip(window)
        if part is not None:
            total += part.duration_ms - overlap_ms(part, planned)
    return total
