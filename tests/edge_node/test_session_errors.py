"""The session's ERROR path (rule 13 of edge_node/session/core.py), driven by events only, no I/O.

A handler that fails must not escape ``send()`` (it would end the shell's reader or connection
task half way through a transition): the session enters ERROR and says so with
:class:`SessionFailed`, then a :class:`Disconnect` that asks the shell to connect again, after an
NDEATH if the session was born (tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath).
The values a birth could not encode are forgotten, so the next birth carries them as null (every
metric is still in it, tck-id-topics-nbirth-metric-reqs) instead of failing again.
"""

from __future__ import annotations

import pytest

from edge_node.model import DeviceOnline, MetricUpdate
from edge_node.session import (
    CommandReceived,
    ConnectFailed,
    ConnectStarted,
    DataConfirmed,
    Disconnect,
    HistoryFetched,
    MqttConnected,
    MqttDisconnected,
    PersistBdSeq,
    Publish,
    SessionFailed,
    Shutdown,
    State,
    StoreForward,
    Subscribe,
    Tick,
)
from edge_node.session.machine import ACCEPTS, TRANSITIONS, Trigger
from uns.conventions import NODE_REBIRTH
from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import LocalProtocolError
from uns.sparkplug.topic import MessageType

from .session_helpers import FakeClock, connect, make_session, publishes, raw, state

NDEATH = "spBv1.0/G/NDEATH/E"
SPEED_ERROR = ("BirthEncodeError: NBIRTH cannot be encoded: 'Line/Speed' of the node: "
               "metric 'Line/Speed': Double needs a number, got str 'fast'")
COUNT_ERROR = ("BirthEncodeError: DBIRTH cannot be encoded: 'Count' of device 'Filler': "
               "metric 'Count': Int64 needs an int, got str 'many'")


def assert_ndeath(action: object, bd_seq: int, connection: int) -> None:
    """Our own NDEATH: QoS 1, not retained, bdSeq only and no seq (tck-id-topics-ndeath-payload,
    tck-id-topics-ndeath-seq); a fence, so its PUBACK confirms the DATA before it."""
    assert isinstance(action, Publish)
    assert (action.topic, action.qos, action.retain, action.message_type, action.seq, action.connection,
            action.fence) == (NDEATH, 1, False, MessageType.NDEATH, None, connection, True)
    payload = raw(action)
    assert [(m.name, m.datatype, m.long_value) for m in payload.metrics] == [("bdSeq", DataType.Int64, bd_seq)]
    assert not payload.HasField("seq")


def reconnect(error: str, *, born: bool = True) -> Disconnect:
    """The ERROR path's disconnect: same server, and the Will only if an NBIRTH of ours is out."""
    return Disconnect(f"session error: {error}", next_server=False, publish_will=born, reconnect=True)


def births(actions: list[object]) -> dict[str, pb.Payload]:
    return {a.topic: raw(a) for a in actions if isinstance(a, Publish)
            and a.message_type in (MessageType.NBIRTH, MessageType.DBIRTH)}


def metric(payload: pb.Payload, name: str) -> pb.Payload.Metric:
    return next(m for m in payload.metrics if m.name == name)


def test_an_nbirth_that_does_not_encode_takes_the_error_path_and_the_next_connection_births_null() -> None:
    clock = FakeClock()
    session = make_session(clock)
    session.set_current(MetricUpdate(None, "Line/Speed", "fast", clock.now - 5))
    session.set_current(MetricUpdate(None, "Line/State", "Execute", clock.now - 5))
    session.send(DeviceOnline("Filler", current=[MetricUpdate("Filler", "Count", 7, clock.now - 5)]))
    assert session.send(ConnectStarted())[0] == PersistBdSeq(0)

    actions = session.send(MqttConnected())

    # no NBIRTH went out (the birth failed whole), so no NDEATH nor Will: it would be a stale death
    assert actions == [SessionFailed("MqttConnected", "ONLINE", SPEED_ERROR), reconnect(SPEED_ERROR, born=False)]
    assert session.state is State.ERROR and not session.connected and not session.born
    assert (session.counters.session_errors, session.counters.values_unencodable,
            session.counters.nbirths, session.counters.dbirths) == (1, 1, 0, 0)
    # the shell drops the connection: a clean state, nothing in flight, nothing lost
    assert session.send(MqttDisconnected("session error")) == []
    assert session.state is State.DISCONNECTED
    # the CONNECT reached CONNACK, so the next one takes the next bdSeq (tck-id-topics-nbirth-bdseq-increment)
    assert session.send(ConnectStarted())[0] == PersistBdSeq(1)
    actions = session.send(MqttConnected())
    assert [type(a) for a in actions] == [Subscribe, Subscribe, Publish, Publish]
    out = births(actions)
    nbirth, dbirth = out["spBv1.0/G/NBIRTH/E"], out["spBv1.0/G/DBIRTH/E/Filler"]
    assert (nbirth.seq, dbirth.seq) == (0, 1)  # tck-id-payloads-nbirth-seq, tck-id-payloads-dbirth-seq-inc
    assert metric(nbirth, "bdSeq").long_value == 1  # tck-id-payloads-nbirth-bdseq
    assert metric(nbirth, "Line/Speed").is_null  # forgotten: null, not the value that broke the birth
    assert metric(nbirth, "Line/State").string_value == "Execute"
    assert metric(dbirth, "Count").long_value == 7
    assert session.state is State.ONLINE and session.counters.nbirths == 1
    # the next good value goes out as usual
    session.submit(MetricUpdate(None, "Line/Speed", 12.5, clock.now))
    ndata = publishes(session.send(Tick()), MessageType.NDATA)
    assert [(m.alias, m.double_value) for m in raw(ndata[0]).metrics] == [(session.alias_of(None, "Line/Speed"), 12.5)]
    assert raw(ndata[0]).seq == 2


def test_a_rebirth_whose_dbirth_does_not_encode_takes_the_error_path() -> None:
    """The DATA guard drops a value that does not encode, but it is still the current value: the
    next birth (here a Rebirth request, tck-id-operational-behavior-data-commands-rebirth-action-1)
    must not crash on it."""
    clock = FakeClock()
    session = make_session(clock, rebirth_throttle_ms=0)
    connect(session)
    session.submit(MetricUpdate("Filler", "Count", "many", clock.now))
    assert publishes(session.send(Tick())) == []  # dropped from the DDATA, counted
    assert session.counters.values_unencodable == 1
    session.submit(MetricUpdate(None, "Line/State", "Held", clock.now + 1))  # pending when the rebirth fails
    rebirth = pb.Payload(timestamp=clock.now, metrics=[pb.Payload.Metric(
        name=NODE_REBIRTH, datatype=DataType.Boolean, boolean_value=True)]).SerializeToString()

    actions = session.send(CommandReceived(None, rebirth))

    assert actions[0] == SessionFailed("CommandReceived", "ONLINE", COUNT_ERROR)
    assert_ndeath(actions[1], bd_seq=0, connection=1)
    assert actions[2:] == [reconnect(COUNT_ERROR)]
    assert session.state is State.ERROR
    assert (session.counters.values_unencodable, session.counters.session_errors) == (2, 1)
    # in ERROR nothing is published: the batch goes to the store at the Tick (rule 9)
    assert session.send(Tick()) == [StoreForward([MetricUpdate(None, "Line/State", "Held", clock.now + 1)])]
    assert session.send(MqttDisconnected()) == []
    session.send(ConnectStarted())
    dbirth = births(session.send(MqttConnected()))["spBv1.0/G/DBIRTH/E/Filler"]
    assert metric(dbirth, "Count").is_null


def test_a_dbirth_for_a_device_coming_online_that_does_not_encode_takes_the_error_path() -> None:
    clock = FakeClock()
    session = make_session(clock)
    connect(session, devices=())
    actions = session.send(DeviceOnline("Filler", current=[MetricUpdate("Filler", "Count", "many", clock.now)]))
    assert actions[0] == SessionFailed("DeviceOnline", "ONLINE", COUNT_ERROR)
    assert_ndeath(actions[1], bd_seq=0, connection=1)
    assert actions[2:] == [reconnect(COUNT_ERROR)]
    assert session.state is State.ERROR and session.device_online("Filler")


def test_an_nbirth_on_the_primary_host_coming_online_that_does_not_encode_takes_the_error_path() -> None:
    """tck-id-message-flow-edge-node-birth-publish-phid-wait: the birth waits for STATE online; when
    it then fails, the session leaves the same way as after CONNACK."""
    clock = FakeClock()
    session = make_session(clock, primary_host_id="H")
    session.set_current(MetricUpdate(None, "Line/Speed", "fast", clock.now))
    connect(session)
    assert session.state is State.WAITING_HOST
    actions = session.send(state("H", True, clock.now))
    assert actions == [SessionFailed("StateReceived", "ONLINE", SPEED_ERROR), reconnect(SPEED_ERROR, born=False)]
    # a STATE while in ERROR changes nothing (the next connection judges STATE afresh)
    assert session.send(state("H", False, clock.now + 1)) == []
    assert session.state is State.ERROR


def test_a_failure_that_is_not_an_encoding_error_keeps_the_batch_it_had_taken() -> None:
    """Any exception of a handler is the ERROR path, and the values the failed Tick had taken
    over go to the store: nothing already accepted is lost. A timestamp that is not a number
    slips past submit() and breaks the Tick's ordering (a TypeError, a bug class, not a peer)."""
    clock = FakeClock()
    session = make_session(clock)
    connect(session, devices=())
    good = MetricUpdate(None, "Line/State", "Execute", clock.now)
    broken = MetricUpdate(None, "Line/Speed", 1.0, None)  # type: ignore[arg-type]
    session.submit(good)
    session.submit(broken)
    actions = session.send(Tick())
    assert isinstance(actions[0], SessionFailed)
    assert (actions[0].event, actions[0].state) == ("Tick", "ONLINE")
    assert actions[0].error.startswith("TypeError: ")
    assert actions[1] == StoreForward([good, broken])
    assert_ndeath(actions[2], bd_seq=0, connection=1)
    assert actions[3] == Disconnect(f"session error: {actions[0].error}", next_server=False, publish_will=True,
                                    reconnect=True)
    assert len(actions) == 4 and session.counters.values_stored == 2


def test_what_the_error_state_accepts() -> None:
    """ERROR takes what keeps moving (values, devices, confirmations, the tail of the connection)
    and publishes nothing; misuse is still the caller's LocalProtocolError, state unchanged."""
    clock = FakeClock()
    session = make_session(clock)
    session.set_current(MetricUpdate(None, "Line/Speed", "fast", clock.now))
    connect(session)
    assert session.state is State.ERROR
    assert session.send(DataConfirmed(None, 1)) == []
    assert session.send(HistoryFetched([], exhausted=True)) == []
    with pytest.raises(LocalProtocolError, match="no metric definitions"):
        session.send(DeviceOnline("Unknown"))
    assert session.state is State.ERROR
    # a Shutdown while in ERROR: the NDEATH already went out, so only the store gets the batch
    session.submit(MetricUpdate(None, "Line/State", "Stopped", clock.now + 1))
    assert session.send(Shutdown()) == [StoreForward([MetricUpdate(None, "Line/State", "Stopped", clock.now + 1)])]
    assert session.state is State.CLOSED
    assert session.send(MqttDisconnected()) == []
    assert session.send(ConnectFailed("late")) == []


def test_the_transition_table_is_complete_and_every_state_can_fail() -> None:
    """The table is data the machine consults: every state but CLOSED can fail into ERROR, and
    ERROR is left only through the connection ending (or shutdown)."""
    assert set(TRANSITIONS) == set(State) == set(ACCEPTS)
    for source in State:
        if source not in (State.CLOSED, State.ERROR):
            assert TRANSITIONS[source][Trigger.FAILED] is State.ERROR
    assert TRANSITIONS[State.ERROR] == {Trigger.CONNECT_STARTED: State.CONNECTING,
                                        Trigger.CONNECT_FAILED: State.DISCONNECTED,
                                        Trigger.LOST: State.DISCONNECTED, Trigger.SHUTDOWN: State.CLOSED}
    assert TRANSITIONS[State.CLOSED] == {}
