"""EdgeSession without a network: rebirth, primary host gating, store-and-forward, delivery confirmation."""

from __future__ import annotations

import pytest

from edge_node.model import DeviceOnline, MetricDefinition, MetricUpdate
from edge_node.session import (
    CommandReceived,
    ConnectStarted,
    DataConfirmed,
    DeliverCommand,
    Disconnect,
    EdgeSession,
    FetchHistory,
    HistoryFetched,
    LocalProtocolError,
    MqttConnected,
    MqttDisconnected,
    SessionSettings,
    Shutdown,
    State,
    StoreDelete,
    StoreForward,
    Tick,
)
from uns.conventions import BDSEQ, NODE_NEXT_SERVER, NODE_REBIRTH
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload
from uns.sparkplug.topic import MessageType

from .session_helpers import FakeClock, connect, make_session, publishes, raw, state


def ncmd(*metrics: Metric) -> bytes:
    return encode_payload(Payload(metrics=list(metrics), timestamp=1), MessageType.NCMD)


REBIRTH = Metric(name=NODE_REBIRTH, value=True, datatype=DataType.Boolean)


def of_type(actions: list[object], kind: type) -> list[object]:
    return [a for a in actions if isinstance(a, kind)]


# -- rebirth -------------------------------------------------------------------------------------


def test_rebirth_same_bdseq_seq_reset_and_throttled() -> None:
    """tck-id-operational-behavior-data-commands-rebirth-action-1/2/3; throttling."""
    clock = FakeClock()
    session = make_session(clock, rebirth_throttle_ms=5000)
    connect(session)
    session.submit(MetricUpdate("Filler", "Count", 1, clock.now))
    session.send(Tick())
    clock.advance(6000)
    actions = session.send(CommandReceived(None, ncmd(REBIRTH)))
    births = publishes(actions)
    assert [p.message_type for p in births] == [MessageType.NBIRTH, MessageType.DBIRTH]
    assert [raw(p).seq for p in births] == [0, 1]
    assert {m.name: m.long_value for m in raw(births[0]).metrics}[BDSEQ] == 0  # same bdSeq, no new CONNECT
    count = {m.name: m.long_value for m in raw(births[1]).metrics}["Count"]
    assert count == 1  # the birth carries current values
    assert session.counters.rebirths == 1
    # a second request inside the window is deferred, then honoured by a Tick
    clock.advance(1000)
    assert publishes(session.send(CommandReceived(None, ncmd(REBIRTH)))) == []
    assert session.counters.rebirths_throttled == 1
    clock.advance(1000)
    assert publishes(session.send(Tick()), MessageType.NBIRTH) == []
    clock.advance(3000)
    assert len(publishes(session.send(Tick()), MessageType.NBIRTH)) == 1


def test_other_command_metrics_go_to_the_handler_and_bad_commands_are_counted() -> None:
    session = make_session()
    connect(session)
    alias = session.alias_of("Filler", "Running")
    dcmd = encode_payload(Payload(metrics=[Metric(alias=alias, value=True, datatype=DataType.Boolean)], timestamp=1),
                          MessageType.DCMD)
    actions = session.send(CommandReceived("Filler", dcmd))
    deliver = of_type(actions, DeliverCommand)
    assert len(deliver) == 1 and deliver[0].device_id == "Filler"  # type: ignore[attr-defined]
    assert deliver[0].metrics[0].name == "Running" and deliver[0].metrics[0].value is True  # type: ignore[attr-defined]
    # a peer breaking Sparkplug is counted, never raised
    assert session.send(CommandReceived(None, b"\xff\xff\xff garbage")) == []
    assert session.send(CommandReceived(None, ncmd(Metric(alias=999, value=1, datatype=DataType.Int32)))) == []
    assert session.send(CommandReceived("Nope", dcmd)) == []
    assert session.counters.bad_commands == 3
    # Rebirth=false does nothing
    assert session.send(CommandReceived(None, ncmd(Metric(name=NODE_REBIRTH, value=False,
                                                           datatype=DataType.Boolean)))) == []


def test_next_server_ncmd_ndeath_then_disconnect_to_the_next_broker() -> None:
    """``Node Control/Next Server`` (optional in 3.0): NDEATH with this session's bdSeq
    (tck-id-payloads-ndeath-bdseq), then a disconnect that moves to the next server; false does nothing."""
    session = make_session()
    connect(session)
    off = Metric(name=NODE_NEXT_SERVER, value=False, datatype=DataType.Boolean)
    assert session.send(CommandReceived(None, ncmd(off))) == [] and session.state is State.ONLINE
    actions = session.send(CommandReceived(None, ncmd(Metric(name=NODE_NEXT_SERVER, value=True,
                                                              datatype=DataType.Boolean))))
    ndeath = publishes(actions, MessageType.NDEATH)
    assert len(ndeath) == 1 and {m.name: m.long_value for m in raw(ndeath[0]).metrics}[BDSEQ] == session.bd_seq
    disconnect = of_type(actions, Disconnect)
    assert len(disconnect) == 1 and disconnect[0].next_server and disconnect[0].publish_will  # type: ignore[attr-defined]
    assert session.state is State.DISCONNECTING and session.counters.next_server_requests == 1
    # a tag map cannot take the name
    with pytest.raises(LocalProtocolError, match="reserved"):
        EdgeSession(SessionSettings(group_id="G", edge_node_id="E"),
                    [MetricDefinition(device_id=None, name=NODE_NEXT_SERVER, datatype=DataType.Boolean)])


# -- primary host ----------------------------------------------------------------------------------


def test_no_birth_before_primary_host_online() -> None:
    """tck-id-message-flow-edge-node-birth-publish-phid-wait, -wait-id, -wait-online, -wait-timestamp."""
    session = make_session(primary_host_id="H")
    actions = connect(session)
    assert publishes(actions) == []
    assert "spBv1.0/STATE/H" in [f for a in actions if hasattr(a, "filters") for f in a.filters]  # type: ignore[attr-defined]
    assert session.state is State.WAITING_HOST
    assert publishes(session.send(state("Other", True, 10))) == []  # another host's STATE does not count
    assert publishes(session.send(state("H", False, 10))) == []  # offline does not birth
    assert session.send(state("H", True, 5)) == []  # older than the last STATE seen: stale
    assert session.counters.stale_state == 1
    assert session.send(state("H", True, 1)) == []
    births = publishes(session.send(state("H", True, 11)))
    assert births[0].message_type is MessageType.NBIRTH and session.state is State.ONLINE


def test_host_offline_ndeath_and_disconnect_but_an_older_offline_is_ignored() -> None:
    """tck-id-message-flow-edge-node-birth-publish-phid-offline, …-termination-host-offline(-timestamp)."""
    clock = FakeClock()
    session = make_session(clock, primary_host_id="H")
    connect(session)
    session.send(state("H", True, 100))
    assert session.send(state("H", False, 99)) == []  # older than the online: a stale Will
    assert session.state is State.ONLINE
    session.submit(MetricUpdate("Filler", "Count", 1, clock.now))
    actions = session.send(state("H", False, 100))  # same timestamp counts
    ndeath = publishes(actions, MessageType.NDEATH)
    assert len(ndeath) == 1 and ndeath[0].qos == 1 and ndeath[0].fence
    assert {m.name: m.long_value for m in raw(ndeath[0]).metrics} == {BDSEQ: 0}
    disconnect = of_type(actions, Disconnect)[0]
    assert disconnect.next_server  # type: ignore[attr-defined]
    assert session.state is State.DISCONNECTING
    # stop and buffer: the pending change goes to the store, not on the wire
    tick = session.send(Tick())
    assert publishes(tick) == [] and len(of_type(tick, StoreForward)) == 1
    session.send(MqttDisconnected())
    assert session.state is State.DISCONNECTED


def test_values_confirmed_shortly_before_the_host_died_are_stored_again_for_its_next_run() -> None:
    """Rule 15 (ours, beside tck-id-message-flow-edge-node-birth-publish-phid-offline): the broker
    routed these values, but a host killed before it stored them lost them; what was confirmed within
    host_loss_resend_ms before the accepted offline STATE goes to the store with what is in flight,
    replayed as historical after the host is back. Older values and a connection loss of our own
    re-send nothing."""
    clock = FakeClock()
    session = make_session(clock, primary_host_id="H", host_loss_resend_ms=2000)
    connect(session)
    session.send(state("H", True, 100))

    def published(value: int, *, confirm: bool = True) -> None:
        session.submit(MetricUpdate("Filler", "Count", value, clock.now))
        (data,) = publishes(session.send(Tick()), MessageType.DDATA)
        if confirm:
            session.send(DataConfirmed(data.seq, data.connection))
        clock.advance(500)

    published(1)  # confirmed 3 s before the host's death: stored by any live host by then
    clock.advance(1000)
    for value in (2, 3, 4):  # confirmed within the last 2 s
        published(value)
    # a replayed row confirmed in the window is stored again too (it was deleted from the store)
    fetch_rows = [MetricUpdate(None, "Line/Speed", 7.5, clock.now - 10_000, is_historical=True, seq_id=41)]
    session.send(Tick())
    replay = publishes(session.send(HistoryFetched(fetch_rows, exhausted=True)), MessageType.NDATA)
    assert [StoreDelete] == [type(a) for a in session.send(DataConfirmed(replay[0].seq, replay[0].connection))]
    published(5, confirm=False)  # in flight: stored with them, before the NDEATH's fence confirms it

    actions = session.send(state("H", False, 200))
    assert [type(a).__name__ for a in actions] == ["StoreForward", "Publish", "Disconnect"]  # before the NDEATH
    resent = of_type(actions, StoreForward)[0].updates  # type: ignore[attr-defined]
    assert [(u.name, u.value) for u in resent] == [("Count", 2), ("Count", 3),
                                                   ("Count", 4), ("Line/Speed", 7.5), ("Count", 5)]
    assert session.counters.values_resent_after_host_loss == 5
    ndeath = publishes(actions, MessageType.NDEATH)[0]
    assert session.send(DataConfirmed(ndeath.seq, ndeath.connection)) == []  # the fence confirms nothing now
    assert of_type(session.send(MqttDisconnected("host offline")), StoreForward) == []  # each value stored once

    # the host comes back: the next offline re-sends only what was confirmed since
    session.send(ConnectStarted())
    session.send(MqttConnected())
    session.send(state("H", True, 300))
    clock.advance(100)
    published(6)
    session.send(MqttDisconnected("broker gone"))  # our own connection loss: nothing re-sent
    session.send(ConnectStarted())
    session.send(MqttConnected())
    session.send(state("H", True, 301))
    assert [u.value for u in of_type(session.send(state("H", False, 400)), StoreForward)[0].updates] == [6]  # type: ignore[attr-defined]


def test_no_resend_at_host_loss_when_it_is_off() -> None:
    clock = FakeClock()
    session = make_session(clock, primary_host_id="H")  # host_loss_resend_ms 0
    connect(session)
    session.send(state("H", True, 100))
    session.submit(MetricUpdate("Filler", "Count", 1, clock.now))
    (data,) = publishes(session.send(Tick()), MessageType.DDATA)
    session.send(DataConfirmed(data.seq, data.connection))
    assert of_type(session.send(state("H", False, 200)), StoreForward) == []
    assert session.counters.values_resent_after_host_loss == 0


def test_waiting_for_host_with_several_servers_walks_to_the_next() -> None:
    """tck-id-operational-behavior-primary-application-state-with-multiple-servers-walk."""
    session = make_session(primary_host_id="H", several_servers=True)
    connect(session)
    actions = session.send(state("H", False, 5))
    assert [type(a) for a in actions] == [Disconnect] and actions[0].next_server  # type: ignore[attr-defined]


# -- store and forward ------------------------------------------------------------------------------


def test_changes_while_disconnected_go_to_the_store_then_replay_as_historical_in_order() -> None:
    clock = FakeClock()
    session = make_session(clock)
    session.send(DeviceOnline("Filler"))
    for value in range(3):
        session.submit(MetricUpdate("Filler", "Count", value, clock.now + value))
    stored = of_type(session.send(Tick()), StoreForward)
    assert [u.value for u in stored[0].updates] == [0, 1, 2]  # type: ignore[attr-defined]
    session.send(ConnectStarted())
    births = session.send(MqttConnected())
    session.submit(MetricUpdate("Filler", "Count", 10, clock.now + 50))
    actions = session.send(Tick())
    # live first, then the backlog request
    assert [type(a).__name__ for a in actions if type(a).__name__ in ("Publish", "FetchHistory")] == \
        ["Publish", "FetchHistory"]
    fetch = of_type(actions, FetchHistory)[0]
    assert fetch.after is None and "Filler" in fetch.devices and None in fetch.devices  # type: ignore[attr-defined]
    rows = [MetricUpdate("Filler", "Count", v, clock.now + v, is_historical=True, seq_id=100 + v) for v in range(3)]
    replay = publishes(session.send(HistoryFetched(rows, exhausted=True)), MessageType.DDATA)
    metrics = raw(replay[0]).metrics
    assert [m.long_value for m in metrics] == [0, 1, 2] and all(m.is_historical for m in metrics)
    assert len(births) > 0
    # confirmed → the rows are deleted from the store
    deletes = of_type(session.send(DataConfirmed(replay[0].seq)), StoreDelete)
    assert sorted(deletes[0].ids) == [100, 101, 102]  # type: ignore[attr-defined]
    assert of_type(session.send(Tick()), FetchHistory) == []  # exhausted, nothing new stored


def test_unconfirmed_live_values_go_to_the_store_on_connection_loss() -> None:
    clock = FakeClock()
    session = make_session(clock)
    connect(session)
    session.submit(MetricUpdate("Filler", "Count", 1, clock.now))
    first = publishes(session.send(Tick()), MessageType.DDATA)[0]
    session.submit(MetricUpdate("Filler", "Count", 2, clock.now + 1))
    publishes(session.send(Tick()), MessageType.DDATA)
    session.send(DataConfirmed(first.seq, first.connection))  # only the first was echoed
    session.submit(MetricUpdate("Filler", "Count", 3, clock.now + 2))  # still pending
    stored = of_type(session.send(MqttDisconnected("broker gone")), StoreForward)
    assert [u.value for u in stored[0].updates] == [2, 3]  # type: ignore[attr-defined]
    assert session.counters.values_confirmed == 1


def test_confirmation_of_an_old_connection_is_ignored() -> None:
    clock = FakeClock()
    session = make_session(clock)
    connect(session)
    session.submit(MetricUpdate("Filler", "Count", 1, clock.now))
    publishes(session.send(Tick()))
    assert session.in_flight_values == 1
    session.send(DataConfirmed(None, connection=session.connection - 1))
    assert session.in_flight_values == 1
    session.send(DataConfirmed(None, connection=session.connection))
    assert session.in_flight_values == 0


def test_historical_rows_in_flight_are_not_sent_twice_after_a_dbirth_restarts_the_replay() -> None:
    clock = FakeClock()
    session = make_session(clock, has_backlog=True)
    connect(session)
    fetch = of_type(session.send(Tick()), FetchHistory)[0]
    rows = [MetricUpdate(None, "Line/Speed", float(v), clock.now + v, is_historical=True, seq_id=v + 1)
            for v in range(4)]
    assert len(publishes(session.send(HistoryFetched(rows, exhausted=False)))) == 1
    session.send(DeviceOnline("Capper"))  # a DBIRTH restarts the replay from the oldest row
    fetch = of_type(session.send(Tick()), FetchHistory)[0]
    assert fetch.after is None  # type: ignore[attr-defined]
    assert publishes(session.send(HistoryFetched(rows, exhausted=True))) == []  # all four still in flight


def test_clean_shutdown_flushes_then_ndeath_then_disconnect() -> None:
    """tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath."""
    clock = FakeClock()
    session = make_session(clock)
    connect(session)
    session.submit(MetricUpdate("Filler", "Count", 1, clock.now))
    actions = session.send(Shutdown())
    kinds = [getattr(a, "message_type", type(a).__name__) for a in actions]
    assert kinds == [MessageType.DDATA, MessageType.NDEATH, "Disconnect"]
    assert session.state is State.CLOSED
    session.send(DataConfirmed(None, session.connection))  # the NDEATH's PUBACK: everything before is in
    assert of_type(session.send(MqttDisconnected()), StoreForward) == []
