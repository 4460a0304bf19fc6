"""The edge's command journal: every command that has to wait, on disk until it finishes.

Why a journal and not only a start-up sweep of the audit chain: a command accepted while its
OPC UA server is down is a promise to the requester (its ``queued`` audit record says so). A
sweep could only break that promise after a restart ("failed: edge restarted"); with the queue on
disk the edge keeps it, in arrival order, and the normal re-check still applies at execution
(an overdue command ends ``expired``). design.md: nothing is kept only in memory that a restart
would lose.

The rule the executor follows (:mod:`edge_node.executor`): a command is added here *before* its
``queued`` audit record (its endpoint is down, or its session was lost before the write), or
before it joins a queue that is not empty, and removed only *after* its final audit record and
its result were published. So after a crash every command with an
open ``queued`` record has a row (unless the disk failed: the start-up sweep of
:mod:`edge_node.command_recovery` closes those), and a row whose command already has a final
record only needs its result published again. A command that runs at once on an idle endpoint is
not journaled (that would cost two fsyncs on the fast path); if the edge dies during its write,
the sweep closes its open ``written`` record.

One SQLite file (WAL, ``synchronous=FULL``: a row must survive a power cut, not only a crash),
one writer (the executor), calls made from a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from uns.commands.model import CommandRequest

SCHEMA = """CREATE TABLE IF NOT EXISTS command_journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id TEXT NOT NULL,
    command_hash TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    request TEXT NOT NULL
)"""


class CommandJournalError(Exception):
    """The journal file cannot be read or written (disk, permissions, corruption)."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One waiting command: its row id (arrival order), the request as received, when it arrived."""

    id: int
    request: CommandRequest
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class BadJournalRow:
    """A row that no longer reads as the command it was written for (its hash would not match)."""

    id: int
    command_id: str
    error: str


class CommandJournal:
    """``add`` / ``remove`` / ``load``; thread-safe, one instance per journal file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise CommandJournalError(f"command journal {self.path}: {exc}") from None

    def add(self, request: CommandRequest, received_at_ms: int) -> int:
        """Make the command durable; returns its row id (the key to :meth:`remove`)."""
        row = (str(request.command_id), request.command_hash(), received_at_ms, request.model_dump_json())
        with self._lock:
            try:
                cur = self._db.execute("INSERT INTO command_journal(command_id, command_hash, received_at_ms, "
                                       "request) VALUES (?, ?, ?, ?)", row)
            except sqlite3.Error as exc:
                raise CommandJournalError(f"cannot journal command {request.command_id}: {exc}") from None
            assert cur.lastrowid is not None
            return cur.lastrowid

    def remove(self, entry_id: int) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM command_journal WHERE id=?", (entry_id,))
            except sqlite3.Error as exc:
                raise CommandJournalError(f"cannot remove journal row {entry_id}: {exc}") from None

    def load(self) -> tuple[list[JournalEntry], list[BadJournalRow]]:
        """Every row in arrival order: those that read back as their command, and those that do not."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT id, command_id, command_hash, received_at_ms, request "
                                        "FROM command_journal ORDER BY id").fetchall()
            except sqlite3.Error as exc:
                raise CommandJournalError(f"cannot read command journal {self.path}: {exc}") from None
        good: list[JournalEntry] = []
        bad: list[BadJournalRow] = []
        for entry_id, command_id, command_hash, received_at_ms, text in rows:
            try:
                request = CommandRequest.model_validate(json.loads(text))
            except (ValueError, ValidationError) as exc:
                bad.append(BadJournalRow(entry_id, command_id, f"unreadable request: {exc}"))
                continue
            if request.command_hash() != command_hash or str(request.command_id) != command_id:
                bad.append(BadJournalRow(entry_id, command_id, "request does not match the hash it was stored with"))
                continue
            good.append(JournalEntry(entry_id, request, received_at_ms))
        return good, bad

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["BadJournalRow", "CommandJournal", "CommandJournalError", "JournalEntry"]
