"""The edge's command journal: every command that has to wait, on disk until it finishes.

Why a journal and not only a start-up sweep of the audit chain: a command accepted while its
OPC UA server is down is a promise to the requester (its ``queued`` audit record says so). A
sweep could only break that promise after a restart ("failed: edge restarted"); with the queue on
disk the edge keeps it, in arrival order, and the normal re-check still applies at execution
(an overdue command ends ``expired``). The rule: nothing is kept only in memory that a restart
would lose.

The rule the executor follows (:mod:`edge_node.commands.executor`): a command is added here *before* its
``queued`` audit record (its endpoint is down, or its session was lost before the write), or
before it joins a queue that is not empty, and removed only *after* its final audit record and
its result were published. So after a crash every command with an
open ``queued`` record has a row (unless the disk failed: the start-up sweep of
:mod:`edge_node.commands.recovery` closes those), and a row whose command already has a final
record only needs its result published again. A command that runs at once on an idle endpoint is
not journaled (that would cost two fsyncs on the fast path); if the edge dies during its write,
the sweep closes its open ``written`` record.

**Executed-once ledger** (``seen_command``, schema version 2): every command id the edge has
taken in, with its hash and the time it stops being valid. :meth:`CommandJournal.claim` inserts
the id *before* the command is checked or written, in the same durable file, so a captured
DCMD/NCMD published again (by a host credential, or re-delivered by a broker) is refused
``replayed`` instead of writing the PLC a second time, also after an edge restart. A row is kept
until its command's validity has passed (plus :data:`SEEN_MARGIN_MS`): after that the command is
refused ``expired`` by the checks anyway, so the ledger stays bounded by the command rate times
the validity window.

One SQLite file (WAL, ``synchronous=FULL``: a row must survive a power cut, not only a crash),
one writer (the executor), calls made from a worker thread. ``PRAGMA user_version`` holds the
schema version; :func:`migrate` upgrades an older file in place (version 1, the journal table
alone, gains the ledger; its waiting commands are kept).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edge_node.errors import EdgeError
from uns.commands.model import CommandRequest
from uns.sqlite_schema import SchemaVersionError, schema_version
from uns.sqlite_schema import migrate as migrate_schema

#: the schema this code writes; 1 = the journal table alone (files written before the ledger)
SCHEMA_VERSION = 2
#: how long a seen command id is kept after its validity ended (clock differences, checks in flight)
SEEN_MARGIN_MS = 60_000

SCHEMA = """CREATE TABLE IF NOT EXISTS command_journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id TEXT NOT NULL,
    command_hash TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    request TEXT NOT NULL
)"""
SEEN_SCHEMA = """CREATE TABLE IF NOT EXISTS seen_command (
    command_id TEXT PRIMARY KEY,
    command_hash TEXT NOT NULL,
    first_seen_at_ms INTEGER NOT NULL,
    keep_until_ms INTEGER NOT NULL
)"""
SEEN_INDEX = "CREATE INDEX IF NOT EXISTS seen_command_keep_until ON seen_command(keep_until_ms)"


class CommandJournalError(EdgeError):
    """The journal file cannot be read or written (disk, permissions, corruption)."""


@dataclass(frozen=True, slots=True)
class SeenCommand:
    """A command id the edge took in before: when, and the hash of the request it came with."""

    command_id: str
    command_hash: str
    first_seen_at_ms: int


#: ``MIGRATIONS[n]`` brings a file from version ``n`` to ``n + 1`` (run by :mod:`uns.sqlite_schema`)
MIGRATIONS: list[str] = [SCHEMA, f"{SEEN_SCHEMA}; {SEEN_INDEX}"]
assert len(MIGRATIONS) == SCHEMA_VERSION


def migrate(db: sqlite3.Connection) -> int:
    """Bring the file to :data:`SCHEMA_VERSION`; returns the version it had (0 = new file).

    A file newer than this code is refused rather than written with an older idea of its tables.
    The first layout set no ``user_version``: a file with the journal table and no version is 1.
    """
    version = schema_version(db)
    if version == 0 and db.execute("SELECT 1 FROM sqlite_master WHERE type='table' "
                                   "AND name='command_journal'").fetchone():
        version = 1
    return migrate_schema(db, MIGRATIONS, store="command journal", found=version)


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
            self.migrated_from = migrate(self._db)
        except (OSError, sqlite3.Error, SchemaVersionError) as exc:
            if hasattr(self, "_db"):
                self._db.close()
            raise CommandJournalError(f"command journal {self.path}: {exc}") from None

    def claim(self, request: CommandRequest, keep_until_ms: int, now_ms: int) -> SeenCommand | None:
        """Record the command id as taken in; None if it is new, else the earlier sighting.

        One statement (``INSERT ... ON CONFLICT DO NOTHING``), so a check-then-insert race can't
        let two copies through. Rows whose validity has passed are pruned on the way.
        """
        command_id, command_hash = str(request.command_id), request.command_hash()
        with self._lock:
            try:
                self._db.execute("DELETE FROM seen_command WHERE keep_until_ms < ?", (now_ms - SEEN_MARGIN_MS,))
                cur = self._db.execute(
                    "INSERT INTO seen_command(command_id, command_hash, first_seen_at_ms, keep_until_ms) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(command_id) DO NOTHING",
                    (command_id, command_hash, now_ms, keep_until_ms))
                if cur.rowcount == 1:
                    return None
                row = self._db.execute("SELECT command_hash, first_seen_at_ms FROM seen_command WHERE command_id=?",
                                       (command_id,)).fetchone()
            except sqlite3.Error as exc:
                raise CommandJournalError(f"cannot record command {command_id} as seen: {exc}") from None
        return SeenCommand(command_id, row[0], int(row[1]))

    def seen_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM seen_command").fetchone()[0])

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


__all__ = ["SCHEMA_VERSION", "BadJournalRow", "CommandJournal", "CommandJournalError", "JournalEntry", "SeenCommand",
           "migrate"]
