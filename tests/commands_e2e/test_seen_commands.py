"""The command journal's ledger of seen command ids (schema version 2) and its migration from 1.

Real SQLite files in a temporary directory. A version-1 file is written with the exact DDL of
the journal before the ledger existed; opening it with today's code must keep its waiting
commands and add the ledger.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from edge_node.commands.journal import SCHEMA_VERSION, SEEN_MARGIN_MS, CommandJournal, CommandJournalError
from edge_node.commands.logic import replay_decision, seen_keep_until_ms
from uns.commands.model import CommandRequest, ReasonCode

#: the journal's DDL as version 1 wrote it: a frozen copy on purpose (the live SCHEMA may change)
V1_DDL = """CREATE TABLE IF NOT EXISTS command_journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id TEXT NOT NULL,
    command_hash TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    request TEXT NOT NULL
)"""
NOW = 1_800_000_000_000


def request(value: float = 322.0, command_id: uuid.UUID | None = None) -> CommandRequest:
    return CommandRequest(command_id=command_id or uuid.uuid4(), group_id="acme:plant1", edge_node_id="packaging:Line1",
                          device_id="Filler", metric="SpeedSetpoint", value=value, requested_by="alice",
                          reason="ledger test", created_at_ms=NOW, valid_until_ms=NOW + 30_000)


def version_of(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_command_id_is_new_once_then_reported_with_its_first_sighting(tmp_path: Path) -> None:
    journal = CommandJournal(tmp_path / "journal.db")
    first = request()
    assert journal.claim(first, NOW + 30_000, NOW) is None
    seen = journal.claim(first, NOW + 30_000, NOW + 5)
    assert seen is not None
    assert (seen.command_id, seen.command_hash, seen.first_seen_at_ms) == (str(first.command_id),
                                                                           first.command_hash(), NOW)
    # the same id with other content is caught too, and the refusal says so
    forged = request(999.0, first.command_id)
    seen_forged = journal.claim(forged, NOW + 30_000, NOW + 6)
    assert seen_forged is not None and seen_forged.command_hash == first.command_hash()
    decision = replay_decision(forged, seen_forged.command_hash, seen_forged.first_seen_at_ms, "v1", "rule-1")
    assert (decision.allowed, decision.reason, decision.rule_id) == (False, ReasonCode.REPLAYED, "rule-1")
    assert "a different command under the same id" in decision.message and str(NOW) in decision.message
    assert journal.seen_count() == 1
    journal.close()


def test_the_ledger_survives_a_reopen_and_forgets_only_after_the_validity(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = CommandJournal(path)
    old, recent = request(), request()
    journal.claim(old, NOW + 1_000, NOW)
    journal.claim(recent, NOW + 50_000, NOW)
    journal.close()

    journal = CommandJournal(path)  # a restart
    assert journal.claim(old, NOW + 1_000, NOW + 2_000) is not None
    # past its validity plus the margin the old id is pruned (a copy would be refused `expired`)
    later = NOW + 1_000 + SEEN_MARGIN_MS + 1
    journal.claim(request(), later + 30_000, later)
    assert journal.seen_count() == 2  # recent + the new one
    assert journal.claim(recent, NOW + 50_000, later) is not None
    journal.close()


def test_keep_until_is_bounded_by_the_validity_whatever_the_peer_claims() -> None:
    far = request().model_copy(update={"valid_until_ms": NOW + 10**12, "created_at_ms": NOW + 10**12})
    assert seen_keep_until_ms(far, None, NOW) <= NOW + 3_600_000
    normal = request()
    assert seen_keep_until_ms(normal, None, NOW) == NOW + 30_000


def test_a_version_1_journal_is_migrated_and_keeps_its_waiting_commands(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    waiting = request(310.0)
    db = sqlite3.connect(path)
    db.execute(V1_DDL)
    db.execute("INSERT INTO command_journal(command_id, command_hash, received_at_ms, request) VALUES (?, ?, ?, ?)",
               (str(waiting.command_id), waiting.command_hash(), NOW, waiting.model_dump_json()))
    db.commit()
    db.close()
    assert version_of(path) == 0

    journal = CommandJournal(path)
    assert journal.migrated_from == 1
    good, bad = journal.load()
    assert [(e.request, e.received_at_ms) for e in good] == [(waiting, NOW)] and bad == []
    assert journal.seen_count() == 0
    assert journal.claim(waiting, NOW + 30_000, NOW) is None  # resumed commands are recorded then
    journal.close()
    assert version_of(path) == SCHEMA_VERSION == 2

    reopened = CommandJournal(path)
    assert reopened.migrated_from == 2 and reopened.seen_count() == 1
    reopened.close()


def test_a_new_file_starts_at_the_current_version(tmp_path: Path) -> None:
    journal = CommandJournal(tmp_path / "new.db")
    assert journal.migrated_from == 0
    journal.close()
    assert version_of(tmp_path / "new.db") == SCHEMA_VERSION


def test_a_file_from_a_newer_edge_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    db = sqlite3.connect(path)
    db.execute(V1_DDL)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(CommandJournalError, match=r"command journal has schema version 3; this uns-hub knows up to 2"):
        CommandJournal(path)
    assert version_of(path) == SCHEMA_VERSION + 1
