"""The engineering unit and range of the simulator's analog tags, as OPC UA properties.

Why: a real PLC's OPC UA server describes an analog value with the ``EngineeringUnits``
(``EUInformation``) and ``EURange`` (``Range``) properties of ``AnalogItemType`` (OPC 10000-8,
5.3.2); ``uns edge browse`` reads them into the starter tag map. The simulator takes both from its
own catalog (:mod:`simulator.catalog`, itself derived from the simulator config: e.g. a cell's
``temperature_range_c``), so what a client browses is what the generated ``plant.yaml`` says.

A numeric tag with a range becomes an ``AnalogItemType`` variable with ``EURange`` (mandatory
there) and ``EngineeringUnits`` when it has a unit; a tag with a unit but no range keeps its type
and gets ``EngineeringUnits`` only.
"""

from __future__ import annotations

from typing import Any

from asyncua import ua

from simulator.catalog import NUMERIC_TYPES, TagSpec

#: UNECE Recommendation 20 codes, the unit namespace OPC UA names for ``EUInformation`` (OPC 10000-8,
#: 5.6.3); a unit without a code gets ``UnitId`` -1 ("not known") and keeps its display name
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
UNECE_CODES: dict[str, str] = {"degC": "CEL", "parts": "C62", "parts/min": "C94"}  # C62 one, C94 per minute


def unit_id(code: str) -> int:
    """The ``UnitId`` of a UNECE code: its (at most 3) ASCII characters as a big-endian integer."""
    value = 0
    for char in code:
        value = (value << 8) | ord(char)
    return value


def eu_information(unit: str) -> ua.EUInformation:
    """``EUInformation`` whose display name is exactly the catalog's unit text (what browse maps)."""
    code = UNECE_CODES.get(unit)
    return ua.EUInformation(NamespaceUri=UNECE_NAMESPACE, UnitId=unit_id(code) if code else -1,
                            DisplayName=ua.LocalizedText(unit), Description=ua.LocalizedText(unit))


def is_analog(spec: TagSpec) -> bool:
    """A numeric tag the catalog gives a range: served as ``AnalogItemType``."""
    return spec.datatype in NUMERIC_TYPES and spec.eu_low is not None and spec.eu_high is not None


async def add_engineering_properties(variable: Any, spec: TagSpec) -> None:
    """Make ``variable`` an analog item with its range and unit, as :func:`is_analog` decides."""
    if is_analog(spec):
        await variable.delete_reference(ua.NodeId(ua.ObjectIds.BaseDataVariableType),
                                        ua.ObjectIds.HasTypeDefinition, forward=True, bidirectional=False)
        await variable.add_reference(ua.NodeId(ua.ObjectIds.AnalogItemType), ua.ObjectIds.HasTypeDefinition,
                                     forward=True, bidirectional=False)
        await variable.add_property(_property_id(variable, "EURange"), ua.QualifiedName("EURange", 0),
                                    ua.Variant(ua.Range(Low=float(spec.eu_low), High=float(spec.eu_high)),
                                               ua.VariantType.ExtensionObject),
                                    datatype=ua.NodeId(ua.ObjectIds.Range))
    if spec.unit:
        await variable.add_property(_property_id(variable, "EngineeringUnits"),
                                    ua.QualifiedName("EngineeringUnits", 0),
                                    ua.Variant(eu_information(spec.unit), ua.VariantType.ExtensionObject),
                                    datatype=ua.NodeId(ua.ObjectIds.EUInformation))


def _property_id(variable: Any, name: str) -> ua.NodeId:
    """``<tag path>.<property>`` in the tag's namespace: stable across restarts like the tag's own id."""
    return ua.NodeId(f"{variable.nodeid.Identifier}.{name}", variable.nodeid.NamespaceIndex)
