"""A command to one member of a template instance: how it is addressed, checked and carried. Pure.

A template instance (an OPC UA object instance or a structured variable, published as a Sparkplug
Template, docs/templates.md) is written one member at a time, so a command changes exactly what the
allowlist allowed and is read back, audited and answered like any other write:

* **Request.** ``metric`` is the template instance metric as born (``Faceplate``); ``value`` is an
  object of exactly one entry, ``{"<member path>": <value>}``, the path naming nested members with
  ``/`` (``{"Setpoints/LineSpeed": 1200.0}``). So the command hash covers the member, and the
  allowlist matches a rule by metric *and* member path (``member:`` in the rule).
* **Wire.** The DCMD metric is the instance metric (its alias) of datatype Template; its value is a
  partial instance (``template_ref`` and ``version`` as born, tck-id-payloads-template-instance-ref)
  carrying that one member, nested templates for a nested path: a subset of members, as Sparkplug
  allows outside births (tck-id-payloads-template-instance-members-data). Each member carries its
  name and datatype (template members have no alias). The edge turns it back into the request value.
* **Checks.** A member the born instance does not have is refused ``unknown_member``, naming the
  members it has (:func:`member_problem`), before the allowlist is asked; an allowlisted member whose
  datatype differs from the born one is refused ``wrong_type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uns.errors import UnsError
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Template

from .model import ReasonCode

#: separates nested members in a member path
SEPARATOR = "/"


class TemplateMemberError(UnsError, ValueError):
    """A member write that cannot be carried or read; the message says which member and why."""


def member_path(value: Any) -> str | None:
    """The member path of a member write's value ``{"<path>": v}``; None for any other value."""
    if isinstance(value, dict) and len(value) == 1:
        (path,) = value
        return path if isinstance(path, str) and path else None
    return None


def member_value(value: Any) -> Any:
    """The value written to the member (the one entry's value)."""
    (item,) = value.values()
    return item


def born_members(instance: Template, prefix: str = "") -> dict[str, DataType]:
    """Every writable leaf of a born instance: member path -> datatype (nested templates recursed)."""
    out: dict[str, DataType] = {}
    for member in instance.metrics:
        if member.name is None or member.datatype is None:
            continue
        path = f"{prefix}{member.name}"
        if member.datatype is DataType.Template and isinstance(member.value, Template):
            out.update(born_members(member.value, path + SEPARATOR))
        else:
            out[path] = member.datatype
    return out


def member_problem(metric: str, path: str, members: Mapping[str, DataType],
                   rule_type: DataType | None) -> tuple[ReasonCode, str] | None:
    """``unknown_member`` when the born instance has no such member, ``wrong_type`` when the rule's
    datatype is not the member's; None when the member can take the rule's value."""
    born = members.get(path)
    if born is None:
        return ReasonCode.UNKNOWN_MEMBER, (f"template {metric!r} has no member {path!r}; its members are "
                                           f"{sorted(members)}")
    if rule_type is not None and rule_type is not born:
        return ReasonCode.WRONG_TYPE, (f"member {path!r} of {metric!r} is {born.name} in the birth, the allowlist "
                                       f"writes it as {rule_type.name}")
    return None


def command_template(born: Template, path: str, value: Any, datatype: DataType) -> Template:
    """The DCMD value: a partial instance of ``born`` carrying only ``path`` = ``value``."""
    head, _, rest = path.partition(SEPARATOR)
    member = next((m for m in born.metrics if m.name == head), None)
    if member is None:
        raise TemplateMemberError(f"template {born.template_ref!r} has no member {head!r}")
    if rest:
        if not isinstance(member.value, Template):
            raise TemplateMemberError(f"member {head!r} of {born.template_ref!r} is not a template; "
                                      f"{path!r} names nothing")
        inner = Metric(head, command_template(member.value, rest, value, datatype), DataType.Template)
    else:
        inner = Metric(head, value, datatype)
    return Template(metrics=[inner], version=born.version, template_ref=born.template_ref)


def request_value(template: Template) -> dict[str, Any]:
    """The request value ``{"<path>": v}`` of a DCMD's partial instance; exactly one leaf member."""
    leaves: list[tuple[str, Any]] = []

    def walk(instance: Template, prefix: str) -> None:
        for member in instance.metrics:
            path = f"{prefix}{member.name}"
            if isinstance(member.value, Template):
                walk(member.value, path + SEPARATOR)
            else:
                leaves.append((path, None if member.is_null else member.value))

    walk(template, "")
    if len(leaves) != 1:
        raise TemplateMemberError(f"a template command writes exactly one member, this one carries "
                                  f"{[p for p, _ in leaves]}")
    path, value = leaves[0]
    if value is None:
        raise TemplateMemberError(f"member {path!r}: a command needs a value, got null")
    return {path: value}


__all__ = ["SEPARATOR", "TemplateMemberError", "born_members", "command_template", "member_path", "member_problem",
           "member_value", "request_value"]
