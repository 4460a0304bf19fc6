"""HostSession: the STATE lifecycle rules, event by event, without a network."""

from __future__ import annotations

import json

import pytest

from mes_adapter.host.session import Disconnect, HostSession, Publish, SessionState
from uns.sparkplug.errors import LocalProtocolError, MalformedPayloadError


def online_session(t: int = 1000) -> HostSession:
    session = HostSession("mes")
    session.connect(t)
    session.connected()
    session.subscribed()
    return session


def test_will_and_birth_share_the_connect_timestamp() -> None:
    """tck-id-host-topic-phid-death-payload-timestamp-connect, tck-id-host-topic-phid-birth-payload-timestamp,
    tck-id-payloads-state-will-message-qos/-retain, tck-id-host-topic-phid-birth-qos/-retain."""
    session = HostSession("mes")
    will = session.connect(1_700_000_000_123)
    assert (will.topic, will.qos, will.retain) == ("spBv1.0/STATE/mes", 1, True)
    assert json.loads(will.payload) == {"online": False, "timestamp": 1_700_000_000_123}
    subscribe = session.connected()
    birth = session.subscribed()
    assert (birth.topic, birth.qos, birth.retain) == ("spBv1.0/STATE/mes", 1, True)
    assert json.loads(birth.payload) == {"online": True, "timestamp": 1_700_000_000_123}
    assert b'"timestamp":1700000000123' in birth.payload  # a JSON integer, not 1.7e12
    # tck-id-host-topic-phid-birth-sub-required: own STATE and literally spBv1.0/#; certificates first
    assert [f for f, _ in subscribe.filters] == ["$sparkplug/certificates/spBv1.0/#", "spBv1.0/STATE/mes", "spBv1.0/#"]
    assert session.state is SessionState.ONLINE


def test_birth_only_after_subscribe() -> None:
    """tck-id-host-topic-phid-birth-required: the birth follows the SUBACK, never before."""
    session = HostSession("mes")
    session.connect(1)
    with pytest.raises(LocalProtocolError):
        session.subscribed()


def test_reasserts_online_with_the_original_timestamp() -> None:
    """tck-id-message-flow-hid-sparkplug-state-message-delivered."""
    session = online_session(5000)
    actions = session.state_received(b'{"online": false, "timestamp": 6000}')
    assert len(actions) == 1 and isinstance(actions[0], Publish)
    assert json.loads(actions[0].payload) == {"online": True, "timestamp": 5000}
    assert actions[0].retain and actions[0].qos == 1
    assert session.reasserted == 1


def test_stale_offline_of_an_older_session_is_ignored() -> None:
    session = online_session(5000)
    assert session.state_received(b'{"online": false, "timestamp": 4000}') == []
    assert session.state_received(b'{"online": true, "timestamp": 5000}') == []  # our own birth echoed
    assert session.stale_offline_ignored == 1 and session.foreign_online_seen == 0
    session.state_received(b'{"online": true, "timestamp": 1}')
    assert session.foreign_online_seen == 1  # another host uses our id


def test_malformed_state_is_a_remote_error() -> None:
    session = online_session()
    with pytest.raises(MalformedPayloadError):
        session.state_received(b"OFFLINE")  # the 2.2 form is not 3.0
    with pytest.raises(MalformedPayloadError):
        session.state_received(b'{"online": false, "timestamp": 1.7e12}')


def test_clean_shutdown_publishes_offline_with_current_time_then_disconnects() -> None:
    """tck-id-host-topic-phid-death-payload-timestamp-disconnect-clean,
    tck-id-operational-behavior-host-application-death-qos/-retained."""
    session = online_session(1000)
    actions = session.shutdown(9000)
    assert isinstance(actions[0], Publish) and isinstance(actions[1], Disconnect)
    assert json.loads(actions[0].payload) == {"online": False, "timestamp": 9000}
    assert (actions[0].qos, actions[0].retain) == (1, True)
    session.closed()
    assert session.state is SessionState.CLOSED


def test_reconnect_gets_a_new_timestamp() -> None:
    session = online_session(1000)
    session.connection_lost()
    will = session.connect(2000)
    session.connected()
    assert json.loads(will.payload)["timestamp"] == 2000
    assert json.loads(session.subscribed().payload) == {"online": True, "timestamp": 2000}


def test_misuse_is_a_local_error() -> None:
    session = HostSession("mes")
    with pytest.raises(LocalProtocolError):
        session.connected()
    session.connect(1)
    with pytest.raises(LocalProtocolError):
        session.connect(2)
