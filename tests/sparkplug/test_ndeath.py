"""The NDEATH payload: one bdSeq metric, Int64, no seq."""

from __future__ import annotations

from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload
from uns.sparkplug.topic import MessageType


def test_ndeath_bdseq_states_name_and_int64_datatype_and_no_seq() -> None:
    """tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq, tck-id-topics-ndeath-payload,
    tck-id-topics-ndeath-seq."""
    data = encode_payload(Payload(metrics=[Metric("bdSeq", 7, DataType.Int64)]), MessageType.NDEATH)
    raw = pb.Payload.FromString(data)
    assert not raw.HasField("seq")
    assert len(raw.metrics) == 1
    metric = raw.metrics[0]
    assert metric.name == "bdSeq" and metric.datatype == DataType.Int64
    assert metric.HasField("long_value") and metric.long_value == 7
