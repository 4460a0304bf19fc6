"""The edge session and templates (rule 14): definitions in every NBIRTH, complete instances in
births, only the changed members in DDATA, and a rebirth with the new version when a type changes.
Definitions and instances come from the real mapping (edge_node.templates) and go through the codec."""

from __future__ import annotations

from typing import Any

from asyncua import ua

from edge_node.model import DeviceOnline, MetricDefinition, MetricUpdate, TemplatesDefined
from edge_node.session import CommandReceived, EdgeSession, SessionSettings, Tick
from edge_node.templates import MemberShape, TemplateCatalog, TypeShape
from uns.sparkplug.codec import decode_payload
from uns.sparkplug.control import rebirth_request
from uns.sparkplug.datatypes import DataType as D
from uns.sparkplug.model import Metric, Payload, Template
from uns.sparkplug.topic import MessageType

from .session_helpers import FakeClock, connect, publishes

URI = "urn:test"
SETPOINTS_ID, RECIPE_ID = ua.NodeId("Types/Setpoints", 2), ua.NodeId("Types/Recipe", 2)
DOUBLE = ua.NodeId(ua.ObjectIds.Double)
SETPOINTS = TypeShape(SETPOINTS_ID, "Setpoints", URI, (MemberShape("LineSpeed", DOUBLE),
                                                         MemberShape("FillTemperature", DOUBLE)))
RECIPE = TypeShape(RECIPE_ID, "Recipe", URI, (MemberShape("Name", ua.NodeId(ua.ObjectIds.String)),
                                              MemberShape("Quantity", ua.NodeId(ua.ObjectIds.UInt32)),
                                              MemberShape("Setpoints", SETPOINTS_ID)))
VALUE: dict[str, Any] = {"Name": "SKU-1", "Quantity": 500, "Setpoints": {"LineSpeed": 1200.0, "FillTemperature": 20.0}}


def session(clock: FakeClock) -> EdgeSession:
    return EdgeSession(SessionSettings(group_id="G", edge_node_id="E"),
                       [MetricDefinition("Filler", "Recipe", D.Template),
                        MetricDefinition(None, "Line/State", D.String)],
                       clock=clock)


def update(value: Template | None, ts: int) -> MetricUpdate:
    return MetricUpdate("Filler", "Recipe", value, ts, is_null=value is None)


def decoded(actions: list, kind: MessageType) -> Payload:
    (publish,) = publishes(actions, kind)
    if kind in (MessageType.NBIRTH, MessageType.DBIRTH):
        return decode_payload(publish.payload, kind)
    return decode_payload(publish.payload, kind, lambda n, a: ("Recipe", D.Template))


def named(payload: Payload) -> dict[str | None, Metric]:
    return {m.name: m for m in payload.metrics}


def test_definitions_in_nbirth_instances_in_dbirth_and_only_changes_in_ddata() -> None:
    """tck-id-payloads-template-definition-nbirth-only, -definition-is-definition, -definition-members,
    tck-id-payloads-template-instance-members-birth, tck-id-payloads-template-instance-members-data,
    tck-id-topics-nbirth-templates and tck-id-payloads-template-definition-nbirth (the NBIRTH defines
    every template an instance of the device uses, nested ones included)."""
    clock = FakeClock()
    catalog = TemplateCatalog([SETPOINTS, RECIPE])
    s = session(clock)
    assert s.send(TemplatesDefined(tuple(catalog.definition_metrics(clock.now)))) == []  # not born: kept
    s.send(DeviceOnline("Filler", [update(catalog.instance(RECIPE_ID, VALUE), clock.now)]))
    actions = connect(s)
    nbirth = named(decoded(actions, MessageType.NBIRTH))
    assert nbirth["_types_/Setpoints"].value == catalog.definition(SETPOINTS_ID)
    assert nbirth["_types_/Recipe"].value == catalog.definition(RECIPE_ID)
    assert nbirth["_types_/Recipe"].value.is_definition and nbirth["_types_/Recipe"].value.template_ref is None
    dbirth = named(decoded(actions, MessageType.DBIRTH))
    assert dbirth["Recipe"].value == catalog.instance(RECIPE_ID, VALUE)
    assert "_types_/Recipe" not in dbirth  # definitions only in NBIRTH
    refs = [dbirth["Recipe"].value.template_ref, dbirth["Recipe"].value.metrics[2].value.template_ref]
    assert refs == ["Recipe", "Setpoints"] and all(f"_types_/{ref}" in nbirth for ref in refs)

    changed = {**VALUE, "Setpoints": {**VALUE["Setpoints"], "LineSpeed": 900.0}}
    clock.advance(1000)
    s.submit(update(catalog.delta(RECIPE_ID, VALUE, changed), clock.now))
    ddata = decoded(s.send(Tick()), MessageType.DDATA)
    (recipe,) = ddata.metrics
    assert [m.name for m in recipe.value.metrics] == ["Setpoints"]
    assert [(m.name, m.value) for m in recipe.value.metrics[0].value.metrics] == [("LineSpeed", 900.0)]

    # the same definitions again (a reconnect of the OPC UA side): nothing
    assert s.send(TemplatesDefined(tuple(catalog.definition_metrics(clock.now)))) == []
    # a rebirth now carries the complete instance with the change applied
    clock.advance(60_000)  # past the rebirth throttle
    rebirth = s.send(CommandReceived(None, rebirth_request("G", "E", clock.now).payload))
    assert named(decoded(rebirth, MessageType.DBIRTH))["Recipe"].value == catalog.instance(RECIPE_ID, changed)


def test_a_changed_type_is_a_rebirth_with_the_new_version() -> None:
    """tck-id-payloads-template-version: the new definition goes out at once in a new NBIRTH; the
    instance of the old version is null until the source reads it again, then re-births the device."""
    clock = FakeClock()
    catalog = TemplateCatalog([SETPOINTS, RECIPE])
    s = session(clock)
    s.send(TemplatesDefined(tuple(catalog.definition_metrics(clock.now))))
    s.send(DeviceOnline("Filler", [update(catalog.instance(RECIPE_ID, VALUE), clock.now)]))
    connect(s)
    grown = TypeShape(RECIPE_ID, "Recipe", URI, (*RECIPE.members, MemberShape("Order", ua.NodeId(ua.ObjectIds.String))))
    new = TemplateCatalog([SETPOINTS, grown])
    assert new.version(RECIPE_ID) != catalog.version(RECIPE_ID)
    clock.advance(10_000)
    actions = s.send(TemplatesDefined(tuple(new.definition_metrics(clock.now))))
    nbirth = named(decoded(actions, MessageType.NBIRTH))
    assert nbirth["_types_/Recipe"].value == new.definition(RECIPE_ID)
    assert nbirth["_types_/Setpoints"].value.version == catalog.version(SETPOINTS_ID)  # unchanged type
    stale = named(decoded(actions, MessageType.DBIRTH))["Recipe"]
    assert stale.is_null and stale.value is None
    assert s.counters.template_rebirths == 1
    value = {**VALUE, "Order": "PO-7"}
    reborn = s.send(DeviceOnline("Filler", [update(new.instance(RECIPE_ID, value), clock.now)]))
    recipe = named(decoded(reborn, MessageType.DBIRTH))["Recipe"].value
    assert recipe == new.instance(RECIPE_ID, value) and recipe.version == new.version(RECIPE_ID)

