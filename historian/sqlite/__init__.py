"""The embedded historian backend (the default): SQLite, one file per UTC day."""

from .store import RetentionPolicy, SqliteHistorian

__all__ = ["RetentionPolicy", "SqliteHistorian"]
