"""Accepted context assertions in the PostgreSQL shared by several adapter instances (``mes.state_dsn``).

The same rows and rules as the SQLite :class:`~mes_adapter.context.store.ContextStore` (append only, keyed
``(line, seq)``), in the table ``mes_context_assertion`` (schema version in ``mes_schema``, store
``context``). Each instance writes only the lines of its own groups (the service refuses the others), so
two instances never append to the same line; any instance reads every line, which is how its REST API
answers for the lines of the others (their timelines are loaded at query time, see
:class:`~mes_adapter.context.service.ContextService`).
"""

from __future__ import annotations

from mes_adapter.context.models import ContextAssertion
from mes_adapter.context.store import assertion_of, assertion_row
from mes_adapter.pg_schema import Migration
from mes_adapter.pg_state import PgConnection

STORE = "context"
MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE mes_context_assertion (
        line text NOT NULL,
        seq bigint NOT NULL,
        since_ms bigint NOT NULL,
        batch_id text,
        ended integer NOT NULL,
        received_ms bigint NOT NULL,
        body text NOT NULL,
        PRIMARY KEY (line, seq)
    );
    CREATE INDEX mes_context_by_batch ON mes_context_assertion (line, batch_id);
    """,
]


class PostgresContextStore:
    """One instance's handle on the shared context history (its own connection)."""

    def __init__(self, dsn: str) -> None:
        self._db = PgConnection(dsn, STORE, MIGRATIONS)

    def append(self, assertion: ContextAssertion, received_ms: int) -> None:
        self._db.rows("INSERT INTO mes_context_assertion (line, seq, since_ms, batch_id, ended, received_ms, body)"
                      " VALUES (%s, %s, %s, %s, %s, %s, %s)", assertion_row(assertion, received_ms))

    def load_all(self) -> list[ContextAssertion]:
        return [assertion_of(body) for (body,) in
                self._db.read("SELECT body FROM mes_context_assertion ORDER BY line, seq")]

    def load_line(self, line: str) -> list[ContextAssertion]:
        return [assertion_of(body) for (body,) in
                self._db.read("SELECT body FROM mes_context_assertion WHERE line = %s ORDER BY seq", (line,))]

    def lines(self) -> list[str]:
        return [line for (line,) in self._db.read("SELECT DISTINCT line FROM mes_context_assertion ORDER BY line")]

    def history(self, line: str, limit: int | None = None) -> list[tuple[ContextAssertion, int]]:
        rows = self._db.read("SELECT body, received_ms FROM mes_context_assertion WHERE line = %s"
                             " ORDER BY seq DESC LIMIT %s", (line, limit))
        return [(assertion_of(body), received) for body, received in rows]

    def close(self) -> None:
        self._db.close()
