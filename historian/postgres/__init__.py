"""The PostgreSQL historian backend (the ``postgres`` extra: psycopg 3). TimescaleDB when present."""

from .store import PostgresHistorian

__all__ = ["PostgresHistorian"]
