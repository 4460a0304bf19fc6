"""Sparkplug-aware behaviour end to end (spec chapter 10) and the duplicate edge-node alarm."""

from __future__ import annotations

import json
import os

from tests.support.embedded_broker import EmbeddedBrokerEndpoint

from .clients import collector


def test_births_are_served_retained_on_certificate_topics(secured: EmbeddedBrokerEndpoint) -> None:
    nbirth, dbirth = os.urandom(64), os.urandom(80)  # bytes are kept as sent, never decoded
    with collector(secured.url_for("e2", "e2-pw")) as edge:
        edge.publish("spBv1.0/G1/NBIRTH/E2", nbirth, qos=0)
        edge.publish("spBv1.0/G1/DBIRTH/E2/Filler", dbirth, qos=0)
        assert edge.subscribe("$sparkplug/certificates/#", 0) == 0x80  # edge nodes don't read them
    with collector(secured.url_for("host", "host-pw")) as host:
        assert host.subscribe("$sparkplug/certificates/spBv1.0/G1/+/E2/#", 1) == 1
        n = host.wait_for("$sparkplug/certificates/spBv1.0/G1/NBIRTH/E2")
        d = host.wait_for("$sparkplug/certificates/spBv1.0/G1/DBIRTH/E2/Filler")
    assert (n.payload, n.retain) == (nbirth, True)
    assert (d.payload, d.retain) == (dbirth, True)


def test_latest_birth_replaces_the_certificate(secured: EmbeddedBrokerEndpoint) -> None:
    with collector(secured.url_for("e1", "e1-pw")) as edge:
        edge.publish("spBv1.0/G1/NBIRTH/E1", b"first", qos=1)
        edge.publish("spBv1.0/G1/NBIRTH/E1", b"second", qos=1)
    with collector(secured.url_for("viewer", "viewer-pw")) as viewer:
        assert viewer.subscribe("$sparkplug/certificates/spBv1.0/G1/NBIRTH/E1", 0) == 0
        assert viewer.wait_for("$sparkplug/certificates/spBv1.0/G1/NBIRTH/E1").payload == b"second"


def test_duplicate_edge_node_raises_alarm_naming_both_clients(secured: EmbeddedBrokerEndpoint) -> None:
    alarm_topic = "$SYS/uns/alarms/duplicate-edge-node"
    with collector(secured.url_for("host", "host-pw")) as host:
        assert host.subscribe(alarm_topic, 1) == 1
        with collector(secured.url_for("e1", "e1-pw"), client_id="gateway-a") as a, \
                collector(secured.url_for("e1", "e1-pw"), client_id="gateway-b") as b:
            a.publish("spBv1.0/G1/NBIRTH/E1", b"a", qos=1)
            assert host.drain(0.3) == []  # one live client: no alarm
            b.publish("spBv1.0/G1/NBIRTH/E1", b"b", qos=1)
            alarm = json.loads(host.wait_for(alarm_topic).payload)
    assert alarm["group_id"] == "G1" and alarm["edge_node_id"] == "E1"
    assert (alarm["existing_client_id"], alarm["new_client_id"]) == ("gateway-a", "gateway-b")


def test_rebirth_after_disconnect_is_no_duplicate(secured: EmbeddedBrokerEndpoint) -> None:
    alarm_topic = "$SYS/uns/alarms/duplicate-edge-node"
    with collector(secured.url_for("host", "host-pw")) as host:
        assert host.subscribe(alarm_topic, 1) == 1
        with collector(secured.url_for("e1", "e1-pw"), client_id="gw-1") as first:
            first.publish("spBv1.0/G1/NBIRTH/E1", b"1", qos=1)
        with collector(secured.url_for("e1", "e1-pw"), client_id="gw-2") as second:
            second.publish("spBv1.0/G1/NBIRTH/E1", b"2", qos=1)
        assert [m for m in host.drain(0.5) if m.topic == alarm_topic] == []
