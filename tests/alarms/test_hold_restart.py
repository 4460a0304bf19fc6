"""A hold and its exception survive an adapter restart (real SQLite file, real audit chain)."""

from __future__ import annotations

from pathlib import Path

from mes_adapter.alarms import AlarmJournal, DecisionDesk
from mes_adapter.alarms.fold import ConditionKey, ConditionState
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
