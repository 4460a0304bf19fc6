"""The historian: every value the host receives, kept at full resolution with its quality and identity.

A storage library (it imports only ``uns``; services use it). One port (``HistorianStore``), two
backends: embedded SQLite day files (``historian.sqlite``, the default) and PostgreSQL, with
TimescaleDB when the extension is there (``historian.postgres``, needs the ``postgres`` extra).
``HistorianWriter`` feeds a store from asyncio with back-pressure: a full queue makes ``put`` wait, it
never drops a value. See docs/historian.md.
"""

from .errors import (
    HistorianError,
    HistorianUnavailableError,
    QueryError,
    SchemaVersionError,
    UnknownTagError,
    ValueEncodingError,
)
from .model import Aggregate, Gap, Quality, Sample, TagId, Value
from .port import HistorianStore
from .sqlite import RetentionPolicy, SqliteHistorian
from .writer import HistorianWriter

__all__ = [
    "Aggregate", "Gap", "HistorianError", "HistorianStore", "HistorianUnavailableError", "HistorianWriter",
    "QueryError", "Quality", "RetentionPolicy", "Sample", "SchemaVersionError", "SqliteHistorian", "TagId",
    "UnknownTagError", "Value", "ValueEncodingError",
]
