"""The edge rebirths on either form of a rebirth request: with the Boolean datatype (what our host,
`uns cmd` and Ignition send: uns.sparkplug.control.rebirth_request) and without it (the spec's
SHOULD for command metrics, tck-id-payloads-metric-datatype-not-req, as other hosts send it)."""

from __future__ import annotations

import pytest

from edge_node.session import CommandReceived
from uns.conventions import BDSEQ
from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.control import NODE_REBIRTH, rebirth_request
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload
from uns.sparkplug.topic import MessageType

from .session_helpers import FakeClock, connect, make_session, publishes, raw


def _bare() -> bytes:
    return encode_payload(Payload([Metric(name=NODE_REBIRTH, value=True, datatype=DataType.Boolean)], timestamp=1),
                          MessageType.NCMD)


@pytest.mark.parametrize("form", ["with_datatype", "without_datatype"])
def test_edge_rebirths_on_both_forms(form: str) -> None:
    """tck-id-operational-behavior-data-commands-rebirth-action-1/2/3: a full birth sequence, seq
    from 0, the bdSeq of the current Will."""
    clock = FakeClock()
    session = make_session(clock, rebirth_throttle_ms=0)
    connect(session)
    data = rebirth_request("G", "E", clock.now).payload if form == "with_datatype" else _bare()
    assert pb.Payload.FromString(data).metrics[0].HasField("datatype") is (form == "with_datatype")
    clock.advance(10)
    births = publishes(session.send(CommandReceived(None, data)))
    assert [p.message_type for p in births] == [MessageType.NBIRTH, MessageType.DBIRTH]
    assert [raw(p).seq for p in births] == [0, 1]
    assert {m.name: m.long_value for m in raw(births[0]).metrics}[BDSEQ] == session.bd_seq
    assert session.counters.rebirths == 1 and session.counters.bad_commands == 0
