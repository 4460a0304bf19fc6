"""Whose fault is it? Errors of the Sparkplug layer, named after h11's split.

``RemoteProtocolError`` and its subclasses mean a *peer* broke Sparkplug (bad bytes, an alias never
born, a wrong topic): a service counts them, logs the offending topic and goes on, and a host may
answer with a rebirth request. ``LocalProtocolError`` means *our* code asked for something the spec
forbids (a seq on an NDEATH, an Int8 of 300): a bug to fix, never a peer's doing.
"""

from __future__ import annotations

from uns.errors import UnsError


class SparkplugError(UnsError):
    """Base of every error raised by :mod:`uns.sparkplug`."""


class RemoteProtocolError(SparkplugError):
    """A peer sent something that breaks Sparkplug B 3.0."""


class LocalProtocolError(SparkplugError):
    """Our own code tried to produce something that breaks Sparkplug B 3.0."""


class InvalidTopicError(RemoteProtocolError, ValueError):
    """A topic is not a Sparkplug B 3.0 topic."""


class InvalidIdError(ValueError, SparkplugError):
    """A group, edge node, device or host id has a character Sparkplug forbids."""


class MalformedPayloadError(RemoteProtocolError):
    """The bytes are not a Sparkplug B protobuf payload, or violate its structure."""


class DataSetError(MalformedPayloadError):
    """A DataSet whose columns, types and rows do not agree (the message names the metric and the row).

    Its own class so a host can count it apart from other malformed payloads: a table that a PLC
    program or a gateway built wrong is a different fault to chase than corrupt bytes.
    """


class UnknownDataTypeError(RemoteProtocolError):
    """A datatype code outside the Sparkplug 3.0 DataType enum, or not allowed where it appears."""


class UnknownAliasError(RemoteProtocolError):
    """A DATA or CMD metric names an alias (or a name) that no birth declared."""


class DataTypeMismatchError(RemoteProtocolError):
    """A metric's value field does not fit the datatype declared in its birth."""


class EncodeError(LocalProtocolError, ValueError):
    """A Python value cannot be encoded as the requested Sparkplug datatype."""
