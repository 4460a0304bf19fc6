"""Reading OPC UA structure and object types, and their values, from a server (issue 21, edge I/O).

The pure mapping (:mod:`edge_node.templates`) needs :class:`~edge_node.templates.TypeShape` values;
this module gets them from the server alone, so the edge needs no type list in its config:

* a **structured variable**: its DataType attribute names the structure type; the type's
  DataTypeDefinition attribute (OPC UA 1.04) gives the fields; a field of another structure type
  is read the same way, recursively (each type once). A variable of value rank one is an array of
  structures, which becomes a DataSet.
* an **object instance**: its TypeDefinition (HasTypeDefinition) is an ObjectType whose variable
  instance declarations (browse name, DataType, ValueRank) are the template members; the instance's
  value is read member by member from the object's variables of those browse names.

A type the server cannot describe (no DataTypeDefinition, a Bad read, a field of an unknown type)
raises :class:`~edge_node.templates.TemplateMappingError` naming the node and the type, so the
caller reports that one tag and keeps the others flowing.

Values: structured variables decode into asyncua's generated classes only after
``client.load_data_type_definitions()``; :func:`read_structure_types` calls it once per session
and again after a type changed, after dropping the classes generated before for the same types (a
changed type must not decode with its old class, see :func:`_forget_class`). While connected the
edge re-reads the types every ``type_check_interval_s`` with :func:`describe_structure_types`
(reads only, no class generated) and compares their versions with those it published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import Client, Node, ua
from asyncua.common.structures104 import clean_name

from ..templates import (
    TemplateCatalog,
    TemplateMappingError,
    TypeShape,
    is_builtin,
    shape_from_object_type,
    shape_from_structure,
)


@dataclass(frozen=True, slots=True)
class StructureNode:
    """What one template tag's node is: its type and how its value maps."""

    node_id: ua.NodeId
    type_id: ua.NodeId
    kind: str  # "structure" (a variable) or "object"
    array: bool  # an array of structures: a DataSet


@dataclass(frozen=True, slots=True)
class StructureTypes:
    """The catalog of every type the template tags use, and what each tag's node is."""

    catalog: TemplateCatalog
    nodes: dict[ua.NodeId, StructureNode]


async def read_structure_types(client: Client, node_ids: Sequence[ua.NodeId]) -> StructureTypes:
    """Describe the nodes of the template tags and every type they use, from the server alone, and
    (re)generate the classes their values decode with."""
    types = await describe_structure_types(client, node_ids)
    for type_id in types.catalog.type_ids:
        _forget_class(types.catalog.shape(type_id))
    await client.load_data_type_definitions()
    return types


async def describe_structure_types(client: Client, node_ids: Sequence[ua.NodeId]) -> StructureTypes:
    """The types only (no class generated): what the edge compares, while connected, with the types
    it published (:meth:`edge_node.templates.TemplateCatalog.versions`) to notice a changed type."""
    namespaces = list(await client.get_namespace_array())
    shapes: dict[ua.NodeId, TypeShape] = {}
    nodes: dict[ua.NodeId, StructureNode] = {}
    for node_id in node_ids:
        node = client.get_node(node_id)
        node_class = await node.read_node_class()
        if node_class == ua.NodeClass.Variable:
            type_id = await node.read_data_type()
            array = (await node.read_value_rank()) == ua.ValueRank.OneDimension
            await _structure(client, type_id, namespaces, shapes, label=node_id.to_string())
            nodes[node_id] = StructureNode(node_id, type_id, "structure", array)
        elif node_class == ua.NodeClass.Object:
            type_id = await node.read_type_definition()
            if type_id is None:
                raise TemplateMappingError(f"object {node_id.to_string()} has no type definition")
            if type_id not in shapes:
                shapes[type_id] = await _object_type(client, type_id, namespaces, shapes)
            nodes[node_id] = StructureNode(node_id, type_id, "object", False)
        else:
            raise TemplateMappingError(f"{node_id.to_string()} is a {node_class.name}; a template tag is a "
                                       "structured variable or an object")
    return StructureTypes(TemplateCatalog(shapes.values()), nodes)


def _forget_class(shape: TypeShape) -> None:
    """Drop the class asyncua generated for this type earlier in the process.

    asyncua keeps a generated structure class while its DataType node id is unchanged, whatever
    the definition now says; after a PLC download changed a UDT in place, values would decode with
    the old fields. Dropping it makes ``load_data_type_definitions`` generate it from the
    definition just read."""
    if shape.kind != "structure":
        return
    name = clean_name(shape.name)
    existing = getattr(ua, name, None)
    if existing is not None and getattr(existing, "data_type", None) == shape.type_id:
        delattr(ua, name)


async def _structure(client: Client, type_id: ua.NodeId, namespaces: list[str], shapes: dict[ua.NodeId, TypeShape],
                     *, label: str, field: bool = False) -> None:
    """The structure ``type_id`` and, recursively, every structure its fields use."""
    if type_id in shapes or (is_builtin(type_id) and field):
        return  # described already, or a builtin field (the mapping carries it as a scalar)
    if is_builtin(type_id):
        raise TemplateMappingError(f"{label}: its DataType {type_id.to_string()} is a builtin, not a structure; "
                                   "map it as a scalar tag")
    node = client.get_node(type_id)
    try:
        definition = await node.read_data_type_definition()
        name = (await node.read_browse_name()).Name
    except ua.UaStatusCodeError as exc:
        raise TemplateMappingError(f"{label}: the server cannot describe type {type_id.to_string()} "
                                   f"({exc}); a template needs its DataTypeDefinition") from None
    if not isinstance(definition, ua.StructureDefinition):
        raise TemplateMappingError(f"{label}: type {type_id.to_string()} ({name}) is not a structure")
    shapes[type_id] = shape_from_structure(type_id, name, _uri(namespaces, type_id), definition)
    for member in definition.Fields or []:
        await _structure(client, member.DataType, namespaces, shapes, label=f"{label} {name}.{member.Name}",
                         field=True)


async def _object_type(client: Client, type_id: ua.NodeId, namespaces: list[str],
                       shapes: dict[ua.NodeId, TypeShape]) -> TypeShape:
    node = client.get_node(type_id)
    name = (await node.read_browse_name()).Name
    declarations = []
    for child in await node.get_children(refs=ua.ObjectIds.HasComponent, nodeclassmask=ua.NodeClass.Variable):
        datatype = await child.read_data_type()
        declarations.append(((await child.read_browse_name()).Name, datatype, await child.read_value_rank()))
        await _structure(client, datatype, namespaces, shapes, label=name, field=True)
    return shape_from_object_type(type_id, name, _uri(namespaces, type_id), declarations)


def _uri(namespaces: list[str], node_id: ua.NodeId) -> str:
    index = node_id.NamespaceIndex
    return namespaces[index] if index < len(namespaces) else f"ns={index}"


async def read_object_value(client: Client, node_id: ua.NodeId) -> tuple[dict[str, Any], int]:
    """An object instance's value as {member browse name: value}, and the worst StatusCode read.

    A member whose read is Bad is None (a null member); the caller turns a Bad status into the
    instance's quality."""
    node: Node = client.get_node(node_id)
    children = await node.get_children(refs=ua.ObjectIds.HasComponent, nodeclassmask=ua.NodeClass.Variable)
    values: dict[str, Any] = {}
    worst = 0
    for child in children:
        name = (await child.read_browse_name()).Name
        dv = await child.read_data_value(raise_on_bad_status=False)
        status = dv.StatusCode.value if dv.StatusCode is not None else 0
        if status & 0x80000000:
            worst = status
            values[name] = None
        else:
            values[name] = dv.Value.Value if dv.Value is not None else None
            if status & 0x40000000 and not worst:
                worst = status
    return values, worst


async def object_members(client: Client, node_id: ua.NodeId, names: Sequence[str]) -> dict[str, ua.NodeId]:
    """The node ids of an object instance's member variables (browse name -> node id), for the
    members of its type; a member the instance lacks raises, naming it (the instance does not match
    its type's declarations, so no complete birth could be built)."""
    children = await client.get_node(node_id).get_children(refs=ua.ObjectIds.HasComponent,
                                                            nodeclassmask=ua.NodeClass.Variable)
    found = {(await child.read_browse_name()).Name: child.nodeid for child in children}
    missing = [name for name in names if name not in found]
    if missing:
        raise TemplateMappingError(f"object {node_id.to_string()} lacks member variable(s) {missing} of its type")
    return {name: found[name] for name in names}


__all__ = ["StructureNode", "StructureTypes", "describe_structure_types", "object_members", "read_object_value",
           "read_structure_types"]
