"""History of accepted context assertions: nothing the MES asserted is lost on restart.

One row per accepted assertion, keyed ``(line, seq)``; the row keeps the assertion as JSON plus the
columns queries need, and when the adapter received it. Rows are never updated or deleted: the
history is the audit of what was asserted, and the timeline is rebuilt from it.

:class:`ContextStorePort` is what the service needs; :class:`ContextStore` keeps it in a SQLite file
(the default), :class:`~mes_adapter.context.pg_store.PostgresContextStore` in the PostgreSQL that
several adapter instances share (``mes.state_dsn``), where an instance reads the lines of the others.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Protocol

from mes_adapter.context.models import ContextAssertion
from mes_adapter.sqlite import open_db, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS context_assertion (
    line TEXT NOT NULL,
    seq INTEGER NOT NULL,
    since_ms INTEGER NOT NULL,
    batch_id TEXT,
    ended INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (line, seq)
);
CREATE INDEX IF NOT EXISTS context_by_batch ON context_assertion (line, batch_id);
"""


class ContextStorePort(Protocol):
    """An append-only store of accepted assertions (see the module notes)."""

    def append(self, assertion: ContextAssertion, received_ms: int) -> None: ...

    def load_all(self) -> list[ContextAssertion]: ...

    def load_line(self, line: str) -> list[ContextAssertion]: ...

    def lines(self) -> list[str]: ...

    def history(self, line: str, limit: int | None = None) -> list[tuple[ContextAssertion, int]]: ...

    def close(self) -> None: ...


def assertion_row(assertion: ContextAssertion, received_ms: int) -> tuple[object, ...]:
    """The stored columns of an assertion, in table order (both backends)."""
    return (assertion.line, assertion.seq, assertion.since_ms, assertion.batch_id, int(assertion.ended),
            received_ms, assertion.model_dump_json())


def assertion_of(body: str) -> ContextAssertion:
    return ContextAssertion.model_validate(json.loads(body))


class ContextStore:
    """Append-only SQLite store of assertions; the in-memory timeline lives in the service."""

    def __init__(self, path: str | Path) -> None:
        self._conn = open_db(path, durable=True)
        self._conn.executescript(_SCHEMA)

    def append(self, assertion: ContextAssertion, received_ms: int) -> None:
        """Store one accepted assertion (the service has checked its seq)."""
        with transaction(self._conn) as conn:
            conn.execute(
                "INSERT INTO context_assertion (line, seq, since_ms, batch_id, ended, received_ms, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", assertion_row(assertion, received_ms))

    def load_all(self) -> list[ContextAssertion]:
        """Every stored assertion, ordered by line and seq (for rebuilding timelines)."""
        rows = self._conn.execute("SELECT body FROM context_assertion ORDER BY line, seq").fetchall()
        return [assertion_of(body) for (body,) in rows]

    def load_line(self, line: str) -> list[ContextAssertion]:
        """Every stored assertion of one line, ordered by seq."""
        rows = self._conn.execute("SELECT body FROM context_assertion WHERE line = ? ORDER BY seq", (line,))
        return [assertion_of(body) for (body,) in rows.fetchall()]

    def lines(self) -> list[str]:
        """Lines with at least one stored assertion."""
        return [line for (line,) in self._conn.execute("SELECT DISTINCT line FROM context_assertion ORDER BY line")]

    def history(self, line: str, limit: int | None = None) -> list[tuple[ContextAssertion, int]]:
        """``(assertion, received_ms)`` of a line, newest seq first."""
        sql = "SELECT body, received_ms FROM context_assertion WHERE line = ? ORDER BY seq DESC"
        params: tuple[object, ...] = (line,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [(assertion_of(body), received)
                for body, received in self._conn.execute(sql, params).fetchall()]

    def close(self) -> None:
        self._conn.close()

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn
