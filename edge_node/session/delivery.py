"""The delivery window (rule 10 of :mod:`edge_node.session.core`): DATA published but not yet confirmed.

A published NDATA/DDATA stays here until the broker is known to have routed it
(:class:`edge_node.session_events.DataConfirmed`). Live values and stored rows are kept apart
because they end differently: live values that were never confirmed go back to the store when the
connection drops, stored rows are deleted from the store only once confirmed. Kept out of the
session so the counting (values in flight, rows in flight) has one place and one test surface.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..model import MetricUpdate

__all__ = ["DeliveryWindow"]


@dataclass(slots=True)
class _InFlight:
    seq: int
    updates: list[MetricUpdate]  # live values: back to the store if never confirmed
    row_ids: list[int]  # stored rows: deleted once confirmed


class DeliveryWindow:
    """In-flight DATA messages of the current connection, oldest first."""

    __slots__ = ("_flights", "_rows", "values")

    def __init__(self) -> None:
        self._flights: deque[_InFlight] = deque()
        self._rows: set[int] = set()
        #: values (live and stored) in flight
        self.values = 0

    @property
    def rows(self) -> int:
        """Stored rows in flight (bounds how much backlog the next Tick may fetch)."""
        return len(self._rows)

    def holds_row(self, row_id: int) -> bool:
        return row_id in self._rows

    def live_ids(self) -> set[int]:
        """Identities of the live values in flight (the session's failure path must not store them twice)."""
        return {id(u) for flight in self._flights for u in flight.updates}

    def add_live(self, seq: int, updates: list[MetricUpdate]) -> None:
        self._flights.append(_InFlight(seq, updates, []))
        self.values += len(updates)

    def add_stored(self, seq: int, updates: list[MetricUpdate]) -> None:
        row_ids = [u.seq_id for u in updates if u.seq_id is not None]
        self._flights.append(_InFlight(seq, [], row_ids))
        self._rows.update(row_ids)
        self.values += len(updates)

    def confirm(self, seq: int | None) -> tuple[int, list[int]]:
        """Confirm the message with this ``seq`` and every one before it (``None``: all of them).

        Returns (values confirmed, stored rows now delivered). An unknown ``seq`` confirms nothing.
        """
        flights = self._flights
        if not flights:
            return 0, []
        if seq is None:
            count = len(flights)
        else:
            count = next((i + 1 for i, flight in enumerate(flights) if flight.seq == seq), 0)
            if count == 0:
                return 0, []
        rows: list[int] = []
        confirmed = 0
        for _ in range(count):
            flight = flights.popleft()
            confirmed += len(flight.updates) + len(flight.row_ids)
            if flight.row_ids:
                rows += flight.row_ids
                self._rows.difference_update(flight.row_ids)
        self.values -= confirmed
        return confirmed, rows

    def drop(self) -> tuple[list[MetricUpdate], bool]:
        """The connection is gone: empty the window. Returns (the live values to store again,
        whether stored rows were in flight, i.e. the backlog must be read again)."""
        live = [u for flight in self._flights for u in flight.updates]
        had_rows = bool(self._rows)
        self._flights.clear()
        self._rows.clear()
        self.values = 0
        return live, had_rows
