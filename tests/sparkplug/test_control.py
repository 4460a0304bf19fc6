"""The one rebirth request (uns.sparkplug.control): its exact bytes, and why it carries a datatype.

Both the host (mes_adapter.host.mqtt_host) and the command client (unshub.command_client) send
these bytes. The spec says command metrics SHOULD NOT carry a datatype
(tck-id-payloads-metric-datatype-not-req); the rebirth request does anyway, because Eclipse
Tahu's JS codec reads a value only through its datatype: the last test shows the datatype-less
form decoding to no value there, so a Tahu node would never rebirth.
"""

from __future__ import annotations

import base64

import pytest

from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.control import NODE_REBIRTH, CommandMessage, rebirth_request
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import InvalidIdError
from uns.sparkplug.model import Metric, Payload
from uns.sparkplug.topic import MessageType

from .test_tahu_interop import tahu

T = 1_700_000_000_123


def test_rebirth_request_is_an_ncmd_by_name_true_boolean_without_seq() -> None:
    """tck-id-operational-behavior-data-commands-ncmd-rebirth-verb/-name/-value, tck-id-topics-ncmd-topic,
    tck-id-payloads-ncmd-seq, tck-id-payloads-ncmd-timestamp, tck-id-payloads-ncmd-qos/-retain,
    tck-id-operational-behavior-data-commands-rebirth-name-aliases (never aliased)."""
    request = rebirth_request("acme:plant1", "packaging:line1", T)
    assert (request.topic, request.qos, request.retain) == ("spBv1.0/acme:plant1/NCMD/packaging:line1", 0, False)
    raw = pb.Payload.FromString(request.payload)
    assert not raw.HasField("seq") and raw.timestamp == T and len(raw.metrics) == 1
    metric = raw.metrics[0]
    assert metric.name == NODE_REBIRTH == "Node Control/Rebirth"
    assert not metric.HasField("alias") and metric.WhichOneof("value") == "boolean_value" and metric.boolean_value
    # tck-id-operational-behavior-data-commands-rebirth-datatype: Boolean (11), kept on purpose
    assert metric.HasField("datatype") and metric.datatype == DataType.Boolean == 11
    assert metric.timestamp == T
    # our own strict decoder reads it as a plain NCMD
    decoded = decode_payload(request.payload, MessageType.NCMD)
    assert [(m.name, m.value, m.alias) for m in decoded.metrics] == [(NODE_REBIRTH, True, None)]
    assert decoded.seq is None and decoded.timestamp == T


def test_rebirth_request_refuses_ids_that_cannot_be_in_a_topic() -> None:
    with pytest.raises(InvalidIdError, match=r"edge_node_id 'a/b' contains '/'"):
        rebirth_request("g", "a/b", T)
    with pytest.raises(InvalidIdError, match="group_id must not be empty"):
        rebirth_request("", "e", T)


def test_rebirth_request_is_a_command_message() -> None:
    request = rebirth_request("g", "e", T)
    assert isinstance(request, CommandMessage)
    assert request == rebirth_request("g", "e", T)  # deterministic: the same bytes for the same clock


@pytest.mark.node
def test_tahu_js_reads_the_rebirth_only_with_its_datatype() -> None:
    """Why the datatype stays (tck-id-payloads-metric-datatype-not-req is a SHOULD): Eclipse Tahu's
    npm codec decodes our request to ``value: true``, and the spec-style form without a datatype
    to ``value: null``, which its sparkplug-client's NCMD handler cannot take for a rebirth."""
    ours = rebirth_request("g", "e", T).payload
    bare = encode_payload(Payload([Metric(name=NODE_REBIRTH, value=True, datatype=DataType.Boolean, timestamp=T)],
                                  timestamp=T), MessageType.NCMD)
    assert not pb.Payload.FromString(bare).metrics[0].HasField("datatype")  # the codec omits it for commands
    with_type, without = tahu("decode", [base64.b64encode(ours).decode(), base64.b64encode(bare).decode()])
    stamp = {"$long": str(T)}
    assert with_type["metrics"] == [{"name": NODE_REBIRTH, "value": True, "type": "Boolean", "timestamp": stamp}]
    assert without["metrics"] == [{"name": NODE_REBIRTH, "value": None, "timestamp": stamp}]  # no type, no value
