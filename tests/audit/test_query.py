"""The typed read queries services use instead of SQL on the audit tables (uns.audit.query).

Real logs written by :class:`uns.audit.chain.AuditLog`; reads run beside an open writer, as the
edge's start-up recovery and the adapter's REST API do."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from uns.audit.chain import AuditLog
from uns.audit.query import AuditQueryError, AuditReader
from uns.audit.record import AuditEntry, AuditEvent

from .conftest import T0, Clock


def test_trails_heads_and_event_times_are_read_beside_the_open_writer(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    steps = [("a", AuditEvent.REQUESTED), ("b", AuditEvent.QUEUED), ("a", AuditEvent.WRITTEN),
             (None, AuditEvent.REQUESTED), ("a", AuditEvent.READBACK_OK), ("b", AuditEvent.WRITTEN),
             ("a", AuditEvent.WRITTEN)]
    with AuditLog(path, clock=Clock(), checkpoint_interval_s=None) as log:
        for command_id, event in steps:
            log.append(AuditEntry(event=event, command_id=command_id, message=f"{command_id}:{event.value}"))
        with AuditReader(path) as reader:  # the writer holds its lock; a reader still reads (WAL)
            trail = reader.command_trail("a")
            assert [(r.seq, r.event, r.command_id) for r in trail] == [
                (1, "requested", "a"), (3, "written", "a"), (5, "readback_ok", "a"), (7, "written", "a")]
            assert [r.ts_ms for r in trail] == [T0 + 14, T0 + 28, T0 + 42, T0 + 56]  # the first tick is created_ms
            assert [r.fields()["message"] for r in trail] == ["a:requested", "a:written", "a:readback_ok",
                                                             "a:written"]
            assert trail[0].fields() == json.loads(trail[0].body)
            heads = reader.command_heads()
            assert [(h.command_id, h.first_seq, h.first_ts_ms, h.last.seq, h.last.event) for h in heads] == [
                ("a", 1, T0 + 14, 7, "written"), ("b", 2, T0 + 21, 6, "written")]
            assert reader.last_event_ts("a", "written") == T0 + 56
            assert reader.last_event_ts("b", "readback_ok") is None
            assert reader.command_trail("nobody") == []


def test_a_missing_log_and_a_log_without_tables_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AuditQueryError, match=r"cannot open audit chain .*nothing\.db"):
        AuditReader(tmp_path / "nothing.db")
    sqlite3.connect(tmp_path / "empty.db").execute("CREATE TABLE other (x)").connection.commit()
    with AuditReader(tmp_path / "empty.db") as reader, \
            pytest.raises(AuditQueryError, match=r"cannot read audit chain .*empty\.db: no such table: audit_record"):
        reader.command_heads()


def test_a_body_that_is_not_a_json_object_is_named_by_its_seq(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, clock=Clock(), checkpoint_interval_s=None) as log:
        log.append(AuditEntry(event=AuditEvent.REQUESTED, command_id="a"))
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER audit_record_no_update")
    db.execute("UPDATE audit_record SET body='[1]' WHERE seq=1")
    db.commit()
    db.close()
    with AuditReader(path) as reader:
        (record,) = reader.command_trail("a")
        with pytest.raises(AuditQueryError, match=r"audit record seq 1: body is not a JSON object"):
            record.fields()
