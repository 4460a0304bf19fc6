"""One historian test module, two backends: embedded SQLite and a real PostgreSQL started here."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from historian import HistorianStore, RetentionPolicy, SqliteHistorian
from tests.support.postgres import PostgresServer, postgres_bin_dir

_db_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    if postgres_bin_dir() is None:
        pytest.fail("PostgreSQL is missing: scripts/test installs it (apt-get install postgresql)")
    server = PostgresServer(tmp_path_factory.mktemp("postgres-logs"))
    try:
        server.start()
        yield server
    finally:
        server.close()


class Backend:
    """Opens (and reopens) one backend's store over the same place: a directory or a fresh database."""

    def __init__(self, name: str, tmp_path: Path, server: PostgresServer | None) -> None:
        self.name = name
        self.tmp_path = tmp_path
        self.server = server
        self.opened: list[HistorianStore] = []
        if server is not None:
            self.database = f"hist_{next(_db_numbers)}"
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.database}")
                conn.execute(f"CREATE DATABASE {self.database}")

    @property
    def dsn(self) -> str:
        assert self.server is not None
        return self.server.dsn.replace("dbname=postgres", f"dbname={self.database}")

    def open(self, *, max_age_ms: int | None = None, max_bytes: int | None = None, **kwargs) -> HistorianStore:
        if self.name == "sqlite":
            store: HistorianStore = SqliteHistorian(self.tmp_path / "history", RetentionPolicy(max_age_ms, max_bytes))
        else:
            from historian.postgres import PostgresHistorian

            store = PostgresHistorian(self.dsn, self.tmp_path / "pg-buffer", max_age_ms=max_age_ms,
                                      max_bytes=max_bytes, **kwargs)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    server = request.getfixturevalue("pg_server") if request.param == "postgres" else None
    b = Backend(request.param, tmp_path, server)
    try:
        yield b
    finally:
        b.close_all()


@pytest.fixture
def store(backend: Backend) -> HistorianStore:
    return backend.open()


OpenStore = Callable[..., HistorianStore]
