"""Resolving a shift key (``2024-01-17/early``) against the plant's shift calendar."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mes_adapter.oee.shifts import ShiftWindow
from mes_adapter.service_api import ServiceApi

from .errors import ApiError


def shift_window(svc: ServiceApi, key: str) -> ShiftWindow:
    """The shift occurrence named ``<local date>/<shift name>``; 422 if malformed, 404 if not in the calendar."""
    day_text, sep, name = key.partition("/")
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        day = None
    if not sep or not name or day is None:
        raise ApiError(422, "bad_shift_key", f"shift {key!r} is not <YYYY-MM-DD>/<shift name>")
    calendar = svc.shift_calendar()
    zone = ZoneInfo(calendar.timezone)
    try:
        start = datetime.combine(day, time(0), tzinfo=zone)
        from_ms = int(start.timestamp() * 1000)
        to_ms = int((start + timedelta(days=2)).timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        raise ApiError(422, "bad_shift_key", f"shift date {day_text!r} is out of range") from None
    for window in calendar.shifts_between(from_ms, to_ms):
        if window.key == key:
            return window
    names = sorted({s.name for s in calendar.shifts})
    raise ApiError(404, "unknown_shift", f"no shift {name!r} on {day_text} in the calendar (shifts: {names})")
