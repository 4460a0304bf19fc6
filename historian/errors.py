"""One exception root for the historian, so a caller can catch everything it raises in one place."""

from __future__ import annotations


class HistorianError(Exception):
    """Root of every error the historian raises on purpose."""


class SchemaVersionError(HistorianError):
    """The store was written by a schema this code cannot read or migrate (older without a step, or newer)."""


class QueryError(HistorianError, ValueError):
    """A query the historian refuses with a reason: bad range, unaligned interval, too many points."""


class UnknownTagError(QueryError, LookupError):
    """A query named a tag the historian has never stored a value for."""


class ValueEncodingError(HistorianError, ValueError):
    """A value of a type the historian does not store (it keeps numbers, booleans, strings and null)."""


class HistorianUnavailableError(HistorianError):
    """The backend cannot take the batch now and the on-disk buffer is full: the caller still holds it."""
