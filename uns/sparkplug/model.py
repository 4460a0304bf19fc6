"""Typed Python view of a Sparkplug B payload.

Plain slotted dataclasses rather than pydantic models: the codec builds and reads hundreds of
thousands of metrics per second, and the issue's target is to keep at least half of raw protobuf
speed. Values are plain Python: ints, floats, bools, str, bytes, lists for arrays, and the
:class:`DataSet` / :class:`Template` / ``dict[str, PropertyValue]`` types below. ``DateTime``
values are int milliseconds since the epoch (UTC), exactly as on the wire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .datatypes import DataType

#: Values of the ``Quality`` property (tck-id-payloads-propertyset-quality-value-value)
QUALITY_BAD = 0
QUALITY_GOOD = 192
QUALITY_STALE = 500
QUALITY_KEY = "Quality"


def now_ms() -> int:
    """Milliseconds since the epoch, UTC (tck-id-payloads-timestamp-in-UTC)."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class MetaData:
    is_multi_part: bool | None = None
    content_type: str | None = None
    size: int | None = None
    seq: int | None = None
    file_name: str | None = None
    file_type: str | None = None
    md5: str | None = None
    description: str | None = None


@dataclass(slots=True)
class PropertyValue:
    """One property: a basic value, a nested PropertySet (dict) or a PropertySetList (list of dicts)."""

    type: DataType
    value: Any = None
    is_null: bool = False


#: A PropertySet: ordered keys to values (tck-id-payloads-propertyset-keys-array-size holds by construction)
PropertySet = dict[str, PropertyValue]


@dataclass(slots=True)
class DataSet:
    columns: list[str]
    types: list[DataType]
    rows: list[list[Any]] = field(default_factory=list)


@dataclass(slots=True)
class Parameter:
    name: str
    type: DataType
    value: Any = None


@dataclass(slots=True)
class Template:
    """A template definition (``is_definition``, no ``template_ref``) or an instance of one."""

    metrics: list[Metric] = field(default_factory=list)
    parameters: list[Parameter] = field(default_factory=list)
    version: str | None = None
    template_ref: str | None = None
    is_definition: bool = False


@dataclass(slots=True)
class Metric:
    name: str | None = None
    value: Any = None
    datatype: DataType | None = None
    alias: int | None = None
    timestamp: int | None = None
    is_historical: bool = False
    is_transient: bool = False
    is_null: bool = False
    metadata: MetaData | None = None
    properties: PropertySet | None = None

    @property
    def quality(self) -> int:
        """The Sparkplug ``Quality`` property; GOOD (192) when absent, as the spec intends."""
        if self.properties:
            prop = self.properties.get(QUALITY_KEY)
            if prop is not None and isinstance(prop.value, int):
                return prop.value
        return QUALITY_GOOD


@dataclass(slots=True)
class Payload:
    metrics: list[Metric] = field(default_factory=list)
    timestamp: int | None = None
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None
