"""Shift calendar: shifts and planned downtime in plant local time, turned into UTC intervals.

Shifts and daily breaks are written in plant local time (``06:00``–``14:00``) because that is how
plants plan; computations run in UTC milliseconds, so each local day is converted with the plant's
IANA time zone and DST days come out 23 or 25 hours long instead of shifting every shift by an hour.
A shift or break whose end is not after its start crosses midnight and ends the next day.
Absolute planned downtime (maintenance, planned changeovers) is given in UTC, optionally per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mes_adapter.oee.compute import Interval, merge

_ALL_DAYS = frozenset(range(7))


class ShiftDefinition(BaseModel):
    """A recurring shift, e.g. ``early`` 06:00–14:00 Monday to Friday (days: 0 = Monday)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    start: time
    end: time
    days: frozenset[int] = _ALL_DAYS

    @field_validator("days")
    @classmethod
    def _weekdays(cls, value: frozenset[int]) -> frozenset[int]:
        if not value or not value <= _ALL_DAYS:
            raise ValueError("days must be a non-empty set of weekdays 0 (Monday) .. 6 (Sunday)")
        return value


class PlannedBreak(BaseModel):
    """A recurring planned stop in local time (break, daily sanitation), on the given weekdays."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    start: time
    end: time
    days: frozenset[int] = _ALL_DAYS


class PlannedDowntime(BaseModel):
    """A one-off planned stop in UTC ms (planned maintenance, planned changeover); all lines if None."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    start_ms: int
    end_ms: int
    line: str | None = None


@dataclass(frozen=True, slots=True)
class ShiftWindow:
    """One occurrence of a shift: its name, the local date it starts on, and its UTC interval."""

    name: str
    day: date
    interval: Interval

    @property
    def key(self) -> str:
        """Stable id for APIs and topics: ``2024-01-17/early``."""
        return f"{self.day.isoformat()}/{self.name}"


class ShiftCalendar(BaseModel):
    """The plant's shift plan and planned downtime."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = "UTC"
    shifts: list[ShiftDefinition] = Field(default_factory=list)
    breaks: list[PlannedBreak] = Field(default_factory=list)
    planned_downtime: list[PlannedDowntime] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def _local_days(self, from_ms: int, to_ms: int) -> list[date]:
        zone = ZoneInfo(self.timezone)
        first = datetime.fromtimestamp(from_ms / 1000, tz=zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(to_ms / 1000, tz=zone).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def _occurrence(self, day: date, start: time, end: time) -> Interval:
        zone = ZoneInfo(self.timezone)
        begin = datetime.combine(day, start, tzinfo=zone)
        finish = datetime.combine(day + timedelta(days=1) if end <= start else day, end, tzinfo=zone)
        return Interval(_ms(begin), _ms(finish))

    def shifts_between(self, from_ms: int, to_ms: int) -> list[ShiftWindow]:
        """Shift occurrences overlapping ``[from_ms, to_ms)``, by start time (unclipped)."""
        out = []
        for day in self._local_days(from_ms, to_ms):
            for shift in self.shifts:
                if day.weekday() not in shift.days:
                    continue
                iv = self._occurrence(day, shift.start, shift.end)
                if iv.start_ms < to_ms and iv.end_ms > from_ms:
                    out.append(ShiftWindow(shift.name, day, iv))
        return sorted(out, key=lambda w: (w.interval.start_ms, w.name))

    def shift_at(self, ts_ms: int) -> ShiftWindow | None:
        """The shift running at ``ts_ms`` (the first by start time if shifts overlap)."""
        for window in self.shifts_between(ts_ms, ts_ms + 1):
            if window.interval.start_ms <= ts_ms < window.interval.end_ms:
                return window
        return None

    def planned_downtime_between(self, from_ms: int, to_ms: int,
                                 line: str | None = None) -> list[Interval]:
        """Planned downtime clipped to ``[from_ms, to_ms)``, merged, for one line (or all-lines only)."""
        window = Interval(from_ms, to_ms)
        found: list[Interval] = []
        for day in self._local_days(from_ms, to_ms):
            for brk in self.breaks:
                if day.weekday() in brk.days:
                    found.append(self._occurrence(day, brk.start, brk.end))
        for item in self.planned_downtime:
            if item.line is None or item.line == line:
                found.append(Interval(item.start_ms, item.end_ms))
        return merge(iv for iv in (f.clip(window) for f in found) if iv is not None)


def _ms(dt: datetime) -> int:
    return int(dt.astimezone(UTC).timestamp() * 1000)
