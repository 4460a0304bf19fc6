"""EdgeSession rule 12: an NCMD/DCMD it cannot decode is counted and, when asked, handed on as
:class:`RejectedCommand` (topic, raw bytes, fault) so the command side can audit and answer it.

The default (``report_rejected_commands=False``) keeps the actions a shell written before
``RejectedCommand`` existed expects: see test_session_host_and_forward.py.
"""

from __future__ import annotations

import pytest

from edge_node.session import (
    CommandFault,
    CommandReceived,
    DeliverCommand,
    RejectedCommand,
    Shutdown,
)
from uns.conventions import NODE_REBIRTH
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload
from uns.sparkplug.topic import MessageType

from .session_helpers import connect, make_session


def cmd(kind: MessageType, *metrics: Metric) -> bytes:
    return encode_payload(Payload(metrics=list(metrics), timestamp=1), kind)


def reporting():  # type: ignore[no-untyped-def]
    session = make_session(report_rejected_commands=True)
    connect(session)
    return session


def only_rejection(actions: list[object]) -> RejectedCommand:
    assert len(actions) == 1 and isinstance(actions[0], RejectedCommand), actions
    return actions[0]


@pytest.mark.parametrize(("device", "payload", "fault", "topic"), [
    # not Sparkplug at all
    (None, b"\xff\xff\xff garbage", CommandFault.MALFORMED, "spBv1.0/G/NCMD/E"),
    # tck-id-payloads-alias-data-cmd-requirement: a CMD uses the alias our birth gave; 999 was never given
    ("Filler", cmd(MessageType.DCMD, Metric(alias=999, value=True, datatype=DataType.Boolean)),
     CommandFault.UNKNOWN_ALIAS, "spBv1.0/G/DCMD/E/Filler"),
    # an alias of another device is not this device's metric
    ("Capper", "alias-of-filler", CommandFault.UNKNOWN_ALIAS, "spBv1.0/G/DCMD/E/Capper"),
    # a name no birth declared (tck-id-topics-nbirth-metric-reqs: only born metrics exist)
    ("Filler", cmd(MessageType.DCMD, Metric(name="Nope", value=1.0, datatype=DataType.Double)),
     CommandFault.UNKNOWN_METRIC, "spBv1.0/G/DCMD/E/Filler"),
    # the birth declared Boolean; a CMD carrying another datatype is refused
    ("Filler", cmd(MessageType.DCMD, Metric(name="Running", value=1, datatype=DataType.Int32)),
     CommandFault.MALFORMED, "spBv1.0/G/DCMD/E/Filler"),
    # a DCMD for a device this node never declared
    ("Ghost", cmd(MessageType.DCMD, Metric(name="Running", value=True, datatype=DataType.Boolean)),
     CommandFault.UNKNOWN_DEVICE, "spBv1.0/G/DCMD/E/Ghost"),
])
def test_undecodable_commands_are_counted_and_handed_on(device: str | None, payload: bytes | str,
                                                        fault: CommandFault, topic: str) -> None:
    session = reporting()
    if payload == "alias-of-filler":
        alias = session.alias_of("Filler", "Running")
        payload = cmd(MessageType.DCMD, Metric(alias=alias, value=True, datatype=DataType.Boolean))
    assert isinstance(payload, bytes)
    rejected = only_rejection(session.send(CommandReceived(device, payload)))
    assert (rejected.fault, rejected.topic, rejected.device_id) == (fault, topic, device)
    assert rejected.payload == payload  # the exact bytes, to audit and to read a command id from
    assert rejected.error
    assert session.counters.bad_commands == 1 and session.counters.commands_delivered == 0


def test_a_message_with_one_bad_metric_delivers_nothing_not_even_a_rebirth() -> None:
    session = reporting()
    alias = session.alias_of("Filler", "Running")
    mixed = cmd(MessageType.NCMD, Metric(name=NODE_REBIRTH, value=True, datatype=DataType.Boolean),
                Metric(alias=alias, value=True, datatype=DataType.Boolean))  # a device alias in an NCMD
    rejected = only_rejection(session.send(CommandReceived(None, mixed)))
    assert rejected.fault is CommandFault.UNKNOWN_ALIAS
    assert session.counters.rebirths == 0


def test_good_commands_still_go_to_the_handler_when_reporting() -> None:
    session = reporting()
    alias = session.alias_of("Filler", "Running")
    actions = session.send(CommandReceived("Filler", cmd(MessageType.DCMD, Metric(alias=alias, value=True,
                                                                                 datatype=DataType.Boolean))))
    assert [type(a) for a in actions] == [DeliverCommand]
    assert session.counters.bad_commands == 0


def test_default_settings_only_count() -> None:
    """Backwards compatible: without the setting the session answers as it always did."""
    session = make_session()
    connect(session)
    assert session.send(CommandReceived("Ghost", b"\x00")) == []
    assert session.send(CommandReceived(None, b"\xff garbage")) == []
    assert session.counters.bad_commands == 2


def test_nothing_is_handed_on_after_shutdown() -> None:
    session = reporting()
    session.send(Shutdown())
    assert session.send(CommandReceived(None, b"\xff garbage")) == []
