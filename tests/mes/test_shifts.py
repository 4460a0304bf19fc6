"""Shift calendar: local shifts to UTC across DST and midnight, planned downtime."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from mes_adapter.oee.compute import Interval
from mes_adapter.oee.shifts import PlannedBreak, PlannedDowntime, ShiftCalendar, ShiftDefinition


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def calendar(tz: str = "Europe/Berlin") -> ShiftCalendar:
    return ShiftCalendar(
        timezone=tz,
        shifts=[ShiftDefinition(name="early", start=time(6), end=time(14)),
                ShiftDefinition(name="late", start=time(14), end=time(22)),
                ShiftDefinition(name="night", start=time(22), end=time(6))],
        breaks=[PlannedBreak(name="lunch", start=time(9), end=time(9, 30))],
        planned_downtime=[PlannedDowntime(name="pm", start_ms=ms(2024, 1, 17, 12), end_ms=ms(2024, 1, 17, 13),
                                          line="a/b/c/l1")])


def test_shift_windows_in_winter_and_across_midnight() -> None:
    cal = calendar()
    shifts = cal.shifts_between(ms(2024, 1, 17, 5), ms(2024, 1, 17, 22))  # Berlin is UTC+1
    # the night of the 16th ends exactly at 05:00 UTC: touching is not overlapping
    assert [(s.key, s.interval.start_ms) for s in shifts] == [
        ("2024-01-17/early", ms(2024, 1, 17, 5)),
        ("2024-01-17/late", ms(2024, 1, 17, 13)), ("2024-01-17/night", ms(2024, 1, 17, 21))]
    night = cal.shift_at(ms(2024, 1, 18, 3))
    assert night is not None and night.key == "2024-01-17/night"
    assert night.interval == Interval(ms(2024, 1, 17, 21), ms(2024, 1, 18, 5))


def test_dst_night_is_one_hour_shorter() -> None:
    night = calendar().shift_at(ms(2024, 3, 31, 2))  # clocks jump 02:00 → 03:00 local
    assert night is not None and night.key == "2024-03-30/night"
    assert night.interval.duration_ms == 7 * 3_600_000
    assert night.interval.end_ms == ms(2024, 3, 31, 4)  # 06:00 CEST


def test_planned_downtime_per_line_and_clipped() -> None:
    cal = calendar()
    day = (ms(2024, 1, 17, 5), ms(2024, 1, 17, 13))
    assert cal.planned_downtime_between(*day, line="a/b/c/l1") == [
        Interval(ms(2024, 1, 17, 8), ms(2024, 1, 17, 8, 30)), Interval(ms(2024, 1, 17, 12), day[1])]
    assert cal.planned_downtime_between(*day, line="a/b/c/l2") == [
        Interval(ms(2024, 1, 17, 8), ms(2024, 1, 17, 8, 30))]


def test_bad_calendar() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        ShiftCalendar(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="weekdays"):
        ShiftDefinition(name="x", start=time(6), end=time(14), days=frozenset({7}))
