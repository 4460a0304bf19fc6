"""Appending, checkpoints, the one-writer rule and the SQLite-level append-only guard."""

from __future__ import annotations

import json
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from uns.audit.canonical import CanonicalizationError, canonical_json
from uns.audit.chain import AuditIntegrityError, AuditLog, AuditLogBusyError
from uns.audit.record import GENESIS_HASH, AuditEntry, AuditEvent, record_hash
from uns.audit.verify import verify

from .conftest import Clock, Fill, attacker, entry


def test_append_chains_and_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, checkpoint_every=3, clock=Clock()) as log:
        first = log.append(entry(0))
        second = log.append(entry(1))
        assert (first.seq, second.seq) == (1, 2) and first.prev_hash == GENESIS_HASH
        assert second.prev_hash == first.entry_hash and log.head == (2, second.entry_hash)
        assert first.ts_ms < second.ts_ms
    body = sqlite3.connect(path).execute("SELECT body FROM audit_record WHERE seq=2").fetchone()[0]
    # anyone can recompute the hash from the stored canonical body
    assert record_hash(first.entry_hash, body.encode()) == second.entry_hash
    assert canonical_json(json.loads(body)).decode() == body
    report = verify(path)
    assert report.ok and report.records == 2 and report.checkpoints == 1 and report.unsealed_tail == 0


def test_checkpoint_every_n_and_on_close(fill: Fill) -> None:
    path = fill(12, checkpoint_every=5)
    rows = sqlite3.connect(path).execute("SELECT number, seq FROM audit_checkpoint ORDER BY number").fetchall()
    assert rows == [(1, 5), (2, 10), (3, 12)]
    assert verify(path).sealed_through_seq == 12


def test_a_quiet_tail_is_sealed_by_time(tmp_path: Path) -> None:
    """Three commands a day must not wait for the hundredth to be sealed (and witnessed)."""
    path, witness = tmp_path / "audit.db", tmp_path / "other-disk" / "witness.jsonl"
    log = AuditLog(path, checkpoint_every=100, checkpoint_interval_s=0.2, witness_path=witness)
    try:
        log.append(entry(0))
        log.append(entry(1))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not witness.read_text():  # it exists (empty) from the open
            time.sleep(0.05)
        sealed = json.loads(witness.read_text().splitlines()[-1])
        assert (sealed["number"], sealed["seq"]) == (1, 2)  # both records, one timed checkpoint
        assert sqlite3.connect(path).execute("SELECT count(*) FROM audit_checkpoint").fetchone()[0] == 1
    finally:
        log.close()
    report = verify(path)  # finds the witness through the log's own record of it
    assert report.ok and report.witness_checkpoints == 1 and report.unsealed_tail == 0


def test_reopen_continues_the_chain(fill: Fill) -> None:
    path = fill(4)
    with AuditLog(path, clock=Clock()) as log:
        assert log.head[0] == 4
        assert log.append(entry(4)).seq == 5
    assert verify(path).ok


def test_key_created_0600_with_public_copy(fill: Fill) -> None:
    path = fill(1)
    key = path.parent / "audit-checkpoint.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (path.parent / "audit-checkpoint.pub").read_text().startswith("ed25519:")


def test_key_readable_by_others_is_refused(fill: Fill) -> None:
    path = fill(1)
    (path.parent / "audit-checkpoint.key").chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        AuditLog(path)


def test_one_writer(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db"):
        with pytest.raises(AuditLogBusyError, match="already has a writer"):
            AuditLog(tmp_path / "audit.db")
    AuditLog(tmp_path / "audit.db").close()  # released on close


def test_triggers_refuse_update_and_delete(fill: Fill) -> None:
    db = sqlite3.connect(fill(3))
    for sql in ("UPDATE audit_record SET event='x' WHERE seq=1", "DELETE FROM audit_record WHERE seq=3",
                "DELETE FROM audit_checkpoint", "UPDATE audit_meta SET value='x'"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)


def test_non_json_value_writes_nothing(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        with pytest.raises(CanonicalizationError):
            log.append(AuditEntry(event=AuditEvent.WRITTEN, old_value=float("nan")))
        assert log.head[0] == 0


def test_writer_refuses_a_broken_log(fill: Fill) -> None:
    path = fill(6)
    with attacker(path) as db:
        db.execute("UPDATE audit_record SET body=replace(body, 'new SOP', 'old SOP') WHERE seq=2")
    with pytest.raises(AuditIntegrityError, match="seq 2"):
        AuditLog(path)
