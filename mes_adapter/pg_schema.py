"""Schema versions of the adapter's stores kept in PostgreSQL (shared by several adapter instances).

The same rules as ``uns.sqlite_schema`` for SQLite files: version *n* means the scripts
``migrations[0..n-1]`` have run; opening runs the scripts above the stored version in one transaction
(all or nothing); a version above what this code knows is refused before anything is written. Each store
has its row in ``mes_schema`` (one database holds several stores), and an advisory lock makes two
instances starting together migrate once.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import psycopg

from uns.sqlite_schema import SchemaVersionError

Migration = str | Callable[[psycopg.Connection], None]


def migrate(conn: psycopg.Connection, store: str, migrations: Sequence[Migration]) -> int:
    """Bring ``store`` to ``len(migrations)``; return the version it had before."""
    target = len(migrations)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(f"uns-hub {store}".encode()),))
        conn.execute("CREATE TABLE IF NOT EXISTS mes_schema (store text PRIMARY KEY, version integer NOT NULL)")
        row = conn.execute("SELECT version FROM mes_schema WHERE store = %s", (store,)).fetchone()
        version = row[0] if row else 0
        if version > target:
            raise SchemaVersionError(
                f"the PostgreSQL {store} has schema version {version}; this uns-hub knows up to {target} "
                "(was it written by a newer uns-hub? upgrade every adapter instance sharing it)")
        for step in migrations[version:]:
            if callable(step):
                step(conn)
            else:
                conn.execute(step)  # type: ignore[arg-type]
        conn.execute("INSERT INTO mes_schema VALUES (%s, %s) ON CONFLICT (store) DO UPDATE SET version = %s",
                     (store, target, target))
    return version
