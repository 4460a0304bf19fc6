"""The embedded store's layout and its schema version.

``historian.sqlite`` (the catalog) holds the schema version and the tags table (each tag's identity once;
rows carry a small integer). Each UTC day is its own file ``day-YYYYMMDD.sqlite`` with that day's values
and their minute and hour rollups, so retention deletes whole files (space goes back to the file system
at once, no VACUUM) and a day's values and rollups commit in one transaction.

Values live in a WITHOUT ROWID table clustered on (tag, source time, n): a range query of one tag reads
contiguous pages and there is no second index. ``n`` is the partition's insertion counter, so two values
of one tag with the same source millisecond are both kept (never merged), in receipt order. Times are
integer ms; receipt time is stored as its (small, usually one- or two-byte) offset from source time;
quality, is_historical and the Sparkplug datatype share one small integer (``f``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping

from ..migrations import plan

SCHEMA_VERSION = 1
#: steps from version n to n+1 (none yet: version 1 is the first)
MIGRATIONS: Mapping[int, Callable[[sqlite3.Connection], None]] = {}

CATALOG_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY,
    grp TEXT NOT NULL, edge TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL, path TEXT NOT NULL,
    UNIQUE (grp, edge, device, metric, path)
);
"""

_ROLLUP_COLUMNS = """
    tag_id INTEGER NOT NULL, t INTEGER NOT NULL,
    fa INTEGER NOT NULL, la INTEGER NOT NULL, ln REAL, s INTEGER NOT NULL, c INTEGER NOT NULL,
    mn REAL, mx REAL, fv, fms INTEGER, lv, lms INTEGER, ig REAL, w INTEGER NOT NULL,
    PRIMARY KEY (tag_id, t)
"""

PARTITION_DDL = f"""
CREATE TABLE IF NOT EXISTS v (
    tag_id INTEGER NOT NULL, ts INTEGER NOT NULL, n INTEGER NOT NULL,
    rx INTEGER NOT NULL, v, f INTEGER NOT NULL, sc INTEGER NOT NULL,
    PRIMARY KEY (tag_id, ts, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minutes ({_ROLLUP_COLUMNS}) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hours ({_ROLLUP_COLUMNS}) WITHOUT ROWID;
"""


#: WAL pages between automatic checkpoints while batches are small (SQLite's default, 4 MiB): at a
#: plant's steady rate the writer is idle between small batches, each of which rewrites whole pages,
#: so a rarer checkpoint would only let the log fill with copies of the same pages (it filled an
#: 8 MiB data disk within a minute at a few values per second)
CHECKPOINT_PAGES_STEADY = 1000
#: …and while the writer catches up (batches of ``LARGE_BATCH`` values or more): each batch touches
#: about one page per tag, and checkpointing every 64 MiB writes each hot page to the database file
#: once for many batches (measured: ~35 % less time per value at 1,000 tags, bench/historian_ingest.py)
CHECKPOINT_PAGES_CATCHING_UP = 16384
LARGE_BATCH = 10_000


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a batch the historian acknowledged survives a power cut (the host then forgets it)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-32000")
    conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES_STEADY}")
    # the log shrinks back to 4 MiB after a checkpoint instead of keeping its largest size on disk
    conn.execute("PRAGMA journal_size_limit=4194304")
    return conn


def open_catalog(path: str, *, migrations: Mapping[int, Callable[[sqlite3.Connection], None]] = MIGRATIONS,
                 target: int = SCHEMA_VERSION) -> sqlite3.Connection:
    """Open (creating, or migrating step by step) the catalog; refuse an unknown or newer version."""
    conn = _connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            conn.executescript(f"BEGIN IMMEDIATE; {CATALOG_DDL}; "
                               f"INSERT INTO meta VALUES ('schema_version', '{int(target)}'); COMMIT;")
            return conn
        found = None
        if "meta" in tables:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            found = int(row[0]) if row else None
        for version in plan(found, target, migrations, path):
            conn.execute("BEGIN IMMEDIATE")
            migrations[version](conn)
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version + 1),))
            conn.execute("COMMIT")
        return conn
    except BaseException:
        conn.close()
        raise


def open_partition(path: str, *, target: int = SCHEMA_VERSION) -> sqlite3.Connection:
    """One day's file; its version is SQLite's ``user_version`` (0 only while it is being created)."""
    conn = _connect(path)
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found == 0:
            conn.executescript(f"BEGIN IMMEDIATE; {PARTITION_DDL}; PRAGMA user_version={int(target)}; COMMIT;")
        else:
            plan(found, target, {}, path)  # partitions have no steps yet: any other version is refused
        return conn
    except BaseException:
        conn.close()
        raise
