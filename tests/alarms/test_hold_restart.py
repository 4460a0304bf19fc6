"""Holds and shelving over the real SQLite file and audit chain: a hold survives a restart; a shelf expires."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mes_adapter.alarms import AlarmJournal, DecisionDesk
from mes_adapter.alarms.fold import ConditionKey, ConditionState
from mes_adapter.auth import Principal, Role
from mes_adapter.config.mes import AlarmsConfig
from uns.audit.chain import AuditLog
from uns.commands.signing import UserRegistry

LINE = "acme/plant1/packaging/line1"
CONFIG = AlarmsConfig.model_validate({"rules": [
    {"condition": "TemperatureAlarm", "min_severity": 800, "owner": "QA", "action": "check", "hold": True}]})


class Context:
    batch_id = "B-3"
    work_order_id = "WO-3"
    phase = "filling"


def desk(journal: AlarmJournal, audit: AuditLog, published: list[tuple[str, dict]]) -> DecisionDesk:
    return DecisionDesk(journal.connection, CONFIG, UserRegistry(), audit,
                        lambda line, hold: published.append((line, hold)), lambda: 5_000)


def test_a_held_batch_is_still_held_after_a_restart(tmp_path: Path) -> None:
    key = ConditionKey("acme:plant1", "packaging:line1", "Filler", "TemperatureAlarm")
    high_high = ConditionState(True, False, True, True, 800, "HighHigh", "HighHigh", "c", "ee", False, 1_000, 1_010)
    published: list[tuple[str, dict]] = []
    journal = AlarmJournal(tmp_path / "alarms.sqlite")
    audit = AuditLog(tmp_path / "audit.sqlite", checkpoint_interval_s=None)
    [row_id] = journal.append_many([(LINE, "Filler", key, high_high, Context())])
    row = journal.get(row_id)
    assert row is not None
    desk(journal, audit, published).on_alarm(row, None)
    journal.close()
    audit.close()

    journal = AlarmJournal(tmp_path / "alarms.sqlite")
    audit = AuditLog(tmp_path / "audit.sqlite", checkpoint_interval_s=None)
    try:
        again = desk(journal, audit, published)
        assert again.is_held(LINE, "B-3") and not again.is_held(LINE, "B-4")
        [hold] = again.holds(LINE, held_only=True)
        [exception] = again.exceptions(LINE, open_only=True)
        assert (hold.batch_id, hold.exception_id, hold.held_ms) == ("B-3", exception.id, 5_000)
        assert (exception.alarm_id, exception.owner, exception.cause, exception.batch_id, exception.phase) == (
            row_id, "QA", "HighHigh", "B-3", "filling")
        assert published == [(LINE, {"batch_id": "B-3", "held": True, "hold_id": hold.id, "reason": hold.reason,
                                     "held_ms": 5_000, "released_ms": None, "released_by": None})]
        # the journal's last row seeds the stream: the same alarm again (a rebirth) is no new row
        assert [e.id for e in journal.latest(LINE)] == [row_id]
    finally:
        journal.close()
        audit.close()


def test_a_shelved_condition_opens_nothing_until_the_shelf_expires(tmp_path: Path) -> None:
    now = [10_000]
    journal = AlarmJournal(tmp_path / "alarms.sqlite")
    audit = AuditLog(tmp_path / "audit.sqlite", checkpoint_interval_s=None)
    try:
        shelves = DecisionDesk(journal.connection, CONFIG, UserRegistry(), audit, lambda line, hold: None,
                               lambda: now[0])
        operator = Principal("alice", "Alice Operator", Role.OPERATOR)
        shelf = shelves.shelve(LINE, "Filler", "TemperatureAlarm", 60, operator, "sensor being replaced", "test")
        assert (shelf.until_ms, shelf.shelved_by) == (70_000, "alice")
        key = ConditionKey("acme:plant1", "packaging:line1", "Filler", "TemperatureAlarm")
        normal = ConditionState(False, True, True, False, 0, "", "", "c", "", False, 0, 0)

        def raise_and_clear(ts: int) -> None:
            active = ConditionState(True, False, True, True, 800, "HighHigh", "HighHigh", "c", f"{ts:x}", False, ts, ts)
            rows = journal.append_many([(LINE, "Filler", key, active, Context()),
                                        (LINE, "Filler", key, normal, Context())])
            raised, cleared = journal.get(rows[0]), journal.get(rows[1])
            assert raised is not None and cleared is not None
            shelves.on_alarm(raised, cleared)

        raise_and_clear(20_000)
        assert (shelves.exceptions(LINE, open_only=False), shelves.holds(LINE, held_only=False)) == ([], [])
        assert shelves.suppressed_shelved == 1 and [s.id for s in shelves.shelves(LINE)] == [shelf.id]
        now[0] = 70_000  # the shelf has expired
        assert shelves.shelves(LINE) == []
        raise_and_clear(80_000)
        assert [e.severity for e in shelves.exceptions(LINE, open_only=True)] == [800]
        assert shelves.is_held(LINE, "B-3")
    finally:
        journal.close()
        audit.close()
    with sqlite3.connect(tmp_path / "audit.sqlite") as db:
        kinds = [r[0] for r in db.execute("SELECT event FROM audit_record ORDER BY seq")]
    assert kinds == ["alarm_shelved", "exception_opened", "batch_held"]
