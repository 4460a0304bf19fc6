"""Clients we did not write, against our broker: Debian's mosquitto_pub/mosquitto_sub and paho,
over TCP, TLS (throwaway CA from the fixture) and WebSocket (paho only: Debian's 2.0.11 mosquitto
clients have no WebSocket transport)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from tests.support.embedded_broker import EmbeddedBrokerEndpoint
from tests.support.procs import stop_process

from .clients import collector, try_connect
from .test_amqtt_faults import will_delay_after_sigstop

MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
TRANSPORTS = ["mqtt", "mqtts", "ws"]


def _mosq_args(broker: EmbeddedBrokerEndpoint, scheme: str, user: str, password: str) -> list[str]:
    port = broker.tls_port if scheme == "mqtts" else broker.port
    args = ["-h", broker.host, "-p", str(port), "-u", user, "-P", password, "-V", "mqttv311"]
    if scheme == "mqtts":
        args += ["--cafile", str(broker.cafile)]
    return args


def _mosquitto_pub(broker: EmbeddedBrokerEndpoint, scheme: str, user: str, password: str, *extra: str,
                   ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOSQUITTO_PUB, *_mosq_args(broker, scheme, user, password), *extra],
                          capture_output=True, text=True, timeout=15)


def _mosquitto_sub(broker: EmbeddedBrokerEndpoint, scheme: str, user: str, password: str, *extra: str,
                   ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOSQUITTO_SUB, *_mosq_args(broker, scheme, user, password), *extra],
                          capture_output=True, text=True, timeout=15)


@pytest.mark.parametrize("scheme", TRANSPORTS)
def test_paho_authenticates_and_wrong_password_is_refused(secured: EmbeddedBrokerEndpoint, scheme: str) -> None:
    for user, password, expected in (("admin", "admin-pw", True), ("admin", "wrong", False),
                                     ("nobody", "x", False), (None, None, False)):
        client, accepted = try_connect(secured.url_for(user, password, scheme))
        client.disconnect()
        client.loop_stop()
        assert accepted is expected, (scheme, user, password)


@pytest.mark.parametrize("scheme", ["mqtt", "mqtts"])
def test_mosquitto_clients_authenticate_and_wrong_password_is_refused(secured: EmbeddedBrokerEndpoint,
                                                                      scheme: str) -> None:
    ok = _mosquitto_pub(secured, scheme, "admin", "admin-pw", "-t", "probe/auth", "-m", "x", "-q", "1")
    assert ok.returncode == 0, ok.stderr
    refused = _mosquitto_pub(secured, scheme, "admin", "wrong", "-t", "probe/auth", "-m", "x")
    assert refused.returncode != 0
    assert "not authorised" in refused.stderr.lower()


@pytest.mark.parametrize("scheme", ["mqtt", "mqtts"])
def test_mosquitto_clients_retained_and_denied(secured: EmbeddedBrokerEndpoint, scheme: str) -> None:
    topic = f"plant/{scheme}/{uuid.uuid4().hex[:6]}/_meta"
    pub = _mosquitto_pub(secured, scheme, "admin", "admin-pw", "-t", topic, "-m", "retained-1", "-r", "-q", "1")
    assert pub.returncode == 0, pub.stderr
    sub = _mosquitto_sub(secured, scheme, "viewer", "viewer-pw", "-t", topic, "-C", "1", "-W", "5", "-v")
    assert sub.stdout.strip() == f"{topic} retained-1", sub.stderr
    # edge e1 may not subscribe outside its NCMD/DCMD/STATE
    denied = _mosquitto_sub(secured, scheme, "e1", "e1-pw", "-t", topic, "-C", "1", "-W", "3")
    assert "denied" in (denied.stdout + denied.stderr).lower()
    assert "retained-1" not in denied.stdout


@pytest.mark.parametrize("scheme", ["mqtt", "mqtts"])
def test_mosquitto_pub_forbidden_topic_is_dropped(secured: EmbeddedBrokerEndpoint, scheme: str) -> None:
    with collector(secured.url_for("admin", "admin-pw")) as watcher:
        assert watcher.subscribe("spBv1.0/G1/#", 0) == 0
        forbidden = _mosquitto_pub(secured, scheme, "e1", "e1-pw",
                                   "-t", "spBv1.0/G1/NDATA/E2", "-m", "forged", "-q", "1")
        allowed = _mosquitto_pub(secured, scheme, "e1", "e1-pw", "-t", "spBv1.0/G1/NDATA/E1", "-m", "mine", "-q", "1")
        assert forbidden.returncode == 0 and allowed.returncode == 0  # MQTT 3.1.1 cannot say "denied"
        assert watcher.wait_for("spBv1.0/G1/NDATA/E1").payload == b"mine"
        assert all(m.topic != "spBv1.0/G1/NDATA/E2" for m in watcher.drain(0.3))


@pytest.mark.parametrize("scheme", TRANSPORTS)
def test_paho_retained_acl_and_denied_publish(secured: EmbeddedBrokerEndpoint, scheme: str) -> None:
    topic = "spBv1.0/G1/NBIRTH/E1"
    with collector(secured.url_for("e1", "e1-pw", scheme)) as edge:
        edge.publish(topic, f"birth-{scheme}".encode(), qos=0, retain=True)
        edge.publish("spBv1.0/G1/NCMD/E1", b"edge may not command", qos=1)  # dropped
        assert edge.subscribe("spBv1.0/G1/NCMD/E1", 1) == 1
        assert edge.subscribe("$SYS/#", 0) == 0x80
    with collector(secured.url_for("viewer", "viewer-pw", scheme)) as viewer:
        assert viewer.subscribe("spBv1.0/G1/+/E1", 1) == 1
        message = viewer.wait_for(topic)
        assert (message.payload, message.retain) == (f"birth-{scheme}".encode(), True)
        assert all(m.topic != "spBv1.0/G1/NCMD/E1" for m in viewer.drain(0.3))
        viewer.publish("plant/x", b"read-only")
        assert viewer.subscribe("$SYS/broker/version", 0) == 0
        assert b"amqtt" in viewer.wait_for("$SYS/broker/version").payload


@pytest.mark.parametrize("scheme", ["mqtts", "ws"])
def test_paho_will_after_sigstop(secured: EmbeddedBrokerEndpoint, scheme: str) -> None:
    delay = will_delay_after_sigstop(secured.url_for("e1", "e1-pw", scheme), "spBv1.0/G1/NDEATH/E1", wait=5,
                                     watcher_url=secured.url_for("host", "host-pw", scheme))
    assert delay is not None and delay <= 3.25, delay


def test_mosquitto_sub_will_after_sigstop(secured: EmbeddedBrokerEndpoint) -> None:
    """mosquitto_sub (keep-alive 5 s, its minimum) as the frozen edge node; NDEATH within 7.5 s."""
    will_topic = "spBv1.0/G1/NDEATH/E2"
    with collector(secured.url_for("host", "host-pw")) as host:
        assert host.subscribe(will_topic, 1) == 1
        proc = subprocess.Popen([MOSQUITTO_SUB, *_mosq_args(secured, "mqtt", "e2", "e2-pw"), "-k", "5",
                                 "-t", "spBv1.0/G1/NCMD/E2", "--will-topic", will_topic,
                                 "--will-payload", "ndeath", "--will-qos", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)  # connected and subscribed long before (loopback); it prints nothing until a message
            assert proc.poll() is None, "mosquitto_sub exited: refused?"
            os.kill(proc.pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            message = host.wait_for(will_topic, timeout=10)
            delay = time.monotonic() - frozen_at
        finally:
            stop_process(proc)
    assert message.payload == b"ndeath"
    assert delay <= 7.75, delay


def test_will_on_a_topic_the_user_may_not_publish_is_refused(secured: EmbeddedBrokerEndpoint) -> None:
    from uns.mqtt_url import paho_client, parse_broker_url

    url = parse_broker_url(secured.url_for("e1", "e1-pw"))
    client = paho_client(url, client_id="e1-bad-will")
    client.will_set("spBv1.0/G1/NDEATH/E2", b"forged death")
    import queue

    outcome: queue.Queue[bool] = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: outcome.put(rc.is_failure)
    client.connect(url.host, url.port)
    client.loop_start()
    try:
        assert outcome.get(timeout=10) is True
    finally:
        client.disconnect()
        client.loop_stop()
