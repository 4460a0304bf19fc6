"""Template instances against the definitions an edge node declared: the host-side rules. Pure.

An NBIRTH declares template definitions (metrics whose value is a ``Template`` with
``is_definition``); instances name theirs in ``template_ref``. By the Ignition / MQTT Transmission
convention the definition metric is ``_types_/<name>`` and instances say ``<name>``; Eclipse Tahu
examples name the definition metric ``<name>`` itself. Both resolve here, so a host mirrors either.

What a host checks, and why each matters to it:

* every instance in NBIRTH/DBIRTH has its definition in the NBIRTH
  (tck-id-payloads-template-definition-nbirth): without it the host cannot say what the instance is;
* an instance carries only members of its definition (tck-id-payloads-template-instance-members):
  a stray member would reach the UNS as a field no type describes;
* in a birth an instance carries *every* member (tck-id-payloads-template-instance-members-birth):
  DATA may then carry a subset (tck-id-payloads-template-instance-members-data), which the host
  applies on top of the last complete instance with :func:`merge_instance`;
* an instance sets only parameters its definition lists (tck-id-payloads-template-definition-parameters);
  it need not set any (tck-id-payloads-template-instance-parameters is a MAY, and a definition's
  parameter values are its defaults, tck-id-payloads-template-definition-parameters-default).

A violation raises :class:`TemplateInstanceError` (a :class:`MalformedPayloadError`) naming the
metric and member; the host answers it like any malformed message (a counted violation and a
rebirth request), never with a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from .datatypes import DataType
from .errors import MalformedPayloadError
from .model import Metric, Template

#: NBIRTH metric name prefix of a template definition (Ignition / MQTT Transmission convention)
DEFINITION_PREFIX = "_types_/"


class TemplateInstanceError(MalformedPayloadError):
    """A template instance that its node's definitions do not describe (the message cites the tck-id)."""


def is_definition(metric: Metric) -> bool:
    """A template definition (NBIRTH only): a type description, not a value of the plant."""
    return metric.datatype is DataType.Template and isinstance(metric.value, Template) and metric.value.is_definition


def definition_for(ref: str, definitions: Mapping[str, Template]) -> Template | None:
    """The definition ``ref`` names: the metric ``_types_/<ref>`` or, failing that, ``<ref>``."""
    found = definitions.get(DEFINITION_PREFIX + ref)
    return found if found is not None else definitions.get(ref)


def check_instances(metrics: Iterable[Metric], definitions: Mapping[str, Template], *, birth: bool) -> None:
    """Every template instance among ``metrics`` (nested ones too) against its definition."""
    for metric in metrics:
        if metric.datatype is DataType.Template and isinstance(metric.value, Template) \
                and not metric.value.is_definition and not metric.is_null:
            _check(str(metric.name or metric.alias), metric.value, definitions, birth)


def _check(label: str, instance: Template, definitions: Mapping[str, Template], birth: bool) -> None:
    ref = instance.template_ref or ""
    definition = definition_for(ref, definitions)
    if definition is None:
        raise TemplateInstanceError(f"metric {label!r}: template_ref {ref!r} names no definition of this node's "
                                    "NBIRTH (tck-id-payloads-template-definition-nbirth)")
    declared = {member.name: member for member in definition.metrics}
    seen: set[str | None] = set()
    for member in instance.metrics:
        if member.name not in declared:
            raise TemplateInstanceError(f"metric {label!r}: member {member.name!r} is not in definition {ref!r} "
                                        "(tck-id-payloads-template-instance-members)")
        seen.add(member.name)
        if member.datatype is DataType.Template and isinstance(member.value, Template) and not member.is_null:
            _check(f"{label}/{member.name}", member.value, definitions, birth)
    parameters = {parameter.name for parameter in definition.parameters}
    for parameter in instance.parameters:
        if parameter.name not in parameters:
            raise TemplateInstanceError(f"metric {label!r}: parameter {parameter.name!r} is not in definition {ref!r} "
                                        "(tck-id-payloads-template-definition-parameters)")
    missing = [name for name in declared if name not in seen]
    if birth and missing:
        raise TemplateInstanceError(f"metric {label!r}: a birth instance of {ref!r} lacks member(s) {missing} "
                                    "(tck-id-payloads-template-instance-members-birth)")


def merge_instance(last: Template, partial: Template) -> Template:
    """The complete instance after DATA carried only some members: ``partial``'s members replace
    ``last``'s, nested instances recursively; members it does not carry keep their last value."""
    incoming = {member.name: member for member in partial.metrics}
    merged: list[Metric] = []
    for member in last.metrics:
        new = incoming.pop(member.name, None)
        if new is None:
            merged.append(member)
        elif isinstance(member.value, Template) and isinstance(new.value, Template) and not new.is_null:
            merged.append(replace(new, value=merge_instance(member.value, new.value)))
        else:
            merged.append(new)
    merged.extend(incoming.values())  # unknown members were refused before; kept rather than lost
    return Template(metrics=merged, parameters=partial.parameters or last.parameters,
                    version=partial.version if partial.version is not None else last.version,
                    template_ref=partial.template_ref or last.template_ref, is_definition=False)


__all__ = ["DEFINITION_PREFIX", "TemplateInstanceError", "check_instances", "definition_for", "is_definition",
           "merge_instance"]
