"""The pure half of the edge's alarm path: config rules, the EventFilter, the event -> metric mapping,
refresh clearing, and bad input (counted and logged once, never raised). No I/O: the wire tests are
tests/edge_node/test_alarms.py (simulator) and test_alarms_node_opcua.py (node-opcua)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import ua

from edge_node.alarms import (
    METRICS,
    QUEUE_OVERFLOW,
    REFRESH_END,
    REFRESH_START,
    AlarmBook,
    event_filter,
    field_keys,
)
from edge_node.app import metric_definitions
from edge_node.config import ConfigError, EdgeConfig, loads_edge_config
from uns.sparkplug.datatypes import DataType

TIME = datetime(2026, 5, 1, 8, 30, 0, 123000, tzinfo=UTC)
TIME_MS = 1777624200123


def config(alarms: str, tags: str = "") -> EdgeConfig:
    return loads_edge_config(f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo
opcua:
  - url: opc.tcp://127.0.0.1:4840
    alarms:
{alarms}
tags:
  - {{node_id: "ns=2;s=Line1/Filler/Temperature", metric: Temperature, cell: Filler}}
  - {{node_id: "ns=2;s=Line1/Capper/Temperature", metric: Temperature, cell: Capper}}
{tags}""", source="plant.yaml")


CONDITIONS = """      conditions:
        - {cell: Filler, name: TemperatureAlarm}
        - {cell: Capper, name: Jam, source_name: CapperPLC}"""


def book() -> AlarmBook:
    cfg = config(CONDITIONS)
    assert cfg.opcua[0].alarms is not None
    return AlarmBook(cfg.opcua[0].alarms, cfg.device_of_cell)


def event(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "EventId": bytes.fromhex("00ff10"), "EventType": ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType),
        "SourceNode": ua.NodeId("Line1/Filler", 2), "SourceName": "Filler", "Time": TIME, "Severity": 800,
        "Message": ua.LocalizedText("Filler temperature HighHigh", "en"), "ConditionName": "TemperatureAlarm",
        "Retain": True, "ActiveState/Id": True, "AckedState/Id": False, "ConfirmedState/Id": True,
        "LimitState/CurrentState": ua.LocalizedText("HighHigh", "en"),
        "NodeId": ua.NodeId("Line1/Filler/TemperatureAlarm", 2),
    }
    fields.update(overrides)
    return fields


def as_dict(updates: list[Any]) -> dict[str, object]:
    return {u.name: u.value for u in updates}


def test_config_defaults_and_declared_metrics() -> None:
    cfg = config(CONDITIONS)
    alarms = cfg.opcua[0].alarms
    assert alarms is not None and alarms.notifiers == ["i=2253"] and alarms.refresh_timeout_s == 10.0
    declared = [(d.device_id, d.name, d.datatype) for d in metric_definitions(cfg) if d.name.startswith("Alarms/")]
    assert declared == [("Filler", f"Alarms/TemperatureAlarm/{s}", t) for s, t in METRICS] + \
        [("Capper", f"Alarms/Jam/{s}", t) for s, t in METRICS]
    assert dict(METRICS)["Severity"] is DataType.UInt16


@pytest.mark.parametrize(("alarms", "tags", "message"), [
    ("      conditions:\n        - {cell: Labeler, name: Jam}", "",
     r"plant.yaml:\d+: opcua\[0\].alarms.conditions\[0\].cell: cell 'Labeler' has no tags on endpoint 'default'"),
    ("      conditions:\n        - {cell: Filler, name: Jam}\n        - {cell: Filler, name: Jam}", "",
     r"conditions\[1\].name: condition 'Jam' of cell 'Filler' is already conditions\[0\]"),
    ("      conditions:\n        - {cell: Filler, name: Jam}",
     '  - {node_id: "ns=2;s=X", metric: Alarms/Jam/Active, cell: Filler, datatype: Boolean}',
     r"tag metric 'Alarms/Jam/Active' of cell 'Filler' is inside the condition's folder Alarms/Jam/"),
    ("      conditions:\n        - {cell: Filler, name: Temp/High}", "",
     r"condition name 'Temp/High': letters, digits"),
    ("      conditions: []", "", r"alarms.conditions: List should have at least 1 item"),
    ("      conditions:\n        - {cell: Filler, name: Jam, source_name: PLC}\n"
     "        - {cell: Capper, name: Jam, source_name: PLC}", "",
     r"conditions\[1\].cell: source_name 'PLC' already identifies cell 'Filler'"),
    ("      conditions:\n        - {cell: Filler, name: Jam, sourcename: F}", "", r"sourcename"),
])
def test_config_errors_name_the_field(alarms: str, tags: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(alarms, tags)


def test_event_filter_selects_the_mapped_fields_with_their_declaring_types() -> None:
    flt = event_filter()
    paths = ["/".join(q.Name for q in op.BrowsePath) or op.AttributeId.name for op in flt.SelectClauses]
    assert paths == list(field_keys())
    by_path = {"/".join(q.Name for q in op.BrowsePath): op.TypeDefinitionId for op in flt.SelectClauses}
    assert by_path["ActiveState/Id"] == ua.NodeId(ua.ObjectIds.AlarmConditionType)
    assert by_path["LimitState/CurrentState"] == ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType)
    assert by_path[""] == ua.NodeId(ua.ObjectIds.ConditionType)  # the ConditionId (NodeId attribute)
    assert flt.WhereClause.Elements == []  # refresh markers and every condition type pass


def test_an_event_becomes_the_whole_group_at_its_source_time() -> None:
    b = book()
    updates = b.apply(event(), now_ms=1)
    assert {u.device_id for u in updates} == {"Filler"} and {u.timestamp for u in updates} == {TIME_MS}
    assert as_dict(updates) == {
        "Alarms/TemperatureAlarm/Active": True, "Alarms/TemperatureAlarm/Acked": False,
        "Alarms/TemperatureAlarm/Confirmed": True, "Alarms/TemperatureAlarm/Retain": True,
        "Alarms/TemperatureAlarm/Severity": 800, "Alarms/TemperatureAlarm/Message": "Filler temperature HighHigh",
        "Alarms/TemperatureAlarm/State": "HighHigh", "Alarms/TemperatureAlarm/ConditionId": "ns=2;s=Line1/Filler/"
        "TemperatureAlarm", "Alarms/TemperatureAlarm/EventId": "00ff10"}
    # a server without ConfirmedState; a limit state reported as a Bad StatusCode (node-opcua)
    updates = b.apply(event(**{"ConfirmedState/Id": None,
                               "LimitState/CurrentState": ua.StatusCode(ua.StatusCodes.BadStateNotActive)}), 1)
    assert (as_dict(updates)["Alarms/TemperatureAlarm/Confirmed"], as_dict(updates)["Alarms/TemperatureAlarm/State"]) \
        == (True, "")
    # source_name maps another SourceName to the cell
    jam = b.apply(event(SourceName="CapperPLC", ConditionName="Jam", **{"LimitState/CurrentState": None}), 1)
    assert {u.device_id for u in jam} == {"Capper"} and as_dict(jam)["Alarms/Jam/State"] == ""
    assert b.stats.events == 3


def test_refresh_clears_what_it_does_not_restate() -> None:
    b = book()
    b.apply(event(), 1)
    b.apply(event(SourceName="CapperPLC", ConditionName="Jam", EventId=b"\x01"), 1)
    assert b.apply({"EventType": REFRESH_START}, 2) == []
    b.apply(event(SourceName="CapperPLC", ConditionName="Jam", EventId=b"\x01"), 3)  # Jam still retained
    cleared = b.apply({"EventType": REFRESH_END}, 5000)
    assert as_dict(cleared) == {
        "Alarms/TemperatureAlarm/Active": False, "Alarms/TemperatureAlarm/Acked": True,
        "Alarms/TemperatureAlarm/Confirmed": True, "Alarms/TemperatureAlarm/Retain": False,
        "Alarms/TemperatureAlarm/Severity": 800, "Alarms/TemperatureAlarm/Message": "Filler temperature HighHigh",
        "Alarms/TemperatureAlarm/State": "", "Alarms/TemperatureAlarm/ConditionId": "ns=2;s=Line1/Filler/"
        "TemperatureAlarm", "Alarms/TemperatureAlarm/EventId": "00ff10"}
    assert {u.timestamp for u in cleared} == {5000}
    assert (b.stats.refreshes, b.stats.cleared_by_refresh) == (1, 1)
    assert b.apply({"EventType": REFRESH_START}, 6) == [] and b.apply({"EventType": REFRESH_END}, 7) == \
        [u for u in b.current("Capper")]  # an empty refresh now clears the Jam; the cleared one stays as is
    assert b.stats.cleared_by_refresh == 2


def test_bad_input_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    b = book()
    before = {d: b.current(d) for d in ("Filler", "Capper")}
    caplog.set_level(logging.WARNING, logger="edge_node.alarms")
    for _ in range(3):
        assert b.apply({"EventType": ua.NodeId(ua.ObjectIds.AuditEventType), "SourceName": "Server"}, 1) == []
        assert b.apply(event(**{"ActiveState/Id": None, "Retain": None}), 1) == []
        assert b.apply(event(SourceName="Labeler"), 1) == []
        assert b.apply(event(ConditionName="DoorOpen"), 1) == []
    assert (b.stats.not_conditions, b.stats.malformed, b.stats.unknown_sources, b.stats.unknown_conditions,
            b.stats.events) == (3, 3, 3, 3, 0)
    assert [r.getMessage() for r in caplog.records] == [
        f"event of type {ua.NodeId(ua.ObjectIds.AuditEventType)} is not a condition; ignored",
        "condition event without Retain, ActiveState/Id; ignored",
        "condition event from source 'Labeler' (ns=2;s=Line1/Filler), which is not in the alarms config; ignored",
        "condition Filler/DoorOpen is not in the alarms config; ignored",
    ]
    assert {d: b.current(d) for d in ("Filler", "Capper")} == before  # nothing accepted was touched


def test_a_server_queue_overflow_is_counted_logged_every_time_and_asks_for_a_refresh(
        caplog: pytest.LogCaptureFixture) -> None:
    # Part 4 5.12.1.5: the server discarded events of our monitored item; what they said is gone,
    # so the loss is counted and logged each time and ConditionRefresh restates the states
    b = book()
    b.apply(event(), 1)
    caplog.set_level(logging.WARNING, logger="edge_node.alarms")
    overflow = {"EventType": QUEUE_OVERFLOW, "SourceName": "Server", "EventId": b"\x09", "Time": TIME}
    for _ in range(2):
        assert b.apply(overflow, 2) == []
        assert b.take_refresh_request() is True
        assert b.take_refresh_request() is False  # once per overflow
    assert (b.stats.received, b.stats.queue_overflows, b.stats.events, b.stats.not_conditions) == (3, 2, 1, 0)
    assert [r.getMessage() for r in caplog.records] == [
        f"the server's event queue overflowed and discarded condition events ({n} overflow(s) so far): their "
        "occurrences are lost; ConditionRefresh restates the states" for n in (1, 2)]
