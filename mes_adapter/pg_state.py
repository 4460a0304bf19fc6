"""One connection to the shared PostgreSQL of the MES state stores, with the errors the callers expect.

The PostgreSQL stores of batch context, contextualized records and production counters
(``mes.state_dsn``; see docs/scaling.md) are used like their SQLite counterparts: synchronously, from the
event loop and the API's worker threads. Each holds one :class:`PgConnection`: one autocommit connection
behind a lock, opened lazily and opened again after it broke, so a restarted PostgreSQL costs the calls
made while it was down and nothing else (statements that may run twice are retried once on a new
connection; a write that must not, such as a counter sample with its deltas, fails once and its caller
retries it, as it does while the server is down). Every write of these stores is one statement
(atomic on its own in autocommit: a batch of records, a counter sample with its deltas, one
assertion), so no transaction block is ever left open.

Errors are translated to what the callers already handle for SQLite, so no service learns about
psycopg: a connection that fails or drops (:class:`psycopg.OperationalError`) is a passing error,
raised as :class:`~mes_adapter.errors.StateStoreUnavailableError` (an :class:`OSError`: ingest keeps
the data and retries, like a full disk); a value PostgreSQL refuses (:class:`psycopg.DataError`) is raised as
:class:`~mes_adapter.errors.MesInputError`, a :class:`ValueError` (a written value is quarantined, a
query parameter is the caller's 422). Anything else is a bug and propagates unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from mes_adapter.errors import MesInputError, StateStoreUnavailableError
from mes_adapter.pg_schema import Migration, migrate


class PgConnection:
    """A lazily (re)opened autocommit connection, one statement or transaction at a time."""

    def __init__(self, dsn: str, store: str, migrations: Sequence[Migration]) -> None:
        self._dsn = dsn
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        with self._lock, self._translated():
            migrate(self._connection(), store, migrations)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            # a bounded wait: the stores are used from the event loop
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
        return self._conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (empty for a statement without a result)."""
        return self._run(sql, params)[0]

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """:meth:`rows` of a statement that may safely run twice (a read, an insert that ignores
        conflicts): a connection a server restart cut fails its next statement, so it is tried once
        more on a new connection before the error is raised."""
        return self._again(sql, params)[0]

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """The row count of a statement that may safely run twice (see :meth:`read`)."""
        return self._again(sql, params)[1]

    def _again(self, sql: str, params: Sequence[Any]) -> tuple[list[tuple[Any, ...]], int]:
        try:
            return self._run(sql, params)
        except StateStoreUnavailableError:
            return self._run(sql, params)

    def _run(self, sql: str, params: Sequence[Any]) -> tuple[list[tuple[Any, ...]], int]:
        with self._lock, self._translated():
            cur = self._connection().execute(sql, params)  # type: ignore[arg-type]
            return (cur.fetchall() if cur.description else []), cur.rowcount

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            # the server went away (restart, failover): the next call opens a new connection
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            raise StateStoreUnavailableError(f"PostgreSQL: {exc}") from exc
        except psycopg.DataError as exc:
            raise MesInputError(f"PostgreSQL refused a value: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

