"""One write transaction on an autocommit SQLite connection, correct after a full disk.

Every store of uns-hub (the edge's buffer and command journal, the audit chain, the historian, the MES
adapter's files) opens its connections with ``isolation_level=None`` and writes inside ``BEGIN
IMMEDIATE`` … ``COMMIT``. The care is for the routine fault of a full disk:

* SQLite may roll a transaction back by itself when a statement fails with ``SQLITE_FULL``; a
  second ``ROLLBACK`` then fails with "cannot rollback - no transaction is active" and, raised from
  an ``except`` block, *hides the error that mattered* (the log said "cannot rollback" for minutes
  while the disk was full);
* a ``COMMIT`` that fails may leave the transaction open, and every later ``BEGIN`` then fails with
  "cannot start a transaction within a transaction": the store would never work again after the
  disk is freed.

So a failed ``COMMIT`` is rolled back, a transaction left open is rolled back before the next
``BEGIN``, and a rollback that fails itself is ignored in favour of the error that caused it.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from types import TracebackType

#: SQLite's primary result code for "database or disk is full"
SQLITE_FULL = 13


class write_transaction:  # noqa: N801 - used like a function: ``with write_transaction(conn):``
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or a rollback) on ``conn``; see the module docstring."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        if self._conn.in_transaction:  # left open by an earlier failed COMMIT
            rollback_quietly(self._conn)
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            rollback_quietly(self._conn)
            return
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            rollback_quietly(self._conn)
            raise


def rollback_quietly(conn: sqlite3.Connection) -> None:
    """Roll back what is open, if anything; never raise (the caller is already handling an error)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def is_disk_full(exc: BaseException) -> bool:
    """True for SQLite's "database or disk is full" and the file system's ENOSPC/EDQUOT."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) is not None:
        return exc.sqlite_errorcode & 0xFF == SQLITE_FULL
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.Error) and "disk is full" in str(exc)


__all__ = ["SQLITE_FULL", "is_disk_full", "rollback_quietly", "write_transaction"]
