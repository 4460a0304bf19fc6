"""Read-only queries on an audit database for the services that look back at their commands.

Why here: the audit tables are :mod:`uns.audit`'s stored contract (:mod:`.schema`); a service that
wrote its own SQL against them would break silently when the table changes. So the MES adapter
(a command's audit trail for the REST API) and the edge node (what a crashed run left open,
:mod:`edge_node.commands.recovery`) ask this module, and get typed records back.

Reads only: the connection is opened ``mode=ro`` beside the writer (WAL lets a reader run while
the one writer holds its lock; :class:`uns.audit.chain.AuditLog`). Each query is one statement in
SQLite's autocommit mode, so each sees one committed state of the log; records are only ever
appended, so a later query sees a superset. Nothing here checks the chain: that is
:func:`uns.audit.verify.verify` (the writer runs it on open).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import AuditError


class AuditQueryError(AuditError):
    """The audit database could not be opened or read, or a stored body is not a JSON object."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One row of ``audit_record`` as stored: the index columns and the canonical JSON body."""

    seq: int
    ts_ms: int
    event: str
    command_id: str | None
    body: str

    def fields(self) -> dict[str, Any]:
        """The body parsed; :class:`AuditQueryError` if it is not a JSON object."""
        try:
            parsed = json.loads(self.body)
        except (TypeError, ValueError) as exc:
            raise AuditQueryError(f"audit record seq {self.seq}: body is not JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise AuditQueryError(f"audit record seq {self.seq}: body is not a JSON object")
        return parsed


@dataclass(frozen=True, slots=True)
class CommandHead:
    """Per command: its newest record, and when (ts and seq) its first one was written."""

    command_id: str
    first_ts_ms: int
    first_seq: int
    last: StoredRecord


_RECORD_COLUMNS = "seq, ts_ms, event, command_id, body"


def _record(row: tuple[Any, ...]) -> StoredRecord:
    seq, ts_ms, event, command_id, body = row
    return StoredRecord(int(seq), int(ts_ms), str(event), None if command_id is None else str(command_id), body)


class AuditReader:
    """A read-only connection to one audit database. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise AuditQueryError(f"cannot open audit chain {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise AuditQueryError(f"cannot read audit chain {self.path}: {exc}") from None

    def command_trail(self, command_id: str) -> list[StoredRecord]:
        """Every record of one command, oldest first."""
        return [_record(row) for row in self._rows(
            f"SELECT {_RECORD_COLUMNS} FROM audit_record WHERE command_id = ? ORDER BY seq", (command_id,))]

    def command_heads(self) -> list[CommandHead]:
        """Every command's newest record, in the order the commands first appear in the log."""
        rows = self._rows(
            "SELECT r.seq, r.ts_ms, r.event, r.command_id, r.body, g.first_ts, g.first_seq FROM (SELECT command_id, "
            "MAX(seq) AS last_seq, MIN(ts_ms) AS first_ts, MIN(seq) AS first_seq FROM audit_record WHERE command_id "
            "IS NOT NULL GROUP BY command_id) g JOIN audit_record r ON r.seq = g.last_seq ORDER BY g.first_seq")
        return [CommandHead(str(row[3]), int(row[5]), int(row[6]), _record(row[:5])) for row in rows]

    def events(self, *events: str) -> list[StoredRecord]:
        """Every record of the given event kinds (all records when none are given), oldest first:
        the batch decisions (``batch_started``, ``disposition_recorded``, ...) have no command id."""
        if not events:
            return [_record(row) for row in self._rows(f"SELECT {_RECORD_COLUMNS} FROM audit_record ORDER BY seq")]
        marks = ", ".join("?" * len(events))
        return [_record(row) for row in self._rows(
            f"SELECT {_RECORD_COLUMNS} FROM audit_record WHERE event IN ({marks}) ORDER BY seq", tuple(events))]

    def last_event_ts(self, command_id: str, event: str) -> int | None:
        """When ``command_id`` last had a record of ``event`` (ms), None if never."""
        rows = self._rows("SELECT MAX(ts_ms) FROM audit_record WHERE command_id = ? AND event = ?",
                          (command_id, event))
        value = rows[0][0] if rows else None
        return None if value is None else int(value)


__all__ = ["AuditQueryError", "AuditReader", "CommandHead", "StoredRecord"]
