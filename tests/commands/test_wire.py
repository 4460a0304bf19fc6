"""The command on the wire: a standard DCMD/NCMD whose envelope lets the edge re-check everything."""

from __future__ import annotations

import uuid

import pytest

from uns.commands.checker import AllowlistChecker
from uns.commands.model import CommandResult, Outcome, ReasonCode
from uns.commands.wire import (
    CommandWireError,
    WireCommand,
    WireRejection,
    decode_command,
    encode_command,
    result_filter,
    result_topic,
)
from uns.isa95 import NamespaceMapping
from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.catalog import EdgeNodeCatalog
from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload, PropertyValue
from uns.sparkplug.topic import MessageType

from .conftest import EDGE, GROUP, T0, MakeRequest

BIRTH = {  # metric -> (alias, datatype) as the edge's births declare them
    "Filler/SpeedSetpoint": (10, DataType.Double),
    "Filler/TempSetpoint": (11, DataType.Float),
    "Recipe/Select": (12, DataType.String),
    "Filler/Count": (13, DataType.Int32),
}


@pytest.fixture
def catalog() -> EdgeNodeCatalog:
    catalog = EdgeNodeCatalog()
    catalog.learn_nbirth(Payload(metrics=[
        Metric(name="bdSeq", value=0, datatype=DataType.Int64, timestamp=T0),
        Metric(name="Batch/Start", value="", datatype=DataType.String, alias=1, timestamp=T0),
        Metric(name="Node Control/Rebirth", value=False, datatype=DataType.Boolean, timestamp=T0),
    ], timestamp=T0, seq=0))
    catalog.learn_dbirth("filler", Payload(metrics=[
        Metric(name=name, value=None, datatype=dt, alias=alias, timestamp=T0, is_null=True)
        for name, (alias, dt) in BIRTH.items()
    ], timestamp=T0, seq=1))
    return catalog


def _send(request, alias: int | None = None, datatype: DataType | None = None):  # type: ignore[no-untyped-def]
    alias_, dt = BIRTH.get(request.metric, (None, DataType.String))
    return encode_command(request, datatype=datatype or dt, alias=alias if alias is not None else alias_,
                          now_ms=T0 + 5)


def _one(topic: str, data: bytes, catalog: EdgeNodeCatalog,
         device: str | None = "filler") -> WireCommand | WireRejection:
    decoded = decode_command(topic, data, catalog.resolver(device))
    assert len(decoded) == 1
    return decoded[0]


def test_dcmd_round_trip_alias_only(make: MakeRequest, catalog: EdgeNodeCatalog, checker: AllowlistChecker) -> None:
    """What every command publisher sends (the MES command service and `uns cmd`; the host has no
    command publisher of its own): alias only, no name, no datatype, no seq, the envelope in the
    metric's properties (tck-id-payloads-alias-data-cmd-requirement, tck-id-payloads-metric-datatype-not-req,
    tck-id-payloads-dcmd-seq, tck-id-topics-dcmd-topic)."""
    request = make("Recipe/Select", "SKU-14", sign_as=("alice", "bob"))
    topic, data = _send(request)
    assert topic == "spBv1.0/acme:dublin/DCMD/packaging:line1/filler"
    raw = pb.Payload.FromString(data)
    assert not raw.HasField("seq") and raw.metrics[0].alias == 12 and not raw.metrics[0].name
    assert not raw.metrics[0].HasField("datatype")
    assert {"commandId", "commandHash", "signatures"} <= set(raw.metrics[0].properties.keys)
    got = _one(topic, data, catalog)
    assert isinstance(got, WireCommand)
    assert got.request == request and got.request.command_hash() == request.command_hash()
    assert got.metric.alias == 12 and got.metric.value == "SKU-14"
    assert checker.check(got.request, "Idle", T0 + 10).allowed  # the edge re-checks what it received


def test_plain_sparkplug_decoder_sees_a_standard_dcmd(make: MakeRequest) -> None:
    topic, data = _send(make("Filler/Count", 7))
    payload = decode_payload(data, MessageType.DCMD)  # no resolver: what any Sparkplug tool shows
    metric = payload.metrics[0]
    assert metric.alias == 13 and metric.properties is not None
    assert {"commandId", "commandHash", "signatures", "createdAt", "validUntil"} <= set(metric.properties)
    assert metric.properties["signatures"].type is DataType.PropertySetList


def test_float32_setpoint_hash_survives_the_wire(make: MakeRequest, catalog: EdgeNodeCatalog) -> None:
    request = make("Filler/TempSetpoint", 72.4)
    got = _one(*_send(request), catalog)
    assert isinstance(got, WireCommand) and got.request.command_hash() == request.command_hash()


def test_method_call_travels_as_json_string_on_ncmd(make: MakeRequest, catalog: EdgeNodeCatalog,
                                                    checker: AllowlistChecker) -> None:
    args = {"quantity": 500, "order": "WO-1", "product": "SKU-12"}
    request = make("Batch/Start", args, device=None, sign_as=("alice", "bob"))
    topic, data = encode_command(request, datatype=DataType.String, alias=1, now_ms=T0)
    assert topic == "spBv1.0/acme:dublin/NCMD/packaging:line1"
    raw = pb.Payload.FromString(data)
    assert raw.metrics[0].string_value == '{"order":"WO-1","product":"SKU-12","quantity":500}'
    got = _one(topic, data, catalog, device=None)
    assert isinstance(got, WireCommand) and got.request.value == args
    assert checker.check(got.request, None, T0).allowed
    with pytest.raises(CommandWireError, match="String metric"):
        encode_command(request, datatype=DataType.Int32, now_ms=T0)


def test_value_altered_in_transit_is_rejected(make: MakeRequest, catalog: EdgeNodeCatalog) -> None:
    topic, data = _send(make("Filler/SpeedSetpoint", 120.0))
    raw = pb.Payload.FromString(data)
    raw.metrics[0].double_value = 599.0
    got = _one(topic, raw.SerializeToString(), catalog)
    assert isinstance(got, WireRejection) and "does not match" in got.message and got.command_id is not None


def test_readdressed_command_is_rejected(make: MakeRequest, catalog: EdgeNodeCatalog) -> None:
    """Same bytes published to another device: the rebuilt command differs from what was hashed."""
    _, data = _send(make("Filler/Count", 7))
    catalog.learn_dbirth("capper", Payload(metrics=[
        Metric(name="Filler/Count", value=0, datatype=DataType.Int32, alias=50, timestamp=T0)], timestamp=T0, seq=2))
    raw = pb.Payload.FromString(data)
    raw.metrics[0].alias = 50
    got = _one(f"spBv1.0/{GROUP}/DCMD/{EDGE}/capper", raw.SerializeToString(), catalog, device="capper")
    assert isinstance(got, WireRejection) and "re-addressed" in got.message


def test_forged_hash_then_fails_signatures(make: MakeRequest, catalog: EdgeNodeCatalog,
                                           checker: AllowlistChecker) -> None:
    request = make("Filler/Count", 7)
    forged = request.model_copy(update={"value": 9})  # attacker re-encodes with a matching hash
    got = _one(*_send(forged), catalog)
    assert isinstance(got, WireCommand)
    assert checker.check(got.request, None, T0).reason is ReasonCode.SIGNATURE_INVALID


def test_metric_without_envelope_is_rejected_and_node_control_skipped(catalog: EdgeNodeCatalog) -> None:
    plain = Payload(metrics=[Metric(alias=1, value="{}", datatype=DataType.String),
                             Metric(name="Node Control/Rebirth", value=True, datatype=DataType.Boolean)],
                    timestamp=T0)
    data = encode_payload(plain, MessageType.NCMD)
    decoded = decode_command(f"spBv1.0/{GROUP}/NCMD/{EDGE}", data, catalog.resolver(None))
    assert len(decoded) == 1 and isinstance(decoded[0], WireRejection)
    assert "no uns-hub command envelope" in decoded[0].message and decoded[0].command_id is None


def test_unknown_alias_spoils_the_whole_message(catalog: EdgeNodeCatalog) -> None:
    data = encode_payload(Payload(metrics=[Metric(alias=99, value=5, datatype=DataType.Int32)], timestamp=T0),
                          MessageType.DCMD)
    with pytest.raises(CommandWireError, match="alias 99"):
        decode_command(f"spBv1.0/{GROUP}/DCMD/{EDGE}/filler", data, catalog.resolver("filler"))


def test_envelope_field_errors_are_specific(make: MakeRequest, catalog: EdgeNodeCatalog) -> None:
    request = make("Filler/Count", 7)
    topic, data = _send(request)
    payload = decode_payload(data, MessageType.DCMD, catalog.resolver("filler"))
    props = payload.metrics[0].properties
    assert props is not None
    props["createdAt"] = PropertyValue(DataType.String, "yesterday")
    got = _one(topic, encode_payload(payload, MessageType.DCMD), catalog)
    assert isinstance(got, WireRejection) and "'createdAt' is String, expected DateTime" in got.message
    del props["reason"]
    got = _one(topic, encode_payload(payload, MessageType.DCMD), catalog)
    assert isinstance(got, WireRejection) and "'reason' is missing" in got.message


def test_bad_topic_or_bytes(catalog: EdgeNodeCatalog) -> None:
    with pytest.raises(CommandWireError, match="not NCMD or DCMD"):
        decode_command(f"spBv1.0/{GROUP}/DDATA/{EDGE}/filler", b"", catalog.resolver("filler"))
    with pytest.raises(CommandWireError, match="not a Sparkplug B protobuf"):
        decode_command(f"spBv1.0/{GROUP}/DCMD/{EDGE}/filler", b"\xff\xff", catalog.resolver("filler"))


def test_result_topic_and_json_round_trip(make: MakeRequest) -> None:
    request = make("Filler/SpeedSetpoint", 120.5)
    mapping = NamespaceMapping()
    assert result_topic(mapping, request) == f"acme/dublin/packaging/line1/_cmd/result/{request.command_id}"
    assert result_filter(mapping, GROUP, EDGE) == "acme/dublin/packaging/line1/_cmd/result/+"
    result = CommandResult(command_id=request.command_id, outcome=Outcome.MISMATCH, reason=ReasonCode.READBACK_MISMATCH,
                           message="read back 120.0", command_hash=request.command_hash(), group_id=GROUP,
                           edge_node_id=EDGE, device_id="filler", metric=request.metric, old_value=100.0,
                           requested_value=120.5, readback_value=120.0, old_status_code=0, write_status_code=0,
                           readback_status_code=0, received_at_ms=T0, written_at_ms=T0 + 3, completed_at_ms=T0 + 9)
    assert CommandResult.from_bytes(result.to_bytes()) == result
    with pytest.raises(ValueError, match="needs a reason code"):
        CommandResult(command_id=uuid.uuid4(), outcome=Outcome.FAILED, group_id=GROUP, edge_node_id=EDGE,
                      metric="m", received_at_ms=T0, completed_at_ms=T0)
    with pytest.raises(ValueError, match="field outcome"):
        CommandResult.from_bytes(b'{"command_id": "%s", "outcome": "great"}' % str(uuid.uuid4()).encode())
