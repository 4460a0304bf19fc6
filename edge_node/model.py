"""The vocabulary between the edge node's parts: what the OPC UA side hands the Sparkplug side.

The OPC UA source and validation produce :class:`MetricUpdate` and device up/down events; the
Sparkplug :mod:`edge_node.session` consumes them. Neither side knows the other's library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, PropertySet


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    """A metric declared in a birth. ``device_id=None`` means a node-level metric."""

    device_id: str | None
    name: str
    datatype: DataType
    unit: str | None = None
    eng_low: float | None = None
    eng_high: float | None = None
    description: str | None = None
    writable: bool = False


@dataclass(slots=True)
class MetricUpdate:
    """One validated value change, ready for Sparkplug.

    ``timestamp`` is the OPC UA SourceTimestamp in ms UTC. ``value=None`` with ``is_null`` for Bad
    quality; ``properties`` carries ``Quality`` / ``StatusCode`` / ``FutureTimestamp`` as decided in
    :mod:`uns.conventions`.
    """

    device_id: str | None
    name: str
    value: object
    timestamp: int
    is_null: bool = False
    properties: PropertySet | None = None
    is_historical: bool = False
    #: monotonically increasing id given when the update is accepted (store-and-forward key)
    seq_id: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceOnline:
    """The source of a device (its OPC UA server) is reachable: (re)birth it with ``current`` values."""

    device_id: str
    current: list[MetricUpdate] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TemplatesDefined:
    """The template definitions the NBIRTH declares (``_types_/<name>`` metrics, built by
    :mod:`edge_node.templates` from the types read off the server). Sent each time the source has
    read the types; a set whose versions differ from the last one (a type changed on the server)
    makes a born session rebirth with the new definitions."""

    definitions: tuple[Metric, ...]


@dataclass(frozen=True, slots=True)
class DeviceOffline:
    """The source of a device is gone: publish DDEATH and hold its values until it is back."""

    device_id: str
    reason: str = ""
