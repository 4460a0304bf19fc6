"""Which journaled alarm opens an exception: rule matching, debounce and the per-line rate cap. Pure.

An exception opens when a condition *becomes* active (or moves to a severity a rule covers) with a
live (not stale) state: the journal row whose previous row of the same condition did not already
match the rule. Debounce: a chattering alarm (active, inactive, active...) opens at most one
exception per rule and condition within ``debounce_s``. Flood protection: at most
``max_exceptions_per_minute`` per line in any sliding minute; the rest are counted as suppressed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from mes_adapter.config.mes import AlarmRule, AlarmsConfig

from .store import AlarmEvent


def matches(rule: AlarmRule, event: AlarmEvent | None) -> bool:
    return (event is not None and event.active and not event.stale and event.condition == rule.condition
            and event.severity >= rule.min_severity and (rule.line is None or rule.line == event.line)
            and (rule.cell is None or rule.cell == event.cell))


@dataclass(frozen=True, slots=True)
class Trigger:
    """Rule ``index`` fired on ``event``."""

    index: int
    rule: AlarmRule
    event: AlarmEvent


class RuleBook:
    """Stateful matcher over journal rows in order (see module doc)."""

    def __init__(self, config: AlarmsConfig) -> None:
        self._config = config
        self._debounce_ms = int(config.debounce_s * 1000)
        self._last_fired: dict[tuple[int, str, str | None, str], int] = {}
        self._per_line: dict[str, deque[int]] = {}
        self.suppressed_debounce = 0
        self.suppressed_flood = 0

    def evaluate(self, event: AlarmEvent, previous: AlarmEvent | None) -> list[Trigger]:
        fired = []
        for index, rule in enumerate(self._config.rules):
            if not matches(rule, event) or matches(rule, previous):
                continue
            key = (index, event.line, event.cell, event.condition)
            last = self._last_fired.get(key)
            if last is not None and event.source_ts_ms - last < self._debounce_ms:
                self.suppressed_debounce += 1
                continue
            window = self._per_line.setdefault(event.line, deque())
            while window and event.source_ts_ms - window[0] >= 60_000:
                window.popleft()
            if len(window) >= self._config.max_exceptions_per_minute:
                self.suppressed_flood += 1
                continue
            window.append(event.source_ts_ms)
            self._last_fired[key] = event.source_ts_ms
            fired.append(Trigger(index, rule, event))
        return fired
