"""``uns.sqlite_tx.write_transaction``: the one transaction helper of every store, under SQLITE_FULL.

A full disk is provoked for real and deterministically with ``PRAGMA max_page_count`` (SQLite then
answers SQLITE_FULL exactly as for a full file system)."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from uns.sqlite_tx import is_disk_full, write_transaction


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    with write_transaction(conn):
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, blob BLOB)")
        conn.execute("INSERT INTO t VALUES (1, zeroblob(100))")
    return conn


def _fill_until_full(conn: sqlite3.Connection) -> sqlite3.OperationalError:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + 2}")
    with pytest.raises(sqlite3.OperationalError) as caught, write_transaction(conn):
        for k in range(2, 100):
            conn.execute("INSERT INTO t VALUES (?, zeroblob(4000))", (k,))
    return caught.value


def test_a_full_disk_raises_the_disk_error_not_a_failed_rollback(tmp_path: Path) -> None:
    conn = _db(tmp_path / "a.sqlite")
    error = _fill_until_full(conn)
    assert is_disk_full(error), error  # "database or disk is full", never "cannot rollback"
    assert "cannot rollback" not in str(error)
    assert not conn.in_transaction
    # nothing of the refused transaction stayed, what was committed before is there
    assert conn.execute("SELECT k FROM t").fetchall() == [(1,)]
    # space returns: the same connection writes again (no "transaction within a transaction")
    conn.execute("PRAGMA max_page_count=1000000")
    with write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (2, zeroblob(4000))")
    assert conn.execute("SELECT k FROM t").fetchall() == [(1,), (2,)]


def test_a_transaction_left_open_is_rolled_back_before_the_next_one(tmp_path: Path) -> None:
    conn = _db(tmp_path / "b.sqlite")
    conn.execute("BEGIN IMMEDIATE")  # what a COMMIT that failed half-way can leave behind
    conn.execute("INSERT INTO t VALUES (7, NULL)")
    with write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (8, NULL)")
    assert conn.execute("SELECT k FROM t").fetchall() == [(1,), (8,)]


def test_an_error_inside_rolls_back_and_is_raised_unchanged(tmp_path: Path) -> None:
    conn = _db(tmp_path / "c.sqlite")
    with pytest.raises(KeyError, match="ours"), write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (3, NULL)")
        raise KeyError("ours")
    assert not conn.in_transaction
    assert conn.execute("SELECT k FROM t").fetchall() == [(1,)]


def test_is_disk_full_knows_sqlite_and_the_file_system() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))


def test_no_store_writes_its_own_rollback() -> None:
    """One home for the rule: a hand-written ``ROLLBACK`` elsewhere is how the full-disk masking came back."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for package in ("uns", "historian", "edge_node", "broker", "mes_adapter", "simulator", "unshub"):
        for source in (root / package).rglob("*.py"):
            if source.name == "sqlite_tx.py":
                continue
            for number, line in enumerate(source.read_text().splitlines(), 1):
                if '"ROLLBACK"' in line or "'ROLLBACK'" in line:
                    offenders.append(f"{source.relative_to(root)}:{number}")
    assert offenders == []
