"""The delivery window (rule 10 of :mod:`edge_node.session.core`): DATA published but not yet confirmed.

A published NDATA/DDATA stays here until the broker is known to have routed it
(:class:`edge_node.session_events.DataConfirmed`). Live values and stored rows are kept apart
because they end differently: live values that were never confirmed go back to the store when the
connection drops, stored rows are deleted from the store only once confirmed. Kept out of the
session so the counting (values in flight, rows in flight) has one place and one test surface.

The window also remembers, for ``keep_ms``, what was confirmed (:meth:`recent`): the broker routed
it, but a primary host that dies takes with it what it had received and not yet stored (its socket
buffer, its write queues). When the host's death is seen, the session stores these again so they
reach the host's next run as historical values; the host keeps one of each (rule 15 of
:mod:`edge_node.session.core`).
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
    replayed: list[MetricUpdate]  # the stored rows' values, remembered once confirmed (keep_ms > 0)


class DeliveryWindow:
    """In-flight DATA messages of the current connection, oldest first."""

    __slots__ = ("_flights", "_recent", "_rows", "keep_ms", "values")

    def __init__(self, keep_ms: int = 0) -> None:
        self._flights: deque[_InFlight] = deque()
        self._rows: set[int] = set()
        #: values (live and stored) in flight
        self.values = 0
        #: how long confirmed values are remembered (0: not at all)
        self.keep_ms = keep_ms
        #: (confirmed at, values) of what was confirmed within the last ``keep_ms``, oldest first
        self._recent: deque[tuple[int, list[MetricUpdate]]] = deque()

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
        self._flights.append(_InFlight(seq, updates, [], []))
        self.values += len(updates)

    def add_stored(self, seq: int, updates: list[MetricUpdate]) -> None:
        row_ids = [u.seq_id for u in updates if u.seq_id is not None]
        self._flights.append(_InFlight(seq, [], row_ids, updates if self.keep_ms else []))
        self._rows.update(row_ids)
        self.values += len(updates)

    def confirm(self, seq: int | None, now_ms: int = 0) -> tuple[int, list[int]]:
        """Confirm the message with this ``seq`` and every one before it (``None``: all of them).

        Returns (values confirmed, stored rows now delivered). An unknown ``seq`` confirms nothing.
        With ``keep_ms``, the confirmed values are remembered as of ``now_ms`` (see :meth:`recent`).
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
        keep = self.keep_ms > 0
        for _ in range(count):
            flight = flights.popleft()
            confirmed += len(flight.updates) + len(flight.row_ids)
            if flight.row_ids:
                rows += flight.row_ids
                self._rows.difference_update(flight.row_ids)
            if keep:
                sent = flight.updates + flight.replayed if flight.replayed else flight.updates
                if sent:
                    self._recent.append((now_ms, sent))
        self.values -= confirmed
        if keep:
            self._forget_before(now_ms - self.keep_ms)
        return confirmed, rows

    def recent(self, now_ms: int) -> list[MetricUpdate]:
        """Take what was confirmed within ``keep_ms`` before ``now_ms`` (the host died: the session
        stores it again), oldest first; forgets it."""
        self._forget_before(now_ms - self.keep_ms)
        out = [u for _, updates in self._recent for u in updates]
        self._recent.clear()
        return out

    def _forget_before(self, cutoff_ms: int) -> None:
        recent = self._recent
        while recent and recent[0][0] < cutoff_ms:
            recent.popleft()

    def drop(self) -> tuple[list[MetricUpdate], bool]:
        """The connection is gone: empty the window. Returns (the live values to store again,
        whether stored rows were in flight, i.e. the backlog must be read again)."""
        live = [u for flight in self._flights for u in flight.updates]
        had_rows = bool(self._rows)
        self._flights.clear()
        self._rows.clear()
        self.values = 0
        return live, had_rows
