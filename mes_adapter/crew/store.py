"""SQLite file of crew presences (``crew.sqlite``).

Schema version: :data:`MIGRATIONS` holds one script per version, run by :mod:`uns.sqlite_schema`.
A row is only ever inserted, or closed once (an open presence given its end); never rewritten.
"""

from __future__ import annotations

import threading
from pathlib import Path

from mes_adapter.sqlite import open_db, transaction
from uns.sqlite_schema import migrate

from .models import OPEN_END_MS, CrewPresence

#: ``MIGRATIONS[n]`` brings a file from version ``n`` to ``n + 1``
MIGRATIONS: list[str] = [
    """
    CREATE TABLE presence (
        line TEXT NOT NULL,
        person_id TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER,
        asserted_by TEXT NOT NULL,
        asserted_ms INTEGER NOT NULL,
        PRIMARY KEY (line, person_id, start_ms)
    );
    CREATE INDEX presence_by_person ON presence (person_id, start_ms);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS = "line, person_id, start_ms, end_ms"


def _row(r: tuple[str, str, int, int | None]) -> CrewPresence:
    return CrewPresence(line=r[0], person_id=r[1], start_ms=r[2], end_ms=r[3])


class CrewStore:
    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._conn = open_db(path)
        self._lock = threading.Lock()
        migrate(self._conn, MIGRATIONS, store="crew store")

    def close(self) -> None:
        self._conn.close()

    def of_person(self, person_id: str) -> list[CrewPresence]:
        """Every presence of the person, on any line (a person is in one place at a time)."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM presence WHERE person_id=? ORDER BY start_ms",
                                      (person_id,)).fetchall()
        return [_row(r) for r in rows]

    def of_line(self, line: str, from_ms: int = 0, to_ms: int = OPEN_END_MS) -> list[CrewPresence]:
        """Presences on ``line`` that overlap ``[from_ms, to_ms)``, by start."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM presence WHERE line=? AND start_ms < ? AND (end_ms IS NULL OR end_ms > ?) "
                "ORDER BY start_ms, person_id", (line, to_ms, from_ms)).fetchall()
        return [_row(r) for r in rows]

    def add(self, presence: CrewPresence, who: str, at_ms: int) -> None:
        with self._lock, transaction(self._conn) as conn:
            conn.execute("INSERT INTO presence VALUES (?, ?, ?, ?, ?, ?)",
                         (presence.line, presence.person_id, presence.start_ms, presence.end_ms, who, at_ms))

    def close_presence(self, presence: CrewPresence) -> None:
        """Give an open presence its end (the only update a row ever gets)."""
        with self._lock, transaction(self._conn) as conn:
            conn.execute("UPDATE presence SET end_ms=? WHERE line=? AND person_id=? AND start_ms=? AND end_ms IS NULL",
                         (presence.end_ms, presence.line, presence.person_id, presence.start_ms))
