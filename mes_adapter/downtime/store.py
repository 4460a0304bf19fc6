"""SQLite file of stop reasons (``downtime.sqlite``): who explained which stop, when, with what code.

A reason is keyed by the line and the stop's start (source time): stops are derived from the state
records, the reason is the only thing about a stop a person adds. Re-explaining a stop replaces its
code and keeps the earlier entry in ``stop_reason_history`` (nothing accepted is lost).

Schema version: :data:`MIGRATIONS`, one script per version, run by :mod:`uns.sqlite_schema`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from mes_adapter.sqlite import open_db, transaction
from uns.sqlite_schema import migrate

_REASON_COLUMNS = """
        line TEXT NOT NULL,
        stop_start_ms INTEGER NOT NULL,
        code TEXT NOT NULL,
        source TEXT NOT NULL,
        entered_by TEXT NOT NULL,
        entered_ms INTEGER NOT NULL,
        comment TEXT"""

#: ``MIGRATIONS[n]`` brings a file from version ``n`` to ``n + 1``
MIGRATIONS: list[str] = [
    f"""
    CREATE TABLE stop_reason ({_REASON_COLUMNS},
        PRIMARY KEY (line, stop_start_ms));
    CREATE TABLE stop_reason_history (id INTEGER PRIMARY KEY AUTOINCREMENT, {_REASON_COLUMNS});
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class ReasonSource(StrEnum):
    OPERATOR = "operator"  #: entered over REST by an authenticated user
    PLC = "plc"            #: mapped from the line's PLC reason tag


@dataclass(frozen=True, slots=True)
class StopReason:
    line: str
    stop_start_ms: int
    code: str
    source: ReasonSource
    entered_by: str
    entered_ms: int
    comment: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "source": self.source.value, "entered_by": self.entered_by,
                "entered_ms": self.entered_ms, "comment": self.comment}


_COLS = "line, stop_start_ms, code, source, entered_by, entered_ms, comment"


class ReasonStore:
    """Stop reasons of every line, durable (synchronous FULL: an operator's entry is a record)."""

    def __init__(self, path: str | Path) -> None:
        self._conn = open_db(path, durable=True)
        self.migrated_from = migrate(self._conn, MIGRATIONS, store="downtime reason store")

    def close(self) -> None:
        self._conn.close()

    def put(self, reason: StopReason) -> None:
        row = (reason.line, reason.stop_start_ms, reason.code, reason.source.value, reason.entered_by,
               reason.entered_ms, reason.comment)
        with transaction(self._conn) as conn:
            conn.execute(f"INSERT INTO stop_reason_history ({_COLS}) VALUES (?,?,?,?,?,?,?)", row)
            conn.execute(f"INSERT OR REPLACE INTO stop_reason ({_COLS}) VALUES (?,?,?,?,?,?,?)", row)

    def between(self, line: str, from_ms: int, to_ms: int) -> dict[int, StopReason]:
        """Reasons of stops starting in ``[from_ms, to_ms)``, by stop start."""
        rows = self._conn.execute(f"SELECT {_COLS} FROM stop_reason WHERE line = ? AND stop_start_ms >= ?"
                                  " AND stop_start_ms < ?", (line, from_ms, to_ms)).fetchall()
        return {r[1]: _reason(r) for r in rows}

    def history(self, line: str, stop_start_ms: int) -> list[StopReason]:
        rows = self._conn.execute(f"SELECT {_COLS} FROM stop_reason_history WHERE line = ? AND stop_start_ms = ?"
                                  " ORDER BY id", (line, stop_start_ms)).fetchall()
        return [_reason(r) for r in rows]


def _reason(row: sqlite3.Row | tuple[object, ...]) -> StopReason:
    line, start, code, source, by, at, comment = row
    return StopReason(str(line), int(start), str(code), ReasonSource(source), str(by), int(at),  # type: ignore[arg-type]
                      None if comment is None else str(comment))
