"""The edge's Acknowledge / Confirm decisions (edge_node.commands.conditions) and the alarm book's
lookup of a condition's newest EventId. Pure; the wire test is tests/e2e/test_alarm_acknowledge.py."""

from __future__ import annotations

import pytest
from asyncua import ua

from edge_node.commands.conditions import (
    arguments,
    call_verdict,
    readback_verdict,
    target,
)
from edge_node.commands.logic import Observed
from edge_node.commands.wiring import command_definitions
from edge_node.config import loads_edge_config
from uns.commands.allowlist import ConditionCall
from uns.commands.model import Outcome, ReasonCode
from uns.sparkplug.datatypes import DataType

from .test_alarms_mapping import book, event

ACK = ConditionCall(name="Jam", method="acknowledge")
CONFIRM = ConditionCall(name="Jam", method="confirm")
CID = "ns=2;s=Line1/Filler/Jam"


def test_the_call_is_the_part9_method_on_the_condition_with_its_newest_event_id() -> None:
    tgt = target(ACK, CID, "00ff10", "jam cleared")
    assert not isinstance(tgt, str)
    assert (tgt.condition_id, tgt.method_id, tgt.event_id, tgt.state_path) == (
        CID, "i=9111", bytes.fromhex("00ff10"), ("AckedState", "Id"))
    event_id, comment = arguments(tgt)
    assert (event_id.VariantType, event_id.Value) == (ua.VariantType.ByteString, bytes.fromhex("00ff10"))
    assert (comment.VariantType, comment.Value.Text) == (ua.VariantType.LocalizedText, "jam cleared")
    confirm = target(CONFIRM, CID, "01", "ok")
    assert not isinstance(confirm, str) and (confirm.method_id, confirm.state_path) == (
        "i=9113", ("ConfirmedState", "Id"))
    # never raised since the edge connected: nothing to call
    assert target(ACK, "", "", "x") == ("no event of condition Jam was received since the edge connected (never "
                                        "raised, or the server does not report it): nothing to acknowledge")
    assert target(ACK, CID, "zz", "x") == "condition Jam: the EventId received ('zz') is not hex"


@pytest.mark.parametrize(("status", "reason"), [
    (ua.StatusCodes.BadConditionBranchAlreadyAcked, ReasonCode.ALREADY_ACKED),
    (ua.StatusCodes.BadConditionBranchAlreadyConfirmed, ReasonCode.ALREADY_CONFIRMED),
    (ua.StatusCodes.BadEventIdUnknown, ReasonCode.UNKNOWN_EVENT_ID),
    (ua.StatusCodes.BadNodeIdUnknown, ReasonCode.UNKNOWN_CONDITION),
    (ua.StatusCodes.BadNodeIdInvalid, ReasonCode.UNKNOWN_CONDITION),
    (ua.StatusCodes.BadUserAccessDenied, ReasonCode.WRITE_FAILED),
])
def test_each_refusal_of_the_server_keeps_its_meaning(status: int, reason: ReasonCode) -> None:
    found = call_verdict(ACK, CID, status)
    assert found is not None and found[0] is reason
    assert found[1] == (f"Acknowledge of Jam ({CID}) answered {ua.StatusCode(status).name} (0x{status:08X})")
    assert call_verdict(ACK, CID, 0) is None


def test_only_a_state_read_back_true_confirms() -> None:
    good_true, good_false = Observed(True, 0, 1), Observed(False, 0, 1)
    bad = Observed(None, ua.StatusCodes.BadNoMatch, None)
    assert readback_verdict(ACK, [good_false, good_true], 5) == (
        Outcome.CONFIRMED, None, "acknowledge of Jam: AckedState/Id read back true")
    # Good call, state unchanged (node-opcua answers a second Acknowledge with Good)
    assert readback_verdict(CONFIRM, [good_false, good_false], 5) == (
        Outcome.MISMATCH, ReasonCode.READBACK_MISMATCH,
        "confirm of Jam answered Good but ConfirmedState/Id read back False for 5 s")
    # a server without the state variable on the condition node
    assert readback_verdict(CONFIRM, [bad], 2) == (
        Outcome.TIMEOUT, ReasonCode.READBACK_TIMEOUT,
        f"no Good read-back of ConfirmedState/Id of Jam within 2 s (last status 0x{ua.StatusCodes.BadNoMatch:08X})")


def test_the_book_knows_the_newest_event_id_of_each_condition() -> None:
    b = book()
    assert b.latest("Filler", "TemperatureAlarm") == ("", "")  # configured, no event yet
    assert b.latest("Filler", "Jam") is None and b.latest("Capper", "TemperatureAlarm") is None
    b.apply(event(), now_ms=1)
    b.apply(event(EventId=bytes.fromhex("0a0b")), now_ms=2)
    assert b.latest("Filler", "TemperatureAlarm") == ("ns=2;s=Line1/Filler/TemperatureAlarm", "0a0b")


def test_condition_rules_are_born_as_writable_string_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "allowlist.yaml").write_text("""version: "1"
lines:
  - group_id: "acme:plant1"
    edge_node_id: "packaging:line1"
    metrics:
      - {device_id: Filler, metric: Alarms/Jam/Acknowledge, condition: {name: Jam, method: acknowledge}}
""")
    (tmp_path / "signers.yaml").write_text("users: {}\n")
    cfg = loads_edge_config(f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo
data_dir: {tmp_path / "data"}
opcua: [{{url: "opc.tcp://127.0.0.1:4840"}}]
commands: {{allowlist: {tmp_path / "allowlist.yaml"}, users: {tmp_path / "signers.yaml"}}}
tags:
  - {{node_id: "ns=2;s=Line1/Filler/Temperature", metric: Temperature, cell: Filler}}
""", source="plant.yaml")
    [born] = command_definitions(cfg, [])
    assert (born.device_id, born.name, born.datatype, born.writable) == (
        "Filler", "Alarms/Jam/Acknowledge", DataType.String, True)
    assert born.description == "OPC UA condition method (command only)"
