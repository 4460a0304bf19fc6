"""The alarm service over its real journal file: a restart does not journal or republish a rebirth twice."""

from __future__ import annotations

import json
from pathlib import Path

from mes_adapter.alarms import FIELDS, AlarmJournal, AlarmService
from mes_adapter.context import ContextService, ContextStore
from mes_adapter.host import MetricChange, MetricState
from uns.conventions import Quality
from uns.isa95 import NamespaceMapping

TOPIC = "acme/plant1/packaging/line1/_alarms/Filler/_conditions/Jam"
NEVER = {"Active": False, "Acked": True, "Confirmed": True, "Retain": False, "Severity": 0, "Message": "",
         "State": "", "ConditionId": "", "EventId": ""}
RAISED = {"Active": True, "Acked": False, "Confirmed": True, "Retain": True, "Severity": 600, "Message": "Jam",
          "State": "", "ConditionId": "ns=2;s=Line1/Filler/Jam", "EventId": "ab01"}


def changes(values: dict[str, object], ts: int, *, quality: Quality = Quality.GOOD,
            birth: bool = False) -> list[MetricChange]:
    return [MetricChange(MetricState("acme:plant1", "packaging:line1", "Filler", f"Alarms/Jam/{name}", values[name],
                                     "String", quality, ts, ts, ts + 3), birth=birth) for name in FIELDS]


def service(tmp_path: Path, published: list[tuple[str, dict]]) -> tuple[AlarmService, ContextStore]:
    store = ContextStore(tmp_path / "context.sqlite")
    alarms = AlarmService(AlarmJournal(tmp_path / "alarms.sqlite"), ContextService(store), NamespaceMapping(),
                          lambda topic, payload, retain: published.append((topic, json.loads(payload))))
    return alarms, store


def test_a_rebirth_after_a_restart_is_no_new_row_and_a_death_then_marks_it_stale(tmp_path: Path) -> None:
    published: list[tuple[str, dict]] = []
    alarms, store = service(tmp_path, published)
    alarms.handle_many(changes(NEVER, 1_000, birth=True) + changes(RAISED, 2_000))
    assert [(t, m["active"], m["event_id"]) for t, m in published] == [(TOPIC, False, ""), (TOPIC, True, "ab01")]
    alarms.journal.close()
    store.close()

    published.clear()
    alarms, store = service(tmp_path, published)
    try:
        alarms.handle_many(changes(RAISED, 5_000, birth=True))  # the edge's birth restates the raised Jam
        assert (published, alarms.journaled) == ([], 0)
        alarms.handle_many(changes(RAISED, 6_000, quality=Quality.STALE))  # the device dies
        [(topic, stale)] = published
        assert (topic, stale["stale"], stale["active"], stale["event_id"], stale["received_ms"]) == (
            TOPIC, True, True, "ab01", 6_003)
        rows = alarms.journal.query(condition="Jam")
        assert [(r.active, r.stale, r.event_id) for r in rows] == [
            (False, False, ""), (True, False, "ab01"), (True, True, "ab01")]
    finally:
        alarms.journal.close()
        store.close()


def test_a_journal_that_cannot_write_loses_no_alarm_change_and_writes_them_in_order_after(tmp_path: Path) -> None:
    """A read-only journal (SQLite's own error) while the Jam is raised and then acknowledged: nothing
    is journaled or published while it lasts and readiness says why; the next drain after writes work
    again (one with no alarm change in it) journals both rows in order and publishes the last
    state. Before, both changes were lost and the retained alarm stayed at its old state."""
    published: list[tuple[str, dict]] = []
    alarms, store = service(tmp_path, published)
    try:
        alarms.handle_many(changes(NEVER, 1_000, birth=True))
        published.clear()
        alarms.journal.connection.execute("PRAGMA query_only = ON")
        alarms.handle_many(changes(RAISED, 2_000))
        alarms.handle_many(changes({**RAISED, "Acked": True, "EventId": "ab02"}, 3_000))
        assert alarms.failing is not None and "readonly" in alarms.failing and "2 change(s) waiting" in alarms.failing
        assert (published, alarms.journaled, alarms.waiting, alarms.not_journaled) == ([], 1, 2, 0)
        alarms.journal.connection.execute("PRAGMA query_only = OFF")
        alarms.handle_many([])  # the next drain, with no alarm change in it
        assert alarms.failing is None and alarms.waiting == 0 and alarms.journaled == 3
        rows = alarms.journal.query(condition="Jam")
        assert [(r.active, r.acked, r.event_id, r.source_ts_ms) for r in rows] == [
            (False, True, "", 1_000), (True, False, "ab01", 2_000), (True, True, "ab02", 3_000)]
        assert [(t, m["acked"], m["event_id"]) for t, m in published] == [(TOPIC, False, "ab01"), (TOPIC, True, "ab02")]
    finally:
        alarms.journal.close()
        store.close()
