"""uns.sqlite_schema: the one migration runner of every store file (real SQLite files)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from uns.sqlite_schema import SchemaVersionError, migrate, schema_version

V1 = "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL); INSERT INTO item (name) VALUES ('kept')"
V2 = "ALTER TABLE item ADD COLUMN qty REAL NOT NULL DEFAULT 0"


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_a_new_file_runs_every_script_and_an_old_one_only_the_missing_ones(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    assert migrate(_open(path), [V1], store="test store") == 0
    conn = _open(path)  # a v1 file opened by v2 code: only V2 runs, the v1 row survives
    assert migrate(conn, [V1, V2], store="test store") == 1
    assert schema_version(conn) == 2
    assert conn.execute("SELECT id, name, qty FROM item").fetchall() == [(1, "kept", 0.0)]
    assert migrate(conn, [V1, V2], store="test store") == 2  # nothing left to do


def test_a_file_from_a_newer_uns_hub_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    migrate(_open(path), [V1, V2], store="test store")
    with pytest.raises(SchemaVersionError, match="test store has schema version 2; this uns-hub knows up to 1"):
        migrate(_open(path), [V1], store="test store")
    assert schema_version(_open(path)) == 2


def test_a_failing_step_rolls_the_whole_migration_back(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    migrate(_open(path), [V1], store="test store")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE item SET qty = 5")
        raise RuntimeError("disk full in the middle")

    conn = _open(path)
    with pytest.raises(RuntimeError, match="disk full"):
        migrate(conn, [V1, V2, broken], store="test store")
    assert not conn.in_transaction
    assert schema_version(conn) == 1  # neither V2's column nor the update happened
    assert [r[1] for r in conn.execute("PRAGMA table_info(item)")] == ["id", "name"]


def test_found_overrides_the_version_of_a_file_from_before_versioning(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    conn = _open(path)
    conn.executescript(V1)  # a file of the first layout, written before stores carried a version
    assert migrate(conn, [V1, V2], store="test store", found=1) == 1
    assert conn.execute("SELECT name, qty FROM item").fetchall() == [("kept", 0.0)]
