"""Template instances and DataSets as the UNS shows them: plain JSON a subscriber reads without Sparkplug.

Decisions (``docs/templates.md``, "In the UNS"):

* **One topic per instance.** A template instance is one retained message on its metric's topic
  whose ``value`` is a JSON object of its members, nested templates as nested objects, so a plain
  subscriber gets the whole structure at once and it equals the OPC UA structure it came from. A
  topic per member would split one consistent sample of the PLC into messages that arrive apart.
  The instance's quality and timestamp are the metric's (``quality``, ``timestamp_ms`` beside
  ``value``); the host applies partial DATA on top of the last complete instance first
  (:func:`uns.sparkplug.templates.merge_instance`), so ``value`` is always complete.
* **A DataSet is a list of rows**, each row an object of its columns: the shape an array of OPC UA
  structures has, and what a dashboard table reads directly.
* **The type goes to ``_meta``**: the template's name, version and member datatypes (nested the
  same way), or a DataSet's columns with their types. The value topic stays free of type chatter.
"""

from __future__ import annotations

from typing import Any

from uns.sparkplug.model import DataSet, Template

from .jsonable import jsonable


def uns_value(value: Any) -> Any:
    """A metric's value as the UNS JSON ``value``."""
    if isinstance(value, Template):
        return {str(m.name): (None if m.is_null else uns_value(m.value)) for m in value.metrics}
    if isinstance(value, DataSet):
        return [{column: jsonable(cell) for column, cell in zip(value.columns, row, strict=False)}
                for row in value.rows]
    return jsonable(value)


def template_meta(value: Template) -> dict[str, Any]:
    """``{"name", "version", "members": {member: datatype | nested template meta}}`` of an instance."""
    members: dict[str, Any] = {}
    for member in value.metrics:
        if isinstance(member.value, Template):
            members[str(member.name)] = template_meta(member.value)
        else:
            members[str(member.name)] = member.datatype.name if member.datatype is not None else None
    out: dict[str, Any] = {"name": value.template_ref, "members": members}
    if value.version is not None:
        out["version"] = value.version
    return out


def dataset_columns(value: DataSet) -> list[dict[str, str]]:
    return [{"name": column, "datatype": datatype.name} for column, datatype in zip(value.columns, value.types,
                                                                                    strict=False)]
