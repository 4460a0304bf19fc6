"""Alarm rules (debounce, per-line flood cap) and the journal file's schema versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mes_adapter.alarms import SCHEMA_VERSION, AlarmEvent, AlarmJournal
from mes_adapter.alarms.rules import RuleBook
from mes_adapter.alarms.store import MIGRATIONS
from mes_adapter.config.mes import AlarmsConfig
from uns.sqlite_schema import SchemaVersionError, migrate

LINE = "acme/plant1/packaging/line1"


def row(ts: int, *, active: bool = True, severity: int = 600, condition: str = "Jam", cell: str = "Filler",
        line: str = LINE, stale: bool = False, journal_id: int = 1) -> AlarmEvent:
    return AlarmEvent(id=journal_id, line=line, cell=cell, group_id="g", edge_node_id="e", device_id=cell,
                      condition=condition, active=active, acked=not active, confirmed=True, retain=active,
                      severity=severity, message="m", state="", condition_id="c", event_id=f"{ts:x}", stale=stale,
                      source_ts_ms=ts, received_ms=ts, batch_id="B", work_order_id=None, phase=None)


def book(**extra: object) -> RuleBook:
    return RuleBook(AlarmsConfig.model_validate({"rules": [{"condition": "Jam", "owner": "m", "action": "a"}],
                                                 **extra}))


def test_a_chattering_alarm_opens_one_exception_per_debounce_window() -> None:
    rules = book(debounce_s=60)
    fired = []
    previous = None
    # active / inactive every 10 s for two minutes (source time)
    for step in range(12):
        event = row(1_000_000 + step * 10_000, active=step % 2 == 0)
        fired += [t.event.source_ts_ms for t in rules.evaluate(event, previous)]
        previous = event
    assert fired == [1_000_000, 1_060_000]
    assert rules.suppressed_debounce == 4  # the rises at +20, +40 and +80, +100 s


def test_the_flood_cap_counts_per_line_in_a_sliding_minute() -> None:
    rules = book(max_exceptions_per_minute=3, debounce_s=0)
    fired = [len(rules.evaluate(row(1_000_000 + i * 1000, cell=f"C{i}"), None)) for i in range(5)]
    other_line = rules.evaluate(row(1_004_500, cell="C9", line="acme/plant1/packaging/line2"), None)
    later = rules.evaluate(row(1_060_000, cell="C7"), None)  # the first has left the minute
    assert (fired, len(other_line), len(later), rules.suppressed_flood) == ([1, 1, 1, 0, 0], 1, 1, 2)


def test_stale_inactive_and_less_severe_rows_open_nothing() -> None:
    rules = RuleBook(AlarmsConfig.model_validate({"rules": [
        {"condition": "TemperatureAlarm", "min_severity": 800, "owner": "QA", "action": "a", "cell": "Filler"}]}))
    high = row(1, condition="TemperatureAlarm", severity=500)
    assert rules.evaluate(high, None) == []
    assert rules.evaluate(row(2, condition="TemperatureAlarm", severity=800, stale=True), high) == []
    assert rules.evaluate(row(3, condition="TemperatureAlarm", severity=800, cell="Capper"), high) == []
    [fired] = rules.evaluate(row(4, condition="TemperatureAlarm", severity=800), high)
    assert fired.index == 0 and fired.event.source_ts_ms == 4


def test_bad_rules_are_refused_with_the_field() -> None:
    with pytest.raises(ValueError, match="min_severity"):
        AlarmsConfig.model_validate({"rules": [{"condition": "Jam", "owner": "m", "action": "a", "min_severity": 0}]})
    with pytest.raises(ValueError, match="release_role"):
        AlarmsConfig.model_validate({"release_role": "boss"})


def test_a_version_1_journal_opens_with_its_rows_and_gains_the_exception_tables(tmp_path: Path) -> None:
    path = tmp_path / "alarms.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, MIGRATIONS[:1], store="alarm journal")  # the layout of the first release
    conn.execute("INSERT INTO alarm_event (line, cell, group_id, edge_node_id, device_id, condition, active, acked,"
                 " confirmed, retain, severity, message, state, condition_id, event_id, stale, source_ts_ms,"
                 " received_ms, batch_id, work_order_id, phase) VALUES (?, 'Filler', 'g', 'e', 'Filler', 'Jam',"
                 " 1, 0, 1, 1, 600, 'jam', '', 'c', 'ab', 0, 10, 11, 'B-1', NULL, 'filling')", (LINE,))
    conn.close()
    journal = AlarmJournal(path)
    try:
        assert (journal.migrated_from, SCHEMA_VERSION) == (1, 2)
        [kept] = journal.query(batch_id="B-1")
        assert (kept.condition, kept.active, kept.severity, kept.phase, kept.source_ts_ms) == (
            "Jam", True, 600, "filling", 10)
        tables = {r[0] for r in journal.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"alarm_exception", "batch_hold"} <= tables
    finally:
        journal.close()


def test_a_journal_of_a_newer_adapter_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alarms.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="alarm journal has schema version 3"):
        AlarmJournal(path)
