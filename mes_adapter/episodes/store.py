"""SQLite journal of quality episodes, each bound to the batch and phase running at its start.

An episode is stored when it opens (``end_ms`` NULL) and updated once when it closes, so one that
is open when the adapter stops is still there, open, after the restart; the service seeds its
detector with :meth:`EpisodeStore.open_episodes` and closes the same row on the next GOOD.

Schema version: :data:`MIGRATIONS` holds one script per version, run by :mod:`uns.sqlite_schema`
(one transaction; a file written by a newer adapter is refused with a clear error).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mes_adapter.sqlite import open_db, transaction
from uns.sqlite_schema import migrate as migrate_schema

from .detector import OpenEpisode, TagKey

#: ``MIGRATIONS[n]`` brings a file from version ``n`` to ``n + 1``
MIGRATIONS: list[str] = [
    """
    CREATE TABLE quality_episode (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        line TEXT NOT NULL,
        cell TEXT,
        group_id TEXT NOT NULL,
        edge_node_id TEXT NOT NULL,
        device_id TEXT,
        metric TEXT NOT NULL,
        topic TEXT,
        quality TEXT NOT NULL,
        reason TEXT NOT NULL,
        status_code INTEGER,
        status TEXT,
        raw_value TEXT,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER,
        batch_id TEXT,
        work_order_id TEXT,
        phase TEXT,
        opened_received_ms INTEGER NOT NULL,
        closed_received_ms INTEGER
    );
    CREATE INDEX quality_episode_by_line ON quality_episode (line, start_ms);
    CREATE INDEX quality_episode_by_batch ON quality_episode (line, batch_id);
    CREATE INDEX quality_episode_open ON quality_episode (end_ms) WHERE end_ms IS NULL;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class QualityEpisode(BaseModel):
    """One stored episode (the REST model and the ``_alarms`` payload's source)."""

    id: int
    kind: str = Field(description="'quality': a run of BAD / UNCERTAIN / STALE on one tag")
    line: str
    cell: str | None
    group_id: str
    edge_node_id: str
    device_id: str | None
    metric: str
    topic: str | None = Field(description="the tag's UNS topic")
    quality: str = Field(description="quality of the sample that opened the episode")
    reason: str = Field(description="out_of_range, max_age, frozen, future_timestamp, old_timestamp, "
                                    "bad_status, comm_lost (from the edge) or stale (node/device death)")
    status_code: int | None
    status: str | None = Field(description="OPC UA StatusCode name, e.g. BadSensorFailure")
    raw_value: Any = Field(None, description="the rejected raw value, when the edge sent one")
    start_ms: int = Field(description="source time the tag left GOOD")
    end_ms: int | None = Field(description="source time it was GOOD again; null while active")
    active: bool
    batch_id: str | None = Field(description="batch running on the line at start_ms")
    work_order_id: str | None
    phase: str | None


_COLUMNS = ("id, kind, line, cell, group_id, edge_node_id, device_id, metric, topic, quality, reason, "
            "status_code, status, raw_value, start_ms, end_ms, batch_id, work_order_id, phase")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn`` to :data:`SCHEMA_VERSION`; returns the version found before."""
    return migrate_schema(conn, MIGRATIONS, store="episode store")


class EpisodeStore:
    """Insert on open, update on close, query by line / window / batch."""

    def __init__(self, path: str | Path) -> None:
        self._conn = open_db(path, durable=True)
        self.migrated_from = migrate(self._conn)
        self._batched = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction (one fsync) for every open/close inside: an outage turns thousands of
        tags STALE at once, and a durable commit per tag would stall the event loop for seconds."""
        with transaction(self._conn):
            self._batched = True
            try:
                yield
            finally:
                self._batched = False

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return nullcontext(self._conn) if self._batched else transaction(self._conn)

    def open(self, *, line: str, cell: str | None, key: TagKey, topic: str | None, quality: str, reason: str,
             status_code: int | None, status: str | None, raw_value: Any, start_ms: int,
             batch_id: str | None, work_order_id: str | None, phase: str | None, received_ms: int,
             kind: str = "quality") -> int:
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO quality_episode (kind, line, cell, group_id, edge_node_id, device_id, metric, topic,"
                " quality, reason, status_code, status, raw_value, start_ms, batch_id, work_order_id, phase,"
                " opened_received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, line, cell, key.group_id, key.edge_node_id, key.device_id, key.name, topic, quality, reason,
                 status_code, status, None if raw_value is None else json.dumps(raw_value, default=str),
                 start_ms, batch_id, work_order_id, phase, received_ms))
            return int(cursor.lastrowid or 0)

    def close_episode(self, episode_id: int, end_ms: int, received_ms: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE quality_episode SET end_ms = ?, closed_received_ms = ? "
                         "WHERE id = ? AND end_ms IS NULL",
                         (end_ms, received_ms, episode_id))

    def get(self, episode_id: int) -> QualityEpisode | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM quality_episode WHERE id = ?", (episode_id,)).fetchone()
        return None if row is None else _episode(row)

    def open_episodes(self) -> list[OpenEpisode]:
        rows = self._conn.execute("SELECT id, group_id, edge_node_id, device_id, metric, start_ms FROM quality_episode"
                                  " WHERE end_ms IS NULL ORDER BY id").fetchall()
        return [OpenEpisode(r[0], TagKey(r[1], r[2], r[3], r[4]), r[5]) for r in rows]

    def query(self, line: str, from_ms: int | None = None, to_ms: int | None = None, batch_id: str | None = None,
              limit: int = 1000) -> list[QualityEpisode]:
        """Episodes of ``line`` overlapping ``[from_ms, to_ms)`` (open ones reach to now), oldest first."""
        sql = f"SELECT {_COLUMNS} FROM quality_episode WHERE line = ?"
        params: list[Any] = [line]
        if to_ms is not None:
            sql += " AND start_ms < ?"
            params.append(to_ms)
        if from_ms is not None:
            sql += " AND (end_ms IS NULL OR end_ms > ?)"
            params.append(from_ms)
        if batch_id is not None:
            sql += " AND batch_id = ?"
            params.append(batch_id)
        sql += " ORDER BY start_ms, id LIMIT ?"
        params.append(limit)
        return [_episode(row) for row in self._conn.execute(sql, params).fetchall()]

    def close(self) -> None:
        self._conn.close()


def _episode(row: tuple[Any, ...]) -> QualityEpisode:
    raw = row[13]
    return QualityEpisode(
        id=row[0], kind=row[1], line=row[2], cell=row[3], group_id=row[4], edge_node_id=row[5], device_id=row[6],
        metric=row[7], topic=row[8], quality=row[9], reason=row[10], status_code=row[11], status=row[12],
        raw_value=None if raw is None else json.loads(raw), start_ms=row[14], end_ms=row[15],
        active=row[15] is None, batch_id=row[16], work_order_id=row[17], phase=row[18])
