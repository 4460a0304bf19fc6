"""Opening the adapter's SQLite files the same way everywhere.

WAL lets the REST API read while the host writes; ``synchronous`` is FULL for files whose loss would
break a promise to the MES (outbox, context history) and NORMAL for high-rate data (records), where
WAL+NORMAL still survives a process crash and only risks the last transactions on power loss.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from uns.sqlite_tx import write_transaction


def open_db(path: str | Path, *, durable: bool = True) -> sqlite3.Connection:
    """Open (creating parents) a SQLite file in WAL mode; ``":memory:"`` is allowed for tests."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


#: ``with transaction(conn):`` — BEGIN IMMEDIATE … COMMIT, safe after a full disk (one home: uns.sqlite_tx)
transaction = write_transaction
