"""Accepted dispositions, durable: their own SQLite file with its own migration list.

Why its own file: one store per file, each with its schema version (:mod:`uns.sqlite_schema`); a
QA decision must survive a restart exactly as accepted, so a row is committed before the API
answers. Rows are never updated or deleted (a correction is a new disposition; the audit chain
holds both).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from mes_adapter.quality.models import Disposition, DispositionSplit
from uns.sqlite_schema import Migration, migrate

MIGRATIONS: tuple[Migration, ...] = (
    """CREATE TABLE disposition (
        disposition_id TEXT PRIMARY KEY,
        line TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        body TEXT NOT NULL,
        recorded_ms INTEGER NOT NULL);
    CREATE INDEX disposition_batch ON disposition(line, batch_id)""",
)


class DispositionStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        migrate(self._conn, MIGRATIONS, store="disposition store")

    def add(self, disposition: Disposition) -> None:
        self._conn.execute("INSERT INTO disposition(disposition_id, line, batch_id, body, recorded_ms) "
                           "VALUES (?, ?, ?, ?, ?)",
                           (disposition.disposition_id, disposition.line, disposition.batch_id,
                            disposition.model_dump_json(), disposition.recorded_ms))

    def get(self, disposition_id: str) -> Disposition | None:
        row = self._conn.execute("SELECT body FROM disposition WHERE disposition_id = ?",
                                 (disposition_id,)).fetchone()
        return None if row is None else Disposition.model_validate(json.loads(row[0]))

    def of_batch(self, line: str, batch_id: str) -> list[Disposition]:
        rows = self._conn.execute("SELECT body FROM disposition WHERE line = ? AND batch_id = ? ORDER BY rowid",
                                  (line, batch_id)).fetchall()
        return [Disposition.model_validate(json.loads(body)) for (body,) in rows]

    def totals(self, line: str, batch_id: str) -> DispositionSplit:
        total = DispositionSplit()
        for disposition in self.of_batch(line, batch_id):
            total = total.plus(disposition.split)
        return total

    def close(self) -> None:
        self._conn.close()
