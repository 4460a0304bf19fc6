"""The OPC UA side of :mod:`simulator.structures`: types, variables and faceplate objects on asyncua.

Type, encoding and instance node ids are fixed strings (``Types/<Name>``, ``Types/<Name>/Binary``),
so a server rebuilt after a restart has the same ids and a client's loaded structure classes stay
valid. The shell writes a structure only when its value changed, at the tick that changed it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua
from asyncua.common.manage_nodes import create_data_type, create_encoding
from asyncua.common.structures104 import load_data_type_definitions, new_struct_field

from simulator.config import SimulatorConfig
from simulator.errors import SimulatorError
from simulator.faults import Sample
from simulator.structures import (
    FACEPLATE_MEMBERS,
    FACEPLATE_TYPE,
    STRUCTS,
    StructSpec,
    faceplate_member_path,
    faceplate_path,
    structure_status,
    structure_values,
    structure_variables,
)

_BUILTINS: dict[str, ua.VariantType] = {
    "Boolean": ua.VariantType.Boolean, "Int32": ua.VariantType.Int32, "UInt32": ua.VariantType.UInt32,
    "Int64": ua.VariantType.Int64, "Float": ua.VariantType.Float, "Double": ua.VariantType.Double,
    "String": ua.VariantType.String, "DateTime": ua.VariantType.DateTime,
}
_BAD_SEVERITY = 0x80000000
_ZERO: dict[str, Any] = {"Double": 0.0, "String": ""}
_SPECS: dict[str, StructSpec] = {spec.name: spec for spec in STRUCTS}


def _field_type(datatype: str, ns: int) -> ua.NodeId:
    if datatype in _BUILTINS:
        return ua.NodeId(_BUILTINS[datatype].value, 0)
    return ua.NodeId(_SPECS[datatype].node_id, ns)


async def _add_struct(server: Server, ns: int, spec: StructSpec) -> None:
    """asyncua's ``new_struct`` with fixed ids for the type and its binary encoding."""
    dtype = await create_data_type(server.nodes.base_structure_type, ua.NodeId(spec.node_id, ns),
                                   ua.QualifiedName(spec.name, ns), spec.description or None)
    encoding = await create_encoding(dtype, ua.NodeId(f"{spec.node_id}/Binary", ns),
                                     ua.QualifiedName("Default Binary", 0))
    definition = ua.StructureDefinition()
    definition.BaseDataType = server.nodes.base_structure_type.nodeid
    definition.StructureType = ua.StructureType.Structure
    definition.DefaultEncodingId = encoding.nodeid
    definition.Fields = [new_struct_field(f.name, _field_type(f.datatype, ns), array=f.array,
                                          description=f.description) for f in spec.fields]
    await dtype.write_data_type_definition(definition)


def _field_names(cls: Any) -> list[str] | None:
    """The fields of a class asyncua generated (a dataclass), None for anything else."""
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else None


def to_extension_object(spec: StructSpec, value: dict[str, Any]) -> Any:
    """A structure value (a dict by field name) as the class asyncua generated for its type."""
    cls = getattr(ua, spec.name)
    kwargs = {}
    for field in spec.fields:
        item = value[field.name]
        nested = _SPECS.get(field.datatype)
        if nested is not None:
            item = [to_extension_object(nested, v) for v in item] if field.array else to_extension_object(nested, item)
        kwargs[field.name] = item
    return cls(**kwargs)


async def _add_type_member(faceplate_type: Any, ns: int, member: str) -> None:
    """A Double variable declaration of ``CellFaceplateType`` (instantiated with each new object)."""
    var = await faceplate_type.add_variable(
        ua.NodeId(f"Types/{FACEPLATE_TYPE}/{member}", ns), ua.QualifiedName(member, ns),
        ua.Variant(0.0, ua.VariantType.Double), datatype=ua.NodeId(ua.VariantType.Double.value))
    await var.set_modelling_rule(True)


def _variant(spec: StructSpec, array: bool, value: Any) -> ua.Variant:
    if array:
        return ua.Variant([to_extension_object(spec, row) for row in value], ua.VariantType.ExtensionObject)
    return ua.Variant(to_extension_object(spec, value), ua.VariantType.ExtensionObject)


class StructureShell:
    """Adds the structured variables and faceplates to one asyncua server and keeps them current."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._variables = structure_variables(config)
        self._written: dict[str, tuple[Any, int]] = {}  # path -> (value, StatusCode) as written
        self._faceplates: dict[str, str] = {}  # faceplate member path -> mirrored tag path
        #: Double members added to CellFaceplateType while running (:meth:`add_faceplate_member`), kept
        #: across a server restart like a PLC download; each holds 0.0 until a client writes it
        self.added_members: list[str] = []
        #: writable faceplate member path -> the cell tag a client's write to it goes to
        self.writable_faceplates: dict[str, str] = {}
        self._member_values: dict[str, Any] = {}  # faceplate member path -> the value the shell wrote last
        self._ns = 0

    async def add_nodes(self, server: Server, ns: int, parents: dict[str, Any], samples: dict[str, Sample],
                        writable: Collection[str] = ()) -> None:
        """Create the types, then one variable per structure and one faceplate object per cell.

        A faceplate member whose cell tag is in ``writable`` is writable too: a client's write to it
        is a write to that tag (:attr:`writable_faceplates`, pulled into the model by the server)."""
        self._ns = ns
        self._written = {}
        for spec in STRUCTS:
            await _add_struct(server, ns, spec)
        # the Python classes asyncua encodes values with; skipped when already loaded in this process,
        # so first drop a class of the same name another server in this process generated with other
        # fields (asyncua's registry is process-wide: tests run several servers in one process)
        for spec in STRUCTS:
            existing = getattr(ua, spec.name, None)
            if existing is not None and _field_names(existing) != [f.name for f in spec.fields]:
                delattr(ua, spec.name)
        await load_data_type_definitions(server)
        faceplate_type = await server.nodes.base_object_type.add_object_type(
            ua.NodeId(f"Types/{FACEPLATE_TYPE}", ns), ua.QualifiedName(FACEPLATE_TYPE, ns))
        for member, (datatype, _tag) in FACEPLATE_MEMBERS.items():
            var = await faceplate_type.add_variable(
                ua.NodeId(f"Types/{FACEPLATE_TYPE}/{member}", ns), ua.QualifiedName(member, ns),
                ua.Variant(_ZERO[datatype], _BUILTINS[datatype]),
                datatype=ua.NodeId(_BUILTINS[datatype].value))
            await var.set_modelling_rule(True)
        for member in self.added_members:
            await _add_type_member(faceplate_type, ns, member)
        values = structure_values(self.config, samples)
        for path, (spec, array) in self._variables.items():
            folder, _, name = path.rpartition("/")
            var = await parents[folder].add_variable(
                ua.NodeId(path, ns), ua.QualifiedName(name, ns), _variant(spec, array, values[path]),
                datatype=ua.NodeId(spec.node_id, ns))
            if array:
                await var.write_value_rank(ua.ValueRank.OneDimension)
                await var.write_array_dimensions([0])
        line = self.config.line
        self._faceplates = {}
        self.writable_faceplates = {}
        self._member_values = {}
        for cell in self.config.cells:
            await parents[f"{line}/{cell.name}"].add_object(
                ua.NodeId(faceplate_path(line, cell.name), ns), ua.QualifiedName("Faceplate", ns),
                objecttype=faceplate_type.nodeid)
            for member, (_datatype, tag) in FACEPLATE_MEMBERS.items():
                path, tag_path = faceplate_member_path(line, cell.name, member), f"{line}/{cell.name}/{tag}"
                self._faceplates[path] = tag_path
                if tag_path in writable:
                    self.writable_faceplates[path] = tag_path
                    await server.get_node(ua.NodeId(path, ns)).set_writable()
            for member in self.added_members:
                await server.get_node(ua.NodeId(faceplate_member_path(line, cell.name, member), ns)).set_writable()

    async def add_faceplate_member(self, server: Server, member: str) -> None:
        """A live change of ``CellFaceplateType``: a new Double variable ``member`` on the type and on
        every cell's faceplate (0.0, Good), as a PLC download that extends a function block does. The
        type keeps its node id; a client sees the change only by reading the type again."""
        if not member or any(c in member for c in "/.#+") or member in FACEPLATE_MEMBERS \
                or member in self.added_members:
            raise SimulatorError(f"{member!r} cannot be a new faceplate member: it must be a new name "
                                 f"without '/', '.', '#' or '+' (members now: "
                                 f"{[*FACEPLATE_MEMBERS, *self.added_members]})")
        ns = self._ns
        await _add_type_member(server.get_node(ua.NodeId(f"Types/{FACEPLATE_TYPE}", ns)), ns, member)
        now = datetime.now(UTC)
        for cell in self.config.cells:
            line = self.config.line
            node_id = ua.NodeId(faceplate_member_path(line, cell.name, member), ns)
            var = await server.get_node(ua.NodeId(faceplate_path(line, cell.name), ns)).add_variable(
                node_id, ua.QualifiedName(member, ns), ua.Variant(0.0, ua.VariantType.Double),
                datatype=ua.NodeId(ua.VariantType.Double.value))
            await var.set_writable()
            await server.write_attribute_value(node_id, ua.DataValue(
                Value=ua.Variant(0.0, ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now))
        self.added_members.append(member)

    def client_writes(self, server: Server) -> dict[str, tuple[str, Any]]:
        """Writable faceplate members a client wrote since the shell last wrote them: tag path ->
        (member path, value). Each write is reported once (the tag then mirrors it back)."""
        out: dict[str, tuple[str, Any]] = {}
        for member, tag in self.writable_faceplates.items():
            if member not in self._member_values:
                continue
            datavalue = server.read_attribute_value(ua.NodeId(member, self._ns))
            value = datavalue.Value.Value if datavalue.Value is not None else None
            if value != self._member_values[member]:
                self._member_values[member] = value
                out[tag] = (member, value)
        return out

    async def write(self, server: Server, samples: dict[str, Sample], changed: dict[str, Sample]) -> None:
        """Write every structure whose value changed, and the faceplate members whose tag changed.

        ``samples`` is every published sample (the structures are built from all of them);
        ``changed`` the ones this tick changed (a faceplate member mirrors its tag's DataValue).
        """
        now = datetime.now(UTC)
        statuses = structure_status(self.config, samples)
        for path, value in structure_values(self.config, samples).items():
            status = statuses[path]
            if self._written.get(path) == (value, status):
                continue
            spec, array = self._variables[path]
            bad = _BAD_SEVERITY & status == _BAD_SEVERITY
            await server.write_attribute_value(ua.NodeId(path, self._ns), ua.DataValue(
                Value=ua.Variant() if bad else _variant(spec, array, value), StatusCode=ua.StatusCode(status),
                SourceTimestamp=now, ServerTimestamp=now))
            self._written[path] = (value, status)
        for member_path, tag in self._faceplates.items():
            sample = changed.get(tag)
            if sample is None:
                continue
            datatype = _BUILTINS[FACEPLATE_MEMBERS[member_path.rpartition(".")[2]][0]]
            variant = ua.Variant() if sample.value is None else ua.Variant(sample.value, datatype)
            self._member_values[member_path] = sample.value
            await server.write_attribute_value(ua.NodeId(member_path, self._ns), ua.DataValue(
                Value=variant, StatusCode=ua.StatusCode(sample.status),
                SourceTimestamp=datetime.fromtimestamp(sample.source_ts, tz=UTC), ServerTimestamp=now))

    @property
    def current(self) -> dict[str, Any]:
        """What the server holds now, as plain dicts (path -> value, None while Bad): the tests' oracle."""
        return {path: None if _BAD_SEVERITY & status == _BAD_SEVERITY else value
                for path, (value, status) in self._written.items()}

    @property
    def statuses(self) -> dict[str, int]:
        """The StatusCode each structure was last written with."""
        return {path: status for path, (_value, status) in self._written.items()}
