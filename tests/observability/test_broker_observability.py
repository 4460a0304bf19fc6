"""``uns broker run``'s /metrics, /healthz and /readyz over real HTTP, moved by real MQTT clients.

Each counter is driven by what it claims to count: a refused CONNECT (wrong password), an ACL
denial (an edge user publishing outside its node), retained and Sparkplug messages (a birth
certificate), and a keep-alive expiry (a client frozen with SIGSTOP, whose Will then fires).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.observability.scrape import value
from tests.support.embedded_broker import EmbeddedBrokerEndpoint, User, embedded_broker
from tests.support.net import free_port
from tests.support.procs import stop_process

pytestmark = pytest.mark.timeout(60)

USERS = {"admin": User("admin-pw", "admin"), "e1": User("e1-pw", "edge", "G1", "E1")}


def eventually(check: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached after {timeout}s")
        time.sleep(0.1)


def scrape(broker: EmbeddedBrokerEndpoint) -> str:
    response = httpx.get(f"{broker.metrics_url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def connect(broker: EmbeddedBrokerEndpoint, user: str, password: str, client_id: str,
            *, keepalive: int = 60) -> tuple[mqtt.Client, list[int]]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(user, password)
    codes: list[int] = []
    client.on_connect = lambda c, u, f, rc, p=None: codes.append(rc.value)
    client.connect(broker.host, broker.port, keepalive=keepalive)
    client.loop_start()
    eventually(lambda: codes, f"CONNACK for {client_id}", 10)
    return client, codes


def test_broker_metrics_and_probes(tmp_path: Path) -> None:
    with embedded_broker(tmp_path, users=USERS, demo_anonymous="off", websocket=False,
                         metrics_port=free_port()) as broker:
        assert httpx.get(f"{broker.metrics_url}/healthz", timeout=5).json() == {"status": "ok", "detail": "alive"}
        ready = httpx.get(f"{broker.metrics_url}/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"started": True, "listener:tcp": True}
        text = scrape(broker)
        assert value(text, "uns_broker_up") == 1
        assert value(text, "uns_broker_clients_connected") == 0
        assert value(text, "uns_broker_listener_port", listener="tcp") == broker.port

        rejected, refused = connect(broker, "e1", "wrong", "bad-password")
        rejected.loop_stop()  # paho would retry the CONNECT and count again
        assert refused[0] != 0
        admin, codes = connect(broker, "admin", "admin-pw", "admin-1")
        edge, edge_codes = connect(broker, "e1", "e1-pw", "edge-1")
        assert codes == [0] and edge_codes == [0]
        admin.subscribe("#", qos=1)
        admin.publish("acme/plant1/retained", b"1", qos=1, retain=True).wait_for_publish(5)
        edge.publish("spBv1.0/G1/NBIRTH/E1", b"\x08\x00", qos=0).wait_for_publish(5)  # any bytes: never decoded
        edge.publish("spBv1.0/G1/NBIRTH/E2", b"\x08\x00", qos=0).wait_for_publish(5)  # not its node: denied

        def counted() -> bool:
            text = scrape(broker)
            return value(text, "uns_broker_publish_denied_total") == 1 and value(
                text, "uns_broker_birth_certificates") == 1
        eventually(counted, "ACL denial and birth certificate counted")
        text = scrape(broker)
        assert value(text, "uns_broker_clients_connected") == 2
        assert value(text, "uns_broker_connects_refused_total") == 1
        assert value(text, "uns_broker_messages_received_total") == 3
        assert (value(text, "uns_broker_messages_sent_total") or 0) >= 2  # the retained one and the NBIRTH, to admin
        assert value(text, "uns_broker_subscriptions") == 1
        # the retained message, the NBIRTH's certificate
        assert value(text, "uns_broker_retained_messages") == 2
        assert value(text, "uns_broker_duplicate_edge_node_alarms_total") == 0
        assert value(text, "uns_broker_keepalive_expired_total") == 0
        for client in (admin, edge):
            client.disconnect()
            client.loop_stop()
        eventually(lambda: value(scrape(broker), "uns_broker_clients_connected") == 0, "clients gone")


FROZEN_CLIENT = """
import sys, time
import paho.mqtt.client as mqtt
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="frozen")
c.will_set("acme/plant1/will", b"gone", qos=1)
c.connect("127.0.0.1", int(sys.argv[1]), keepalive=1)
c.loop_start()
print("connected", flush=True)
time.sleep(60)
"""


def test_keepalive_expiry_is_counted(tmp_path: Path) -> None:
    """A client that stops talking is closed after 1.5 x keep-alive: counted, and its Will fires."""
    with embedded_broker(tmp_path, websocket=False, metrics_port=free_port()) as broker:
        proc = subprocess.Popen([sys.executable, "-c", FROZEN_CLIENT, str(broker.port)], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"connected"
            eventually(lambda: value(scrape(broker), "uns_broker_clients_connected") == 1, "client connected")
            os.kill(proc.pid, signal.SIGSTOP)
            eventually(lambda: value(scrape(broker), "uns_broker_keepalive_expired_total") == 1,
                       "keep-alive expiry counted", timeout=10)
            assert value(scrape(broker), "uns_broker_clients_connected") == 0
        finally:
            stop_process(proc)  # sends SIGCONT first


def test_http_endpoint_defaults_to_the_tcp_host_and_can_be_off() -> None:
    from broker.config import BrokerSettings, Listener

    settings = BrokerSettings(tcp=Listener(host="127.0.0.1", port=1883), websocket=None,
                              demo_anonymous="read-write")
    assert settings.http_address() == ("127.0.0.1", 9101)
    off = BrokerSettings(tcp=Listener(), websocket=None, demo_anonymous="read-write", http=None)
    assert off.http_address() is None
    ws_only = BrokerSettings(tcp=None, websocket=Listener(host="10.1.2.3", port=9001), demo_anonymous="read-write",
                             http={"port": 9200})
    assert ws_only.http_address() == ("10.1.2.3", 9200)
