"""One historian test module, two backends: embedded SQLite and a real PostgreSQL started here."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from historian import HistorianStore, RetentionPolicy, SqliteHistorian
from tests.support.postgres import PostgresServer, fresh_database, on_backend

_db_numbers = itertools.count(1)


class Backend:
    """Opens (and reopens) one backend's store over the same place: a directory or a fresh database."""

    def __init__(self, name: str, tmp_path: Path, server: PostgresServer | None) -> None:
        self.name = name
        self.tmp_path = tmp_path
        self.server = server
        self.opened: list[HistorianStore] = []
        if server is not None:
            self.database = f"hist_{next(_db_numbers)}"
            self._dsn = fresh_database(server, self.database)

    @property
    def dsn(self) -> str:
        assert self.server is not None
        return self._dsn

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
    with on_backend(request, lambda name, server: Backend(name, tmp_path, server)) as b:
        yield b


@pytest.fixture
def store(backend: Backend) -> HistorianStore:
    return backend.open()


OpenStore = Callable[..., HistorianStore]
