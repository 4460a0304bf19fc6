"""The durable alarm journal: one row per change of a condition, bound to the batch and phase at source time.

Its own SQLite file (``alarms.sqlite`` in the adapter's data directory), versioned by
:mod:`uns.sqlite_schema`: :data:`MIGRATIONS` holds one script per version. A row is written for
every state the edge stated that differs from the condition's previous row (a new event, an
acknowledge, a clear, the condition turning stale at a death or fresh at a rebirth), so the journal
answers "what did this alarm do during batch B, phase P" without the broker.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mes_adapter.sqlite import open_db, transaction
from uns.sqlite_schema import migrate as migrate_schema

from .fold import ConditionKey, ConditionState

#: ``MIGRATIONS[n]`` brings a file from version ``n`` to ``n + 1``
MIGRATIONS: list[str] = [
    """
    CREATE TABLE alarm_event (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        line TEXT NOT NULL,
        cell TEXT,
        group_id TEXT NOT NULL,
        edge_node_id TEXT NOT NULL,
        device_id TEXT,
        condition TEXT NOT NULL,
        active INTEGER NOT NULL,
        acked INTEGER NOT NULL,
        confirmed INTEGER NOT NULL,
        retain INTEGER NOT NULL,
        severity INTEGER NOT NULL,
        message TEXT NOT NULL,
        state TEXT NOT NULL,
        condition_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        stale INTEGER NOT NULL,
        source_ts_ms INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        batch_id TEXT,
        work_order_id TEXT,
        phase TEXT
    );
    CREATE INDEX alarm_event_by_line ON alarm_event (line, source_ts_ms);
    CREATE INDEX alarm_event_by_batch ON alarm_event (line, batch_id);
    CREATE INDEX alarm_event_by_condition ON alarm_event (group_id, edge_node_id, device_id, condition, id);
    """,
    # v2: exceptions opened by alarm rules, batch holds with their signed release, shelving with expiry
    """
    CREATE TABLE alarm_exception (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alarm_id INTEGER NOT NULL REFERENCES alarm_event (id),
        rule_index INTEGER NOT NULL,
        line TEXT NOT NULL,
        cell TEXT,
        condition TEXT NOT NULL,
        severity INTEGER NOT NULL,
        cause TEXT NOT NULL,
        owner TEXT NOT NULL,
        action TEXT NOT NULL,
        batch_id TEXT,
        phase TEXT,
        opened_ms INTEGER NOT NULL,
        closed_ms INTEGER,
        closed_by TEXT,
        closing_comment TEXT
    );
    CREATE INDEX alarm_exception_by_line ON alarm_exception (line, opened_ms);
    CREATE TABLE batch_hold (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        line TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        exception_id INTEGER NOT NULL REFERENCES alarm_exception (id),
        reason TEXT NOT NULL,
        held_ms INTEGER NOT NULL,
        released_ms INTEGER,
        released_by TEXT,
        release_comment TEXT,
        release_signature TEXT
    );
    CREATE UNIQUE INDEX batch_hold_one_open ON batch_hold (line, batch_id) WHERE released_ms IS NULL;
    CREATE TABLE alarm_shelf (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        line TEXT NOT NULL,
        cell TEXT,
        condition TEXT NOT NULL,
        shelved_ms INTEGER NOT NULL,
        until_ms INTEGER NOT NULL,
        shelved_by TEXT NOT NULL,
        comment TEXT NOT NULL
    );
    CREATE INDEX alarm_shelf_by_condition ON alarm_shelf (line, condition, until_ms);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class AlarmEvent(BaseModel):
    """One journal row (the REST model and the source of the retained ``_alarms`` message)."""

    id: int
    kind: str = Field("condition", description="'condition': an OPC UA Alarms & Conditions condition")
    line: str
    cell: str | None
    group_id: str
    edge_node_id: str
    device_id: str | None
    condition: str = Field(description="ConditionName, e.g. TemperatureAlarm")
    active: bool
    acked: bool
    confirmed: bool
    retain: bool
    severity: int = Field(description="OPC UA severity 1..1000 (0: never raised)")
    message: str
    state: str = Field(description="limit state (High, HighHigh, Low, LowLow) or ''")
    condition_id: str = Field(description="the condition's NodeId (what Acknowledge is called on)")
    event_id: str = Field(description="EventId of the event, lowercase hex")
    stale: bool = Field(description="the edge node or device died: the last known state, not a current one")
    source_ts_ms: int = Field(description="the event's source time (OPC UA Time)")
    received_ms: int = Field(description="when the adapter received it")
    batch_id: str | None = Field(description="batch running on the line at source_ts_ms")
    work_order_id: str | None
    phase: str | None


_COLUMNS = ("id, line, cell, group_id, edge_node_id, device_id, condition, active, acked, confirmed, retain, "
            "severity, message, state, condition_id, event_id, stale, source_ts_ms, received_ms, batch_id, "
            "work_order_id, phase")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn`` to :data:`SCHEMA_VERSION`; returns the version found before."""
    return migrate_schema(conn, MIGRATIONS, store="alarm journal")


class AlarmJournal:
    """Append per change; query by line / batch / phase / window / condition; the latest row per condition."""

    def __init__(self, path: str | Path) -> None:
        self._conn = open_db(path, durable=True)
        self.migrated_from = migrate(self._conn)

    def append_many(self, rows: list[tuple[str, str | None, ConditionKey, ConditionState, Any]]) -> list[int]:
        """Store ``(line, cell, key, state, context)`` rows in one transaction; their ids in order."""
        ids = []
        with transaction(self._conn) as conn:
            for line, cell, key, s, context in rows:
                cursor = conn.execute(
                    f"INSERT INTO alarm_event ({_COLUMNS.removeprefix('id, ')}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (line, cell, key.group_id, key.edge_node_id, key.device_id, key.name, s.active, s.acked,
                     s.confirmed, s.retain, s.severity, s.message, s.state, s.condition_id, s.event_id, s.stale,
                     s.source_ts_ms, s.received_ms,
                     getattr(context, "batch_id", None), getattr(context, "work_order_id", None),
                     getattr(context, "phase", None)))
                ids.append(int(cursor.lastrowid or 0))
        return ids

    @property
    def connection(self) -> sqlite3.Connection:
        """The file's connection, for the exception and hold tables of the same file (:mod:`.decisions`)."""
        return self._conn

    def get(self, event_id: int) -> AlarmEvent | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM alarm_event WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else _event(row)

    def latest(self, line: str | None = None) -> list[AlarmEvent]:
        """The newest row of every condition (of ``line``): the alarm list as it stands now."""
        sql = (f"SELECT {_COLUMNS} FROM alarm_event WHERE id IN (SELECT MAX(id) FROM alarm_event "
               "GROUP BY group_id, edge_node_id, device_id, condition)")
        params: list[Any] = []
        if line is not None:
            sql += " AND line = ?"
            params.append(line)
        return [_event(r) for r in self._conn.execute(sql + " ORDER BY line, cell, condition", params).fetchall()]

    def query(self, *, line: str | None = None, batch_id: str | None = None, phase: str | None = None,
              condition: str | None = None, from_ms: int | None = None, to_ms: int | None = None,
              limit: int = 1000) -> list[AlarmEvent]:
        """Rows with source time in ``[from_ms, to_ms)``, oldest first."""
        sql = f"SELECT {_COLUMNS} FROM alarm_event WHERE 1 = 1"
        params: list[Any] = []
        for column, value in (("line", line), ("batch_id", batch_id), ("phase", phase), ("condition", condition)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if from_ms is not None:
            sql += " AND source_ts_ms >= ?"
            params.append(from_ms)
        if to_ms is not None:
            sql += " AND source_ts_ms < ?"
            params.append(to_ms)
        sql += " ORDER BY source_ts_ms, id LIMIT ?"
        params.append(limit)
        return [_event(r) for r in self._conn.execute(sql, params).fetchall()]

    def close(self) -> None:
        self._conn.close()


def key_of(event: AlarmEvent) -> ConditionKey:
    return ConditionKey(event.group_id, event.edge_node_id, event.device_id, event.condition)


def state_of(event: AlarmEvent) -> ConditionState:
    return ConditionState(event.active, event.acked, event.confirmed, event.retain, event.severity, event.message,
                          event.state, event.condition_id, event.event_id, event.stale, event.source_ts_ms,
                          event.received_ms)


def _event(row: tuple[Any, ...]) -> AlarmEvent:
    return AlarmEvent(
        id=row[0], line=row[1], cell=row[2], group_id=row[3], edge_node_id=row[4], device_id=row[5],
        condition=row[6], active=bool(row[7]), acked=bool(row[8]), confirmed=bool(row[9]), retain=bool(row[10]),
        severity=row[11], message=row[12], state=row[13], condition_id=row[14], event_id=row[15],
        stale=bool(row[16]), source_ts_ms=row[17], received_ms=row[18], batch_id=row[19], work_order_id=row[20],
        phase=row[21])
