"""The three amqtt 0.12.1 faults: each shown on PLAIN amqtt, then fixed in ours.

The faults: no Will on keep-alive expiry, retained messages leaking past the ACL, delivered QoS
upgraded to the subscription's.

Each test runs the same check twice. The ``PLAIN AMQTT`` half asserts the fault is there (so the
test would fail if we ran our assertions against unmodified amqtt, and tells us when upstream
fixes it); the ``OURS`` half asserts the broker behaves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.embedded_broker import EmbeddedBrokerEndpoint
from tests.support.mosquitto import BrokerEndpoint
from tests.support.procs import stop_process

from .clients import collector

HERE = Path(__file__).parent
KEEPALIVE = 2


def _unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


def will_delay_after_sigstop(url: str, will_topic: str, wait: float, watcher_url: str | None = None) -> float | None:
    """Freeze a client that has a Will; return seconds from SIGSTOP to its Will, or None."""
    with collector(watcher_url or url) as watcher:
        assert watcher.subscribe(will_topic, 1) == 1
        proc = subprocess.Popen([sys.executable, str(HERE / "will_client.py"), url, f"frozen-{uuid.uuid4().hex[:6]}",
                                 will_topic, str(KEEPALIVE)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "CONNECTED"
            os.kill(proc.pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            try:
                watcher.wait_for(will_topic, timeout=wait)
            except AssertionError:
                return None
            return time.monotonic() - frozen_at
        finally:
            stop_process(proc)


def test_will_on_keepalive_expiry_plain_amqtt_never_sends_it(plain_amqtt: BrokerEndpoint) -> None:
    # PLAIN AMQTT: handle_read_timeout() is `pass`; the frozen client's Will never comes
    delay = will_delay_after_sigstop(plain_amqtt.url, _unique("will"), wait=KEEPALIVE * 1.5 + 2)
    assert delay is None, "plain amqtt now sends the Will on keep-alive expiry: fix 1 may be dropped"


def test_will_on_keepalive_expiry_ours_within_one_and_a_half_keepalive(ours_anonymous: EmbeddedBrokerEndpoint) -> None:
    # OURS: Will within 1.5 x keep-alive of the client's last packet (it froze after that)
    delay = will_delay_after_sigstop(ours_anonymous.url, _unique("will"), wait=KEEPALIVE * 1.5 + 2)
    assert delay is not None, "no Will after keep-alive expiry"
    assert delay <= KEEPALIVE * 1.5 + 0.25, f"Will after {delay:.2f}s, keep-alive {KEEPALIVE}s"


def _retained_leak(url: str) -> list[str]:
    """Someone subscribes to T; T gets a retained message; a fresh client subscribes to nothing."""
    topic = f"spBv1.0/G1/NBIRTH/{uuid.uuid4().hex[:8]}"
    with collector(url) as other, collector(url) as publisher:
        assert other.subscribe(topic, 0) == 0
        publisher.publish(topic, b"birth", qos=1, retain=True)
        other.wait_for(topic)
        with collector(url) as fresh:
            return [m.topic for m in fresh.drain(1.0)]


def test_retained_leak_plain_amqtt_pushes_unsubscribed_retained(plain_amqtt: BrokerEndpoint) -> None:
    # PLAIN AMQTT: on CONNECT it replays retained messages for every filter in the broker
    assert any(t.startswith("spBv1.0/G1/NBIRTH/") for t in _retained_leak(plain_amqtt.url))


def test_retained_leak_ours_sends_nothing_unsubscribed(ours_anonymous: EmbeddedBrokerEndpoint) -> None:
    # OURS: a client gets retained messages only for its own subscriptions
    assert _retained_leak(ours_anonymous.url) == []


def test_retained_respects_acl_ours(secured: EmbeddedBrokerEndpoint) -> None:
    # OURS, with ACL: edge e1 subscribes to what it may read; E2's retained birth stays invisible
    e2_birth = "spBv1.0/G1/NBIRTH/E2"
    with collector(secured.url_for("host", "host-pw")) as host, collector(secured.url_for("e2", "e2-pw")) as e2:
        assert host.subscribe("spBv1.0/#", 0) == 0
        e2.publish(e2_birth, b"e2-birth", qos=0, retain=True)
        host.wait_for(e2_birth)
        with collector(secured.url_for("e1", "e1-pw")) as e1:
            assert e1.subscribe("spBv1.0/G1/NCMD/E1", 1) == 1
            assert e1.subscribe(e2_birth, 0) == 0x80, "edge e1 may not subscribe to E2's birth"
            assert e1.subscribe("spBv1.0/#", 0) == 0x80, "edge e1 may not subscribe to everything"
            assert e1.drain(1.0) == []


def _delivered_qos(url: str, publish_qos: int, subscribe_qos: int) -> int:
    topic = _unique("qos")
    with collector(url) as sub, collector(url) as pub:
        assert sub.subscribe(topic, subscribe_qos) == subscribe_qos
        pub.publish(topic, b"x", qos=publish_qos)
        return sub.wait_for(topic).qos


def test_qos_upgrade_plain_amqtt(plain_amqtt: BrokerEndpoint) -> None:
    # PLAIN AMQTT: a QoS 0 publish reaches a QoS 2 subscriber as QoS 2
    assert _delivered_qos(plain_amqtt.url, publish_qos=0, subscribe_qos=2) == 2


@pytest.mark.parametrize(("publish_qos", "subscribe_qos"), [(0, 2), (1, 2), (2, 1), (2, 0), (1, 1)])
def test_qos_is_min_of_publish_and_subscription_ours(ours_anonymous: EmbeddedBrokerEndpoint,
                                                     publish_qos: int, subscribe_qos: int) -> None:
    # OURS: MQTT 3.1.1 §3.8.4, delivered QoS = min(publish, subscription)
    assert _delivered_qos(ours_anonymous.url, publish_qos, subscribe_qos) == min(publish_qos, subscribe_qos)


def test_retained_qos_is_min_ours(ours_anonymous: EmbeddedBrokerEndpoint) -> None:
    topic = _unique("rqos")
    with collector(ours_anonymous.url) as pub:
        pub.publish(topic, b"r", qos=0, retain=True)
    with collector(ours_anonymous.url) as sub:
        assert sub.subscribe(topic, 2) == 2
        message = sub.wait_for(topic)
        assert (message.qos, message.retain, message.payload) == (0, True, b"r")
