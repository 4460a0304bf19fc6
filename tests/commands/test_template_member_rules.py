"""Commands to one member of a template instance (uns.commands.template_members): the allowlist's
``member:`` rules, the checker's refusals, and the DCMD's Template value both ways. Pure.

The wire: the DCMD metric is the instance metric of datatype Template whose value is a partial
instance naming its definition (tck-id-payloads-template-instance-ref) and carrying the one member
written, nested templates for a nested member, a subset as allowed outside births
(tck-id-payloads-template-instance-members-data). End to end against the simulator:
tests/commands_e2e/test_template_member_commands.py.
"""

from __future__ import annotations

import uuid

import pytest

from uns.commands.allowlist import Allowlist, ConfigError
from uns.commands.checker import AllowlistChecker, build_request
from uns.commands.model import ReasonCode
from uns.commands.signing import UserRegistry
from uns.commands.template_members import (
    TemplateMemberError,
    born_members,
    command_template,
    request_value,
)
from uns.commands.wire import CommandWireError, command_from_metric, command_metric
from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.datatypes import DataType as D
from uns.sparkplug.model import Metric, Payload, Template
from uns.sparkplug.topic import MessageType, SparkplugTopic

G, E = "acme:plant1", "packaging:line1"
T0 = 1_760_000_000_000
YAML = f"""version: "m-1"
lines:
  - group_id: "{G}"
    edge_node_id: "{E}"
    metrics:
      - device_id: Filler
        metric: Faceplate
        member: SpeedSetpoint
        datatype: Double
        min: 0
        max: 600
        write: {{node_id: "ns=2;s=Line1/Filler/Faceplate"}}
      - device_id: Filler
        metric: ActiveRecipe
        member: Setpoints/LineSpeed
        datatype: Double
        write: {{node_id: "ns=2;s=Line1/ActiveRecipe"}}
"""

#: a born Recipe instance with a nested RecipeSetpoints, and a faceplate
RECIPE = Template(template_ref="Recipe", version="v1", metrics=[
    Metric("Name", "SKU-7", D.String),
    Metric("Setpoints", Template(template_ref="RecipeSetpoints", version="v2", metrics=[
        Metric("LineSpeed", 120.0, D.Double), Metric("FillTemperature", 20.0, D.Double)]), D.Template),
])
FACEPLATE = Template(template_ref="CellFaceplateType", version="v3", metrics=[
    Metric("Speed", 118.0, D.Double), Metric("SpeedSetpoint", 120.0, D.Double), Metric("State", "Idle", D.String)])


def _checker() -> AllowlistChecker:
    return AllowlistChecker(Allowlist.from_yaml(YAML), UserRegistry())


def _request(metric: str, value: object, allowlist: Allowlist | None = None):  # noqa: ANN202
    return build_request(allowlist or Allowlist.from_yaml(YAML), group_id=G, edge_node_id=E, device_id="Filler",
                         metric=metric, value=value, requested_by="alice", reason="test", now_ms=T0)


def test_a_member_rule_is_found_by_metric_and_member_path() -> None:
    allowlist = Allowlist.from_yaml(YAML)
    line, rule = allowlist.find(G, E, "Filler", "Faceplate", member="SpeedSetpoint")  # type: ignore[misc]
    assert rule.wire_type is D.Template and rule.sparkplug_type is D.Double
    assert line.rule_id(rule) == f"{E}/Filler/Faceplate#SpeedSetpoint"
    assert allowlist.find(G, E, "Filler", "Faceplate") is None
    assert allowlist.members(G, E, "Filler", "Faceplate") == ["SpeedSetpoint"]
    request = _request("Faceplate", {"SpeedSetpoint": 150})
    assert request.value == {"SpeedSetpoint": 150.0}  # normalized to the rule's Double before hashing
    found = _checker().rule_for(request)
    assert found is not None and found[1] == rule


@pytest.mark.parametrize(("rule", "message"), [
    ("        metric: Faceplate\n        member: SpeedSetpoint\n        call: {object_node_id: o, method_node_id: m}\n",
     "needs 'write'"),
    ("        metric: Faceplate\n        member: Speed//Setpoint\n        datatype: Double\n"
     "        write: {node_id: n}\n", "member"),
])
def test_a_member_rule_needs_a_write_and_a_clean_path(rule: str, message: str) -> None:
    head = 'version: "1"\nlines:\n  - group_id: g\n    edge_node_id: e\n    metrics:\n      - device_id: F\n'
    with pytest.raises(ConfigError, match=message):
        Allowlist.from_yaml(head + rule, "al.yaml")


def test_a_metric_has_member_rules_or_a_whole_rule_never_both() -> None:
    mixed = YAML + """      - device_id: Filler
        metric: Faceplate
        datatype: Double
        write: {node_id: "ns=2;s=X"}
"""
    with pytest.raises(ConfigError, match="rules for the whole metric and for members"):
        Allowlist.from_yaml(mixed, "al.yaml")


def test_refusals_name_the_member_and_why() -> None:
    checker = _checker()
    members = born_members(FACEPLATE)
    assert members == {"Speed": D.Double, "SpeedSetpoint": D.Double, "State": D.String}

    def refused(value: object, reason: ReasonCode, *, with_members: bool = True) -> str:
        decision = checker.check(_request("Faceplate", value), None, T0 + 1, signatures=False,
                                 members=members if with_members else None)
        assert not decision.allowed and decision.reason is reason, decision
        return decision.message

    # a member the instance lacks: unknown, with the members it has (before the allowlist is asked)
    assert "has no member 'Pressure'" in refused({"Pressure": 1.0}, ReasonCode.UNKNOWN_MEMBER)
    assert "'Speed', 'SpeedSetpoint', 'State'" in refused({"Pressure": 1.0}, ReasonCode.UNKNOWN_MEMBER)
    # a member it has but the allowlist does not name
    message = refused({"Speed": 1.0}, ReasonCode.NOT_ALLOWLISTED)
    assert "member 'Speed'" in message and "allowlisted members: ['SpeedSetpoint']" in message
    # the host without a birth still refuses a member that is not allowlisted, by name
    assert "member 'Speed'" in refused({"Speed": 1.0}, ReasonCode.NOT_ALLOWLISTED, with_members=False)
    # the wrong type for the member, out of range, and a value that names no single member
    assert "Double needs a number" in refused({"SpeedSetpoint": "fast"}, ReasonCode.WRONG_TYPE)
    assert "above the maximum" in refused({"SpeedSetpoint": 9999}, ReasonCode.OUT_OF_RANGE)
    assert "names one member" in refused(150.0, ReasonCode.WRONG_TYPE)
    assert "names one member" in refused({"SpeedSetpoint": 1.0, "Speed": 2.0}, ReasonCode.WRONG_TYPE)
    # the allowlist types the member unlike the birth (a misconfiguration, said as such)
    as_string = {**members, "SpeedSetpoint": D.String}
    decision = checker.check(_request("Faceplate", {"SpeedSetpoint": 1.0}), None, T0 + 1, signatures=False,
                             members=as_string)
    assert decision.reason is ReasonCode.WRONG_TYPE and "String in the birth" in decision.message
    ok = checker.check(_request("Faceplate", {"SpeedSetpoint": 150.0}), None, T0 + 1, signatures=False,
                       members=members)
    assert ok.allowed and ok.rule_id == f"{E}/Filler/Faceplate#SpeedSetpoint"


def test_the_dcmd_carries_a_partial_instance_and_the_edge_reads_the_member_back() -> None:
    request = _request("ActiveRecipe", {"Setpoints/LineSpeed": 130})
    metric = command_metric(request, datatype=D.Template, alias=7, timestamp_ms=T0, template=RECIPE)
    value = metric.value
    assert isinstance(value, Template) and (value.template_ref, value.version, value.is_definition) == (
        "Recipe", "v1", False)
    (setpoints,) = value.metrics
    assert setpoints.name == "Setpoints" and setpoints.value.template_ref == "RecipeSetpoints"
    assert [(m.name, m.value, m.datatype) for m in setpoints.value.metrics] == [("LineSpeed", 130.0, D.Double)]
    # through the codec (alias only, no datatype: the edge's birth table resolves it)
    data = encode_payload(Payload(metrics=[metric], timestamp=T0), MessageType.DCMD)
    decoded = decode_payload(data, MessageType.DCMD, lambda _name, _alias: ("ActiveRecipe", D.Template))
    topic = SparkplugTopic(G, MessageType.DCMD, E, "Filler")
    assert command_from_metric(topic, decoded.metrics[0]) == request  # same value, same hash


def test_a_template_command_that_is_not_one_member_is_malformed() -> None:
    with pytest.raises(TemplateMemberError, match="exactly one member"):
        request_value(FACEPLATE)
    with pytest.raises(TemplateMemberError, match="not a template"):
        command_template(FACEPLATE, "Speed/Inner", 1.0, D.Double)
    request = _request("Faceplate", {"SpeedSetpoint": 150.0})
    with pytest.raises(CommandWireError, match="needs the instance as born"):
        command_metric(request, datatype=D.Template)
    with pytest.raises(CommandWireError, match="no member 'SpeedSetpoint'"):
        command_metric(request, datatype=D.Template, template=RECIPE)
    two = Metric("Faceplate", FACEPLATE, D.Template,
                 properties=command_metric(request, datatype=D.Template, template=FACEPLATE).properties)
    with pytest.raises(CommandWireError, match="exactly one member"):
        command_from_metric(SparkplugTopic(G, MessageType.DCMD, E, "Filler"), two)
    assert uuid.UUID(str(request.command_id))
