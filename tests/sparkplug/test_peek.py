"""peek_seq / peek_metrics: one field of a peer's bytes, never an exception (uns.sparkplug.peek)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload, PropertyValue
from uns.sparkplug.peek import PeekedMetric, peek_metrics, peek_seq
from uns.sparkplug.topic import MessageType

T = 1_700_000_000_000


def test_peek_seq_reads_present_seq_including_zero() -> None:
    """seq 0 is present on the wire in an NBIRTH (tck-id-payloads-nbirth-seq): 0, not None."""
    nbirth = encode_payload(Payload([Metric(name="bdSeq", value=3, datatype=DataType.Int64, timestamp=T)],
                                    timestamp=T, seq=0), MessageType.NBIRTH)
    ndata = encode_payload(Payload([Metric(alias=4, value=1.5, datatype=DataType.Double, timestamp=T)],
                                   timestamp=T, seq=255), MessageType.NDATA)
    assert (peek_seq(nbirth), peek_seq(ndata)) == (0, 255)


def test_peek_seq_is_none_without_seq_or_for_junk() -> None:
    """An NCMD has no seq (tck-id-payloads-ncmd-seq); bytes that are not protobuf give None."""
    ncmd = encode_payload(Payload([Metric(name="X", value=1, datatype=DataType.Int32)], timestamp=T), MessageType.NCMD)
    assert peek_seq(ncmd) is None
    assert peek_seq(b"\xff\xff\xff garbage") is None
    assert peek_seq(b"") is None  # an empty protobuf message: valid, and without seq


def test_peek_metrics_names_aliases_and_string_properties() -> None:
    raw = pb.Payload(timestamp=T)
    first = raw.metrics.add(name="Filler/Speed", double_value=1.0)
    first.properties.keys.extend(["commandId", "count", "commandId"])
    first.properties.values.add(type=DataType.String, string_value="c-1")
    first.properties.values.add(type=DataType.Int32, int_value=7)
    first.properties.values.add(type=DataType.String, string_value="c-2")  # a repeated key: the first wins
    raw.metrics.add(alias=12, int_value=3)
    raw.metrics.add(name="", alias=0)
    raw.metrics.add()
    assert peek_metrics(raw.SerializeToString()) == [
        PeekedMetric("Filler/Speed", None, {"commandId": "c-1"}),
        PeekedMetric(None, 12, {}),
        PeekedMetric(None, 0, {}),
        PeekedMetric(None, None, {}),
    ]


def test_peek_metrics_shows_invalid_utf8_with_replacement_characters() -> None:
    raw = pb.Payload()
    raw.metrics.add(name="ok")
    data = raw.SerializeToString().replace(b"ok", b"o\xff")
    assert peek_metrics(data) == [PeekedMetric("o\ufffd", None, {})]


def test_peek_metrics_of_our_own_command_keeps_the_envelope_keys() -> None:
    props = {"commandId": PropertyValue(DataType.String, "c-9"), "n": PropertyValue(DataType.Int64, 2)}
    data = encode_payload(Payload([Metric(name="Recipe/Select", value="A", datatype=DataType.String,
                                          properties=props)], timestamp=T), MessageType.DCMD)
    assert peek_metrics(data) == [PeekedMetric("Recipe/Select", None, {"commandId": "c-9"})]


def test_peek_metrics_is_none_for_junk() -> None:
    assert peek_metrics(b"\xff\xff\xff garbage") is None
    assert peek_metrics(b"") == []


@given(st.binary(max_size=200))
def test_peek_never_raises(data: bytes) -> None:
    peek_seq(data)
    peek_metrics(data)


def test_peek_never_raises_on_mutated_payloads() -> None:
    rng = random.Random(14)
    props = {"commandId": PropertyValue(DataType.String, "c-1")}
    base = bytearray(encode_payload(Payload([Metric(name="A/B", value=2.5, datatype=DataType.Double, timestamp=T,
                                                    properties=props)], timestamp=T, seq=9), MessageType.NDATA))
    for _ in range(2000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        seq = peek_seq(bytes(data))
        metrics = peek_metrics(bytes(data))
        assert seq is None or 0 <= seq < 2**64
        assert metrics is None or all(isinstance(m, PeekedMetric) for m in metrics)
