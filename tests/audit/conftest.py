"""Audit log fixtures: a filled log, and an attacker's raw access to the file."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from uns.audit.chain import APPEND_ONLY_TABLES, AuditLog
from uns.audit.record import AuditEntry, AuditEvent, AuditTarget

T0 = 1_760_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 7
        return self.now


def entry(i: int) -> AuditEntry:
    events = [AuditEvent.REQUESTED, AuditEvent.SIGNED, AuditEvent.DISPATCHED, AuditEvent.WRITTEN,
              AuditEvent.READBACK_OK]
    return AuditEntry(event=events[i % len(events)], command_id=f"cmd-{i // len(events)}", actor_user_id="alice",
                      actor_printed_name="Alice Archer", reason="new SOP", requested_value=100.0 + i,
                      old_value=90.5, target=AuditTarget(group_id="acme:dublin", edge_node_id="packaging:line1",
                                                         device_id="filler", metric="Filler/SpeedSetpoint"))


Fill = Callable[..., Path]


@pytest.fixture
def fill(tmp_path: Path) -> Fill:
    """``fill(n, checkpoint_every=5, close=True)``: a log of n records at tmp_path/audit.db."""

    def make(n: int, checkpoint_every: int = 5, close: bool = True, witness: bool = False) -> Path:
        path = tmp_path / "audit.db"
        log = AuditLog(path, checkpoint_every=checkpoint_every, clock=Clock(),
                       witness_path=tmp_path / "witness.jsonl" if witness else None)
        for i in range(n):
            log.append(entry(i))
        if close:
            log.close()
        else:  # leave the tail unsealed, as a crash would
            log._db.close()
            log._release_writer_lock()
            log._closed = True
        return path

    return make


@contextmanager
def attacker(path: Path) -> Iterator[sqlite3.Connection]:
    """Raw write access to the file, triggers dropped first, as someone with the disk would do."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for table in APPEND_ONLY_TABLES:
            for op in ("update", "delete"):
                db.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
        yield db
    finally:
        db.close()
