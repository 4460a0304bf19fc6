"""ISA-95 placement ⇄ Sparkplug ids ⇄ UNS mirror topics.

Default mapping (one edge node per line; README "Wire conventions"):
``group_id = <enterprise>:<site>``, ``edge_node_id = <area>:<line>``, ``device_id = <cell>``,
metric name = tag path with ``/`` folders. For one gateway serving many lines, ``gateway`` mode
keeps a fixed ``edge_node_id`` and moves the line into the device: ``device_id =
<area>:<line>:<cell>``. Both are reversible, which is why no ISA-95 name may contain ``:``.

The UNS mirror puts every metric on ``<enterprise>/<site>/<area>/<line>/<cell>/<path>``; node-level
metrics (no device) sit on the line: ``<enterprise>/<site>/<area>/<line>/<path>``. Reserved ``_``
segments hold non-tag data (``_context``, ``_mes``, ``_cmd``, ``_alarms``, ``_meta``).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator

from uns.sparkplug.errors import InvalidIdError
from uns.sparkplug.topic import validate_id

SEPARATOR = ":"
META = "_meta"
CONTEXT = "_context"
MES = "_mes"
CMD = "_cmd"
ALARMS = "_alarms"
RESERVED_SEGMENTS = frozenset({META, CONTEXT, MES, CMD, ALARMS})


def validate_isa95_name(value: str, level: str) -> str:
    """An ISA-95 level name must be a legal Sparkplug id, without ``:``, and not start with ``_``."""
    validate_id(value, level)
    if SEPARATOR in value:
        raise InvalidIdError(f"{level} {value!r} contains ':', which joins ISA-95 levels in Sparkplug ids")
    if value.startswith("_"):
        raise InvalidIdError(f"{level} {value!r} starts with '_', reserved for UNS data segments")
    if value.startswith("$"):
        raise InvalidIdError(f"{level} {value!r} starts with '$', reserved for broker topics")
    return value


class LinePath(BaseModel):
    """Where a production line sits in the ISA-95 hierarchy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enterprise: str
    site: str
    area: str
    line: str

    @field_validator("enterprise", "site", "area", "line")
    @classmethod
    def _valid(cls, value: str, info) -> str:  # type: ignore[no-untyped-def]
        return validate_isa95_name(value, info.field_name)

    @property
    def topic(self) -> str:
        return f"{self.enterprise}/{self.site}/{self.area}/{self.line}"


class EquipmentPath(BaseModel):
    """A line plus, optionally, a cell (work unit). ``cell=None`` is the line itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line: LinePath
    cell: str | None = None

    @field_validator("cell")
    @classmethod
    def _valid_cell(cls, value: str | None) -> str | None:
        return None if value is None else validate_isa95_name(value, "cell")

    @property
    def topic(self) -> str:
        return self.line.topic if self.cell is None else f"{self.line.topic}/{self.cell}"


class MappingMode(StrEnum):
    LINE_PER_EDGE_NODE = "line-per-edge-node"
    GATEWAY = "gateway"


class SparkplugIds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    group_id: str
    edge_node_id: str
    device_id: str | None = None


class NamespaceMapping(BaseModel):
    """How ISA-95 placement maps onto Sparkplug ids (configurable per edge node / host)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: MappingMode = MappingMode.LINE_PER_EDGE_NODE
    gateway_id: str | None = None
    #: prefix before ``<enterprise>`` on mirror topics, e.g. ``uns`` → ``uns/acme/...``; empty by default
    mirror_root: str = ""

    def to_sparkplug(self, equipment: EquipmentPath) -> SparkplugIds:
        line = equipment.line
        group = f"{line.enterprise}{SEPARATOR}{line.site}"
        if self.mode is MappingMode.LINE_PER_EDGE_NODE:
            return SparkplugIds(group_id=group, edge_node_id=f"{line.area}{SEPARATOR}{line.line}",
                                device_id=equipment.cell)
        if not self.gateway_id:
            raise ValueError("gateway mode needs gateway_id")
        device = f"{line.area}{SEPARATOR}{line.line}"
        if equipment.cell is not None:
            device += f"{SEPARATOR}{equipment.cell}"
        return SparkplugIds(group_id=group, edge_node_id=self.gateway_id, device_id=device)

    def from_sparkplug(self, group_id: str, edge_node_id: str, device_id: str | None) -> EquipmentPath:
        """Reverse mapping; raises ValueError for ids that do not follow the convention."""
        group = group_id.split(SEPARATOR)
        if len(group) != 2:
            raise ValueError(f"group_id {group_id!r} is not <enterprise>:<site>")
        if self.mode is MappingMode.LINE_PER_EDGE_NODE:
            edge = edge_node_id.split(SEPARATOR)
            if len(edge) != 2:
                raise ValueError(f"edge_node_id {edge_node_id!r} is not <area>:<line>")
            line = LinePath(enterprise=group[0], site=group[1], area=edge[0], line=edge[1])
            return EquipmentPath(line=line, cell=device_id)
        if device_id is None:
            raise ValueError(f"gateway mode: node {edge_node_id!r} metrics have no line")
        parts = device_id.split(SEPARATOR)
        if len(parts) not in (2, 3):
            raise ValueError(f"device_id {device_id!r} is not <area>:<line>[:<cell>]")
        line = LinePath(enterprise=group[0], site=group[1], area=parts[0], line=parts[1])
        return EquipmentPath(line=line, cell=parts[2] if len(parts) == 3 else None)

    # -- UNS mirror topics ------------------------------------------------------------------

    def _root(self, topic: str) -> str:
        return f"{self.mirror_root}/{topic}" if self.mirror_root else topic

    def mirror_topic(self, equipment: EquipmentPath, metric_name: str) -> str:
        """The retained JSON topic of one metric."""
        return self._root(f"{equipment.topic}/{metric_path_levels(metric_name)}")

    def meta_topic(self, equipment: EquipmentPath, metric_name: str) -> str:
        """The retained ``_meta`` sibling: ``<metric topic>/_meta``."""
        return f"{self.mirror_topic(equipment, metric_name)}/{META}"

    def line_topic(self, line: LinePath, segment: str, *rest: str) -> str:
        """A reserved per-line topic such as ``<line>/_context/batch`` or ``<line>/_mes/confirmation``."""
        if segment not in RESERVED_SEGMENTS:
            raise ValueError(f"{segment!r} is not a reserved UNS segment {sorted(RESERVED_SEGMENTS)}")
        return self._root("/".join((line.topic, segment, *rest)))

    def parse_line_topic(self, topic: str) -> tuple[LinePath, str, list[str]]:
        """Inverse of :meth:`line_topic`: ``(line, segment, rest)``."""
        if self.mirror_root:
            prefix = self.mirror_root + "/"
            if not topic.startswith(prefix):
                raise ValueError(f"topic {topic!r} is not under {self.mirror_root!r}")
            topic = topic[len(prefix):]
        parts = topic.split("/")
        if len(parts) < 5 or parts[4] not in RESERVED_SEGMENTS:
            raise ValueError(f"topic {topic!r} is not <enterprise>/<site>/<area>/<line>/_<segment>/...")
        line = LinePath(enterprise=parts[0], site=parts[1], area=parts[2], line=parts[3])
        return line, parts[4], parts[5:]


def metric_path_levels(metric_name: str) -> str:
    """A metric name as topic levels: ``/`` folders kept, MQTT-illegal characters replaced.

    Empty folders collapse, ``+``/``#``/NUL become ``_`` and a leading ``_``/``$`` gets a ``~``
    prefix so a tag can never land in a reserved segment or the broker's ``$`` space.
    """
    levels = []
    for level in metric_name.split("/"):
        if not level:
            continue
        level = level.replace("+", "_").replace("#", "_").replace("\x00", "_")
        if level[0] in "_$":
            level = "~" + level
        levels.append(level)
    if not levels:
        raise ValueError(f"metric name {metric_name!r} has no usable topic level")
    return "/".join(levels)
