"""Condition rules of the allowlist (Acknowledge / Confirm of an OPC UA condition): shape, value, checker.

Pure; the wire test is tests/e2e/test_alarm_acknowledge.py (simulator, edge, broker, adapter)."""

from __future__ import annotations

import uuid

import pytest

from uns.commands.allowlist import MAX_CONDITION_COMMENT, Allowlist, ConfigError, condition_metric
from uns.commands.checker import AllowlistChecker, build_request
from uns.commands.model import ReasonCode
from uns.commands.signing import UserRegistry
from uns.commands.wire import command_metric
from uns.sparkplug.datatypes import DataType

YAML = """version: "c-1"
lines:
  - group_id: "acme:plant1"
    edge_node_id: "packaging:line1"
    metrics:
      - device_id: Filler
        metric: Alarms/Jam/Acknowledge
        condition: {name: Jam, method: acknowledge}
      - device_id: Filler
        metric: Alarms/Jam/Confirm
        condition: {name: Jam, method: confirm}
"""


def _error(rule: str) -> str:
    head = 'version: "1"\nlines:\n  - group_id: g\n    edge_node_id: e\n    metrics:\n      - device_id: F\n'
    with pytest.raises(ConfigError) as info:
        Allowlist.from_yaml(head + rule, "al.yaml")
    return str(info.value)


def test_a_condition_rule_is_a_string_metric_beside_the_condition_group() -> None:
    allowlist = Allowlist.from_yaml(YAML)
    line, rule = allowlist.find("acme:plant1", "packaging:line1", "Filler", "Alarms/Jam/Acknowledge")  # type: ignore[misc]
    assert rule.condition is not None and (rule.condition.name, rule.condition.method) == ("Jam", "acknowledge")
    assert rule.wire_type is DataType.String and rule.write is None and rule.call is None
    assert line.rule_id(rule) == "packaging:line1/Filler/Alarms/Jam/Acknowledge"
    assert (condition_metric("TemperatureAlarm", "acknowledge"), condition_metric("Jam", "confirm")) == (
        "Alarms/TemperatureAlarm/Acknowledge", "Alarms/Jam/Confirm")


@pytest.mark.parametrize(("rule", "message"), [
    ("        metric: Alarms/Jam/Ack\n        condition: {name: Jam, method: acknowledge}\n",
     "a condition rule's metric is 'Alarms/Jam/Acknowledge', not 'Alarms/Jam/Ack'"),
    ("        metric: Alarms/Jam/Acknowledge\n        condition: {name: Jam, method: shelve}\n",
     "lines[0].metrics[0].condition.method"),
    ("        metric: Alarms/Jam/Acknowledge\n        datatype: String\n"
     "        condition: {name: Jam, method: acknowledge}\n",
     "a 'condition' rule takes a comment (a String); it has no datatype/min/max/step/enum"),
    ("        metric: Alarms/Jam/Acknowledge\n        condition: {name: Jam, method: acknowledge}\n"
     '        write: {node_id: "ns=2;i=1"}\n',
     "a rule needs exactly one of 'write' (an OPC UA node), 'call' (an OPC UA method) or 'condition'"),
    ("        metric: Alarms/a/b/Acknowledge\n        condition: {name: a/b, method: acknowledge}\n",
     "lines[0].metrics[0].condition.name"),
])
def test_a_wrong_condition_rule_names_its_line_and_why(rule: str, message: str) -> None:
    error = _error(rule)
    assert error.startswith("al.yaml:") and message in error


def test_the_checker_takes_the_comment_as_the_value() -> None:
    allowlist = Allowlist.from_yaml(YAML)
    checker = AllowlistChecker(allowlist, UserRegistry())

    def reason(value: object) -> ReasonCode | None:
        request = build_request(allowlist, group_id="acme:plant1", edge_node_id="packaging:line1",
                                device_id="Filler", metric="Alarms/Jam/Acknowledge", value=value,
                                requested_by="alice", reason="why", now_ms=1_000,
                                command_id=uuid.UUID(int=1))
        return checker.check(request, None, 1_000, consume=False).reason

    # a string comment passes the value checks and then wants its signature, like every command
    assert reason("jam cleared") is ReasonCode.SIGNATURE_MISSING
    assert reason("x" * MAX_CONDITION_COMMENT) is ReasonCode.SIGNATURE_MISSING
    assert reason("x" * (MAX_CONDITION_COMMENT + 1)) is ReasonCode.OUT_OF_RANGE
    assert reason(True) is ReasonCode.WRONG_TYPE
    assert reason({"comment": "x"}) is ReasonCode.WRONG_TYPE


def test_the_comment_travels_as_a_plain_string_metric() -> None:
    allowlist = Allowlist.from_yaml(YAML)
    request = build_request(allowlist, group_id="acme:plant1", edge_node_id="packaging:line1", device_id="Filler",
                            metric="Alarms/Jam/Confirm", value="checked", requested_by="alice", reason="checked",
                            now_ms=5)
    metric = command_metric(request, datatype=DataType.String, alias=7)
    assert (metric.value, metric.alias, metric.name) == ("checked", 7, None)
    assert "valueEncoding" not in (metric.properties or {})
