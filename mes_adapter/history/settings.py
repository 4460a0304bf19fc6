"""``historian:`` in adapter.yaml: which backend, where, and how long values are kept."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from historian import HistorianStore, RetentionPolicy, SqliteHistorian

_DAY_MS = 86_400_000


class HistorianBackend(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


class HistorianSettings(BaseModel):
    """On by default: an embedded SQLite historian under ``<data_dir>/historian``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: keep every value the host receives (false: no historian, `/api/history` answers 503)
    enabled: bool = True
    #: `sqlite` (embedded day files) or `postgres` (needs the `postgres` extra)
    backend: HistorianBackend = HistorianBackend.SQLITE
    #: the SQLite historian's directory; default `<data_dir>/historian`
    path: Path | None = None
    #: the PostgreSQL connection string (backend `postgres`), e.g. postgresql://user:pw@host/db
    dsn: str | None = None
    #: PostgreSQL outage buffer directory; default `<data_dir>/historian-buffer`
    buffer_dir: Path | None = None
    #: keep values this many days (whole days are dropped once wholly older)
    retention_days: float = Field(365.0, gt=0)
    #: and drop the oldest days while the store is larger than this (null: no size limit)
    max_bytes: int | None = Field(None, gt=0)
    #: how often whole days outside the retention policy are dropped (and once at start)
    retention_check_s: float = Field(3600.0, gt=0)
    #: at most this many raw points in one answer (more: 400, ask for aggregates)
    max_points: int = Field(100_000, ge=1, le=10_000_000)
    #: batches queued for the store before the host is held back (back-pressure, never dropped)
    queue_batches: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> HistorianSettings:
        if self.enabled and self.backend is HistorianBackend.POSTGRES and not self.dsn:
            raise ValueError("historian.backend postgres needs historian.dsn")
        return self

    @property
    def max_age_ms(self) -> int:
        return int(self.retention_days * _DAY_MS)


def open_store(settings: HistorianSettings, data_dir: Path) -> HistorianStore:
    """The configured store (the PostgreSQL backend is imported only when chosen: it needs psycopg)."""
    if settings.backend is HistorianBackend.POSTGRES:
        from historian.postgres import PostgresHistorian

        assert settings.dsn is not None
        return PostgresHistorian(settings.dsn, settings.buffer_dir or data_dir / "historian-buffer",
                                 max_age_ms=settings.max_age_ms, max_bytes=settings.max_bytes)
    policy = RetentionPolicy(settings.max_age_ms, settings.max_bytes)
    return SqliteHistorian(settings.path or data_dir / "historian", policy)
