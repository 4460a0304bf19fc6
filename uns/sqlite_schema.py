"""Schema versions of the SQLite files uns-hub keeps, and their migrations.

Every store file owns ``PRAGMA user_version``: version *n* means the scripts ``migrations[0..n-1]``
have run. Opening a file runs the scripts above its version in one ``BEGIN IMMEDIATE`` transaction
(all or nothing: a crash or a full disk mid-migration leaves the old version intact), and a file
written by a newer uns-hub (a version this code does not know) is refused with an error that says
what to do, instead of being written with an older idea of its tables. One store per file: the
version is the file's, so two stores never share one.

Why here and not in each store: the rules (transaction, refusal of newer files, one script per
version) are the same for the edge's command journal and every MES adapter store, and a store that
forgets one of them loses a user's data on upgrade.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from uns.errors import UnsError
from uns.sqlite_tx import write_transaction

#: a migration is SQL (one or more ``;``-separated statements) or a function of the connection, for the
#: steps SQL alone cannot express (rewriting JSON, back-filling from another table)
Migration = str | Callable[[sqlite3.Connection], None]


class SchemaVersionError(UnsError, RuntimeError):
    """The file was written by a newer uns-hub: its schema version is above what this code knows."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's version (0 for a new or unversioned file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration], *, store: str,
            found: int | None = None) -> int:
    """Bring ``conn`` to ``len(migrations)``; return the version it had before.

    ``store`` names the file in errors ("episode store", "command journal"). ``found`` overrides the
    version read from the file, for stores created before they carried a version (their caller
    recognises the old layout and says which version it is).
    """
    target = len(migrations)
    version = schema_version(conn) if found is None else found
    if version > target:
        raise SchemaVersionError(f"{store} has schema version {version}; this uns-hub knows up to {target} "
                                 "(was it written by a newer uns-hub? upgrade, or move the file away)")
    if version == target:
        return version
    with write_transaction(conn):  # one transaction: a step that fails leaves the file as it was
        for step in migrations[version:]:
            if callable(step):
                step(conn)
                continue
            for statement in step.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {target}")
    return version


__all__ = ["Migration", "SchemaVersionError", "migrate", "schema_version"]
