"""A person's presence on a line, and labour time as its overlap with a batch. Pure, no I/O.

Labour time of a batch (or of one confirmation window of it) = the sum over the crew of the time
each person was on the line *while the batch ran* (its context segments, cut to the window). Two
people for ten minutes are twenty minutes of labour.

Holds and stops count as labour, on purpose: labour time is what the ERP costs the crew's
attendance at the operation by (the "labour" activity of an operation confirmation), and a crew
standing at a held or jammed line is still assigned to it, clearing the jam or waiting for QA;
the stop is already visible in the other figure, machine time (the running state only). Counting
only running time would book the cost of every stop to no order at all. A person who leaves the
line (a break, another line) ends their presence; that is the one way labour stops counting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mes_adapter.lines import line_key
from mes_adapter.oee.compute import Interval, merge, overlap_ms

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
#: an open presence (no end yet) lasts until it is closed
OPEN_END_MS = 2**62


class CrewPresence(BaseModel):
    """``person_id`` worked on ``line`` from ``start_ms`` to ``end_ms`` (None: still there)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line: str
    person_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    start_ms: int = Field(ge=0, le=2**62)
    end_ms: int | None = Field(None, ge=0, le=2**62)

    @field_validator("line")
    @classmethod
    def _line(cls, value: str) -> str:
        return line_key(value)

    @property
    def interval(self) -> Interval:
        """The presence as ``[start, end)``; open ones run to :data:`OPEN_END_MS`. Call only when
        ``end_ms`` is not before ``start_ms`` (the service refuses such an assertion first)."""
        return Interval(self.start_ms, OPEN_END_MS if self.end_ms is None else self.end_ms)

    def overlaps(self, other: CrewPresence) -> bool:
        return self.interval.clip(other.interval) is not None

    def describe(self) -> str:
        end = "open" if self.end_ms is None else str(self.end_ms)
        return f"{self.person_id} on {self.line} {self.start_ms}..{end}"


def labour_ms(crew: Iterable[CrewPresence], run_window: Sequence[Interval]) -> int:
    """Σ over ``crew`` of each presence's overlap with ``run_window`` (the batch's segments, cut to
    the confirmation window); overlapping pieces of the window are counted once."""
    parts = merge(run_window)
    return sum(overlap_ms(p.interval, parts) for p in crew)
