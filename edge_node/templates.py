"""OPC UA structures and object types as Sparkplug Templates and DataSets. Pure: no I/O.

The OPC UA side arrives as :class:`TypeShape` values (built from a ``StructureDefinition`` with
:func:`shape_from_structure`, or from an ObjectType's instance declarations with
:func:`shape_from_object_type`); whoever reads the server builds them, this module only maps. The
decisions, stated once (``docs/templates.md`` explains them for users):

* **Names.** A template is named after the type's browse name. When two described types share a
  browse name (``CellStatus`` in two namespaces), *each* of them is named
  ``<name>@<8 hex of sha256(namespace URI ";" node id without its index)>``: the rule depends only on the types
  present, not on the order they were read, and it never silently merges two types. The definition
  metric in NBIRTH is ``_types_/<name>`` and instances carry ``template_ref = <name>`` (the Ignition /
  MQTT Transmission convention, tck-id-payloads-template-instance-ref).
* **Versions.** ``version`` is 16 hex of the SHA-256 of the canonical member list (names, Sparkplug
  datatypes, arrays, optionality, and each nested template's name *and version*), so a changed
  definition — including a change deep inside a nested type — changes the version, and an unchanged
  definition keeps it across restarts (tck-id-payloads-template-version).
* **Members.** Builtin fields map to Sparkplug scalars (or arrays); a nested structure field is a
  member of datatype Template holding an instance of the nested type's template (``template_ref``);
  an array of structures is a member of datatype DataSet. A definition lists every member
  (tck-id-payloads-template-definition-members) with null values; births carry complete instances
  (tck-id-payloads-template-instance-members-birth).
* **Report by exception inside a template.** DATA carries only the members that changed
  (:meth:`TemplateCatalog.delta`, allowed by tck-id-payloads-template-instance-members-data):
  a 20-member faceplate whose speed moves sends one member, not twenty. Arrays and DataSets change
  as a whole; a nested template recurses.
* **Tables.** A top-level array of structures maps to a DataSet (:meth:`TemplateCatalog.dataset`):
  one column per scalar field, nested structure fields flattened to ``Outer/Inner`` columns.
  DataSet columns must be basic types (tck-id-payloads-dataset-types-value), so a Guid column is a
  String column; an array or ByteString field inside a row cannot be a column and is refused.

What cannot be mapped (a union, a multi-dimensional field, a field whose type the server did not
describe, a reference cycle) raises :class:`TemplateMappingError` naming the type and the field:
the caller reports it and keeps the node's other metrics flowing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from asyncua import ua
from asyncua.common.structures104 import clean_name

from edge_node.errors import EdgeError
from uns.sparkplug.datatypes import BASIC_TYPES, DataType
from uns.sparkplug.model import DataSet, Metric, Template

#: NBIRTH metric name prefix of a template definition (Ignition / MQTT Transmission convention)
DEFINITION_PREFIX = "_types_/"


class TemplateMappingError(EdgeError, ValueError):
    """An OPC UA type or value that has no Sparkplug Template/DataSet form; the message says which."""


# OPC UA builtin DataType node ids (namespace 0) -> Sparkplug scalar, and the array type if any
_BUILTIN: dict[int, tuple[DataType, DataType | None]] = {
    ua.ObjectIds.Boolean: (DataType.Boolean, DataType.BooleanArray),
    ua.ObjectIds.SByte: (DataType.Int8, DataType.Int8Array),
    ua.ObjectIds.Byte: (DataType.UInt8, DataType.UInt8Array),
    ua.ObjectIds.Int16: (DataType.Int16, DataType.Int16Array),
    ua.ObjectIds.UInt16: (DataType.UInt16, DataType.UInt16Array),
    ua.ObjectIds.Int32: (DataType.Int32, DataType.Int32Array),
    ua.ObjectIds.UInt32: (DataType.UInt32, DataType.UInt32Array),
    ua.ObjectIds.Int64: (DataType.Int64, DataType.Int64Array),
    ua.ObjectIds.UInt64: (DataType.UInt64, DataType.UInt64Array),
    ua.ObjectIds.Float: (DataType.Float, DataType.FloatArray),
    ua.ObjectIds.Double: (DataType.Double, DataType.DoubleArray),
    ua.ObjectIds.String: (DataType.String, DataType.StringArray),
    ua.ObjectIds.DateTime: (DataType.DateTime, DataType.DateTimeArray),
    ua.ObjectIds.Guid: (DataType.UUID, None),
    ua.ObjectIds.ByteString: (DataType.Bytes, None),
    ua.ObjectIds.LocalizedText: (DataType.Text, None),
    # common subtypes of builtins, as OPC UA servers declare them
    ua.ObjectIds.Duration: (DataType.Double, DataType.DoubleArray),
    ua.ObjectIds.UtcTime: (DataType.DateTime, DataType.DateTimeArray),
    ua.ObjectIds.Enumeration: (DataType.Int32, DataType.Int32Array),
}


def is_builtin(type_id: ua.NodeId) -> bool:
    """A builtin OPC UA type this mapping carries as a Sparkplug scalar (no definition to read)."""
    return type_id.NamespaceIndex == 0 and type_id.Identifier in _BUILTIN


@dataclass(frozen=True, slots=True)
class MemberShape:
    """One field of a structure, or one variable of an object type."""

    name: str
    datatype: ua.NodeId  # a builtin (namespace 0) or a described structure's type id
    array: bool = False
    optional: bool = False


@dataclass(frozen=True, slots=True)
class TypeShape:
    """An OPC UA structure or object type, reduced to what a Sparkplug Template needs."""

    type_id: ua.NodeId
    name: str  # browse name
    namespace_uri: str
    members: tuple[MemberShape, ...]
    kind: Literal["structure", "object"] = "structure"


def _array_flag(type_name: str, member: str, value_rank: int) -> bool:
    if value_rank in (ua.ValueRank.Scalar, ua.ValueRank.ScalarOrOneDimension):
        return False
    if value_rank == ua.ValueRank.OneDimension:
        return True
    raise TemplateMappingError(f"{type_name}.{member}: value rank {value_rank} (multi-dimensional or any) has no "
                               "Sparkplug form; only scalars and one-dimensional arrays map")


def shape_from_structure(type_id: ua.NodeId, name: str, namespace_uri: str,
                         definition: ua.StructureDefinition) -> TypeShape:
    """A structure type from its DataTypeDefinition attribute."""
    if definition.StructureType in (ua.StructureType.Union, ua.StructureType.UnionWithSubtypedValues):
        raise TemplateMappingError(f"{name}: a union has one of several fields at a time, which a template's "
                                   "fixed member list cannot say; map its variants as separate tags")
    members = tuple(
        MemberShape(f.Name, f.DataType, _array_flag(name, f.Name, f.ValueRank), bool(f.IsOptional))
        for f in definition.Fields or []
    )
    return TypeShape(type_id, name, namespace_uri, members, "structure")


def shape_from_object_type(type_id: ua.NodeId, name: str, namespace_uri: str,
                           variables: Sequence[tuple[str, ua.NodeId, int]]) -> TypeShape:
    """An object type from its variable instance declarations: (browse name, DataType, ValueRank)."""
    members = tuple(MemberShape(member, datatype, _array_flag(name, member, rank))
                    for member, datatype, rank in variables)
    return TypeShape(type_id, name, namespace_uri, members, "object")


def _id_text(node_id: ua.NodeId) -> str:
    return node_id.to_string()


def _disambiguated(shape: TypeShape) -> str:
    """``name@hash``: the hash of the namespace URI and the id *without* the namespace index, which a
    server may assign differently after a restart."""
    local = ua.NodeId(shape.type_id.Identifier, 0, shape.type_id.NodeIdType).to_string()
    digest = hashlib.sha256(f"{shape.namespace_uri};{local}".encode()).hexdigest()
    return f"{shape.name}@{digest[:8]}"


def _to_ms(value: Any) -> Any:
    if isinstance(value, datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(stamp.timestamp() * 1000)
    return value


def _field(value: Any, name: str) -> Any:
    """A field of a decoded structure: asyncua's generated dataclass (cleaned names) or a mapping."""
    if isinstance(value, Mapping):
        return value.get(name)
    cleaned = clean_name(name)
    return getattr(value, cleaned, getattr(value, name, None))


class TemplateCatalog:
    """The templates of a set of OPC UA types: unique names, derived versions, definitions and values."""

    def __init__(self, shapes: Iterable[TypeShape]) -> None:
        self._shapes: dict[ua.NodeId, TypeShape] = {}
        for shape in shapes:
            if shape.type_id in self._shapes:
                raise TemplateMappingError(f"type {_id_text(shape.type_id)} is described twice")
            self._shapes[shape.type_id] = shape
        self._names = self._unique_names()
        self._versions: dict[ua.NodeId, str] = {}
        for type_id in self._shapes:
            self._version(type_id, ())

    # ----------------------------------------------------------------- types

    def _unique_names(self) -> dict[ua.NodeId, str]:
        by_name: dict[str, list[TypeShape]] = {}
        for shape in self._shapes.values():
            by_name.setdefault(shape.name, []).append(shape)
        names = {s.type_id: (s.name if len(group) == 1 else _disambiguated(s))
                 for group in by_name.values() for s in group}
        if len(set(names.values())) != len(names):
            raise TemplateMappingError(f"template names still collide after disambiguation: {sorted(names.values())}")
        return names

    def shape(self, type_id: ua.NodeId) -> TypeShape:
        try:
            return self._shapes[type_id]
        except KeyError:
            raise TemplateMappingError(f"type {_id_text(type_id)} was not described by the server") from None

    def name(self, type_id: ua.NodeId) -> str:
        """The template name (``template_ref`` of instances)."""
        self.shape(type_id)
        return self._names[type_id]

    def version(self, type_id: ua.NodeId) -> str:
        self.shape(type_id)
        return self._versions[type_id]

    @property
    def type_ids(self) -> list[ua.NodeId]:
        return list(self._shapes)

    @property
    def versions(self) -> dict[str, str]:
        """Template name -> version. Two reads of a server whose maps differ had a type change:
        the edge rebirths with the new definitions."""
        return {self._names[t]: self._versions[t] for t in self._shapes}

    def _member_kind(self, shape: TypeShape, member: MemberShape) -> tuple[DataType, ua.NodeId | None]:
        """The member's Sparkplug datatype and, for Template/DataSet members, the nested type id."""
        if member.datatype.NamespaceIndex == 0 and member.datatype.Identifier in _BUILTIN:
            scalar, array = _BUILTIN[member.datatype.Identifier]
            if not member.array:
                return scalar, None
            if array is None:
                raise TemplateMappingError(f"{shape.name}.{member.name}: Sparkplug has no array of {scalar.name}")
            return array, None
        if member.datatype in self._shapes:
            return (DataType.DataSet if member.array else DataType.Template), member.datatype
        raise TemplateMappingError(
            f"{shape.name}.{member.name}: its type {_id_text(member.datatype)} is neither a builtin with a "
            "Sparkplug form nor a structure the server described")

    def _version(self, type_id: ua.NodeId, stack: tuple[ua.NodeId, ...]) -> str:
        if type_id in self._versions:
            return self._versions[type_id]
        shape = self.shape(type_id)
        if type_id in stack:
            raise TemplateMappingError(f"{shape.name} contains itself; a template cannot nest recursively")
        canonical: list[Any] = [shape.kind]
        for member in shape.members:
            datatype, nested = self._member_kind(shape, member)
            entry: list[Any] = [member.name, datatype.name, member.optional]
            if nested is not None:
                entry += [self._names[nested], self._version(nested, (*stack, type_id))]
                if datatype is DataType.DataSet:
                    self._columns(nested)  # refuse a table that cannot be a DataSet now, not at the first value
            canonical.append(entry)
        text = json.dumps(canonical, separators=(",", ":"))
        self._versions[type_id] = version = hashlib.sha256(text.encode()).hexdigest()[:16]
        return version

    # ----------------------------------------------------------------- definitions

    def definition(self, type_id: ua.NodeId) -> Template:
        """The template definition (NBIRTH only, tck-id-payloads-template-definition-nbirth-only)."""
        return Template(metrics=self._null_members(type_id), version=self.version(type_id), is_definition=True)

    def definition_metrics(self, timestamp: int) -> list[Metric]:
        """Every definition as an NBIRTH metric ``_types_/<name>``, nested types first."""
        return [Metric(DEFINITION_PREFIX + self.name(t), self.definition(t), DataType.Template, timestamp=timestamp)
                for t in self._dependency_order()]

    def _dependency_order(self) -> list[ua.NodeId]:
        ordered: list[ua.NodeId] = []

        def visit(type_id: ua.NodeId) -> None:
            if type_id in ordered:
                return
            shape = self._shapes[type_id]
            for member in shape.members:
                _datatype, nested = self._member_kind(shape, member)
                if nested is not None:
                    visit(nested)
            ordered.append(type_id)

        for type_id in self._shapes:
            visit(type_id)
        return ordered

    def _null_members(self, type_id: ua.NodeId) -> list[Metric]:
        shape = self.shape(type_id)
        members = []
        for member in shape.members:
            datatype, nested = self._member_kind(shape, member)
            if datatype is DataType.Template:
                assert nested is not None
                value: Any = Template(metrics=self._null_members(nested), version=self.version(nested),
                                      template_ref=self.name(nested))
                members.append(Metric(member.name, value, datatype))
            else:
                members.append(Metric(member.name, None, datatype, is_null=True))
        return members

    # ----------------------------------------------------------------- values

    def instance(self, type_id: ua.NodeId, value: Any) -> Template:
        """A complete instance (births, tck-id-payloads-template-instance-members-birth).

        ``value`` is a decoded structure (asyncua's generated class) or a mapping of member names
        (an object instance's variables, read one by one). A missing or None member is null.
        """
        shape = self.shape(type_id)
        members = [self._member(shape, member, _field(value, member.name)) for member in shape.members]
        return Template(metrics=members, version=self.version(type_id), template_ref=self.name(type_id))

    def delta(self, type_id: ua.NodeId, previous: Any, current: Any) -> Template | None:
        """An instance with only the members that changed since ``previous``, or None if none did
        (DATA only: tck-id-payloads-template-instance-members-data)."""
        shape = self.shape(type_id)
        members = []
        for member in shape.members:
            old, new = _field(previous, member.name), _field(current, member.name)
            datatype, nested = self._member_kind(shape, member)
            if datatype is DataType.Template and old is not None and new is not None:
                assert nested is not None
                inner = self.delta(nested, old, new)
                if inner is not None:
                    members.append(Metric(member.name, inner, datatype))
            elif self._member(shape, member, old) != (mapped := self._member(shape, member, new)):
                members.append(mapped)
        if not members:
            return None
        return Template(metrics=members, version=self.version(type_id), template_ref=self.name(type_id))

    def _member(self, shape: TypeShape, member: MemberShape, value: Any) -> Metric:
        datatype, nested = self._member_kind(shape, member)
        if value is None:
            return Metric(member.name, None, datatype, is_null=True)
        if datatype is DataType.Template:
            assert nested is not None
            return Metric(member.name, self.instance(nested, value), datatype)
        if datatype is DataType.DataSet:
            assert nested is not None
            return Metric(member.name, self.dataset(nested, value), datatype)
        return Metric(member.name, _scalar(datatype, value, f"{shape.name}.{member.name}"), datatype)

    # ----------------------------------------------------------------- tables

    def _columns(self, type_id: ua.NodeId) -> list[tuple[str, list[str], DataType]]:
        """(column name, field path, column type) of a row type, nested structures flattened."""
        shape = self.shape(type_id)
        columns: list[tuple[str, list[str], DataType]] = []
        for member in shape.members:
            datatype, nested = self._member_kind(shape, member)
            label = f"{shape.name}.{member.name}"
            if datatype is DataType.Template:
                assert nested is not None
                columns += [(f"{member.name}/{c}", [member.name, *path], t)
                            for c, path, t in self._columns(nested)]
                continue
            if datatype is DataType.UUID:
                datatype = DataType.String
            if datatype not in BASIC_TYPES:
                raise TemplateMappingError(f"{label}: a {datatype.name} cannot be a DataSet column "
                                           "(tck-id-payloads-dataset-types-value)")
            columns.append((member.name, [member.name], datatype))
        return columns

    def dataset(self, type_id: ua.NodeId, rows: Sequence[Any]) -> DataSet:
        """An array of structures as a DataSet: one column per (flattened) field, one row per element."""
        columns = self._columns(type_id)
        out = DataSet([c for c, _p, _t in columns], [t for _c, _p, t in columns])
        for index, row in enumerate(rows):
            cells = []
            for column, path, datatype in columns:
                item = row
                for part in path:
                    item = None if item is None else _field(item, part)
                cells.append(None if item is None else _scalar(datatype, item, f"row {index} column {column}"))
            out.rows.append(cells)
        return out


def _scalar(datatype: DataType, value: Any, label: str) -> Any:
    """An OPC UA value as the codec's Python value for ``datatype`` (DateTime -> ms, Guid -> str)."""
    if datatype in (DataType.DateTime, DataType.DateTimeArray):
        return [_to_ms(v) for v in value] if isinstance(value, list) else _to_ms(value)
    if datatype in (DataType.UUID, DataType.String) and not isinstance(value, str) and not isinstance(value, list):
        return str(value)
    if datatype is DataType.Text and isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if datatype.is_array and not isinstance(value, list):
        raise TemplateMappingError(f"{label}: expected an array for {datatype.name}, got {type(value).__name__}")
    return value


def structure_metric(catalog: TemplateCatalog, name: str, type_id: ua.NodeId, value: Any, *,
                     array: bool, timestamp: int) -> Metric:
    """A top-level metric: a Template instance, or a DataSet for an array of structures."""
    if array:
        return Metric(name, catalog.dataset(type_id, value), DataType.DataSet, timestamp=timestamp)
    return Metric(name, catalog.instance(type_id, value), DataType.Template, timestamp=timestamp)


__all__ = [
    "DEFINITION_PREFIX", "MemberShape", "TemplateCatalog", "TemplateMappingError", "TypeShape", "is_builtin",
    "shape_from_object_type", "shape_from_structure", "structure_metric",
]
