"""Client ids have owners, and a takeover closes the old connection (issue 13, item 1; MQTT-3.1.4-2).

The attack: with anonymous read-only access on (what `uns up` runs), a client with no credentials
connected as ``uns-host-uns-mes`` got CONNACK 0; the real host stayed connected but its session
was gone, so it received nothing while looking healthy. Now:

* a client id the role table gives to a role (``uns-edge-{group}-{edge}`` to that edge user,
  ``uns-host-*`` to hosts; ``reserved_client_ids``) is refused to everyone else with CONNACK 0x05
  (not authorized), and the holder keeps its connection and its routing (counted exactly);
* any other id held by an authenticated user can't be taken over by another user;
* a takeover by the owner closes the old connection (MQTT-3.1.4-2), publishes its Will, and the
  new connection gets every message. Mosquitto does the same takeover (checked here too); it can't
  tie ids to users (docs/security.md), so only the takeover is compared.

Real brokers only: ``uns broker run`` and Mosquitto as subprocesses, paho clients.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from broker.acl import Principal
from broker.client_ids import ClientIdPatternError, ClientIdPolicy, fill, validate_pattern
from broker.config import BrokerSettings
from broker.policy import merged_roles
from tests.broker.conftest import USERS
from tests.support.embedded_broker import EmbeddedBrokerEndpoint, embedded_broker
from tests.support.mosquitto import BrokerEndpoint, mosquitto_broker
from uns.mqtt_url import paho_client, parse_broker_url

pytestmark = pytest.mark.timeout(60)

NOT_AUTHORIZED = 0x87  # CONNACK 0x05 "not authorized" (MQTT 3.1.1), as paho 2 reports it (MQTT 5 reason code)
HOST_ID = "uns-host-uns-mes"
EDGE_ID = "uns-edge-G1-E1"  # what edge_node derives for group G1, edge node E1


@dataclass
class Conn:
    """One paho connection that records its CONNACK code, its messages and when it was dropped."""

    client: paho.Client
    connack: queue.Queue[int] = field(default_factory=queue.Queue)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    dropped: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def wait_connack(self) -> int:
        return self.connack.get(timeout=10)

    def subscribe(self, topic_filter: str) -> None:
        self.client.subscribe(topic_filter, 1)
        assert self.subscribed.wait(5), "no SUBACK"

    def count(self, topic_prefix: str) -> int:
        return sum(1 for t, _ in list(self.messages) if t.startswith(topic_prefix))


@contextmanager
def connection(url: str, client_id: str, *, user: str | None = None, password: str | None = None,
               clean: bool = True, will: tuple[str, bytes] | None = None, reconnect_s: int = 30) -> Iterator[Conn]:
    parsed = parse_broker_url(url)
    client = paho_client(parsed, client_id=client_id, clean_session=clean)
    client.reconnect_delay_set(reconnect_s, 2 * reconnect_s)  # by default a dropped client stays dropped
    if user:
        client.username_pw_set(user, password)
    if will:
        client.will_set(will[0], will[1], qos=1)
    conn = Conn(client)
    client.on_connect = lambda c, u, f, rc, p: conn.connack.put(rc.value)
    client.on_message = lambda c, u, m: conn.messages.append((m.topic, m.payload))
    client.on_subscribe = lambda c, u, mid, codes, p: conn.subscribed.set()
    client.on_disconnect = lambda c, u, f, rc, p: conn.dropped.set()
    client.connect(parsed.host, parsed.port, keepalive=30)
    client.loop_start()
    try:
        yield conn
    finally:
        client.disconnect()
        client.loop_stop()


def publish_n(url: str, topic_prefix: str, n: int) -> None:
    """``n`` QoS 1 messages from a separate admin-ish client, each acknowledged by the broker."""
    with connection(url, f"pub-{time.monotonic_ns()}", user="admin", password=USERS["admin"].password) as pub:
        assert pub.wait_connack() == 0
        for i in range(n):
            pub.client.publish(f"{topic_prefix}/{i}", b"x", qos=1).wait_for_publish(5)


def eventually(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBrokerEndpoint]:
    """Users + anonymous read-only: exactly the `uns up` footing of the attack."""
    with embedded_broker(tmp_path_factory.mktemp("ids"), users=USERS, demo_anonymous="read-only",
                         websocket=False) as endpoint:
        yield endpoint


def url(broker: BrokerEndpoint) -> str:
    return f"mqtt://{broker.host}:{broker.port}"


# ---- the policy itself (no I/O) ---------------------------------------------------------------------

def test_the_default_policy_gives_each_reserved_id_to_its_owner_only() -> None:
    policy = ClientIdPolicy.of(merged_roles({}))
    host = Principal("mes", "host", HOST_ID)
    e1, e2 = Principal("e1", "edge", EDGE_ID, "G1", "E1"), Principal("e2", "edge", EDGE_ID, "G1", "E2")
    anonymous_reader = Principal(None, "explorer", HOST_ID)
    assert policy.refusal(HOST_ID, host, None) is None
    assert policy.refusal(HOST_ID + "-mirror", host, None) is None
    assert policy.refusal("uns-adapter-uns-mes", host, None) is None  # the MES adapter's UNS link
    assert policy.refusal("uns-adapter-uns-mes", anonymous_reader, None) is not None
    assert policy.refusal(EDGE_ID, e1, None) is None
    assert policy.refusal(EDGE_ID, e2, None) == (
        "client id 'uns-edge-G1-E1' is reserved (reserved_client_ids) and user 'e2' (role edge) does not own it")
    assert policy.refusal(HOST_ID, anonymous_reader, None) == (
        "client id 'uns-host-uns-mes' is reserved (reserved_client_ids) and an anonymous client (role explorer) "
        "does not own it")
    assert policy.refusal(HOST_ID, e1, None) is not None
    # an id nobody reserves: free, but not to be taken from an authenticated holder by someone else
    assert policy.refusal("my-tool", anonymous_reader, None) is None
    assert policy.refusal("my-tool", anonymous_reader, Principal(None, "explorer")) is None
    assert policy.refusal("my-tool", e2, e1) == (
        "client id 'my-tool' is held by user 'e1'; user 'e2' (role edge) may not take it over")
    assert policy.refusal("my-tool", e1, e1) is None
    assert policy.refusal("my-tool", Principal("root", "admin"), e1) is None  # admin owns every id


def test_the_edge_template_is_filled_like_the_edge_derives_its_id() -> None:
    # edge_node.sparkplug_config: uns-edge-<group>-<edge>, every char outside [alnum-_.] -> "_"
    principal = Principal("line1", "edge", "", "acme:plant1", "packaging:Line1")
    assert fill("uns-edge-{group}-{edge}", principal) == "uns-edge-acme_plant1-packaging_Line1"
    assert fill("tool-{username}-*", principal) == "tool-line1-*"
    with pytest.raises(ClientIdPatternError, match="unknown placeholder"):
        fill("uns-edge-{site}", principal)
    with pytest.raises(ClientIdPatternError, match="only at the end"):
        validate_pattern("uns-*-edge")


def test_reserved_ids_and_role_claims_are_configurable() -> None:
    settings = BrokerSettings.model_validate({
        "demo_anonymous": "read-only", "reserved_client_ids": ["plc-*"],
        "roles": {"scada": {"subscribe": ["#"], "client_ids": ["plc-{username}"]}}})
    policy = ClientIdPolicy.of(merged_roles(settings.custom_roles()), settings.reserved_client_ids)
    assert policy.refusal("plc-s1", Principal("s1", "scada"), None) is None
    assert policy.refusal("plc-s2", Principal("s1", "scada"), None) is not None
    assert policy.refusal(HOST_ID, Principal(None, "explorer"), None) is None  # no longer reserved
    with pytest.raises(ValueError, match="only at the end"):
        BrokerSettings.model_validate({"demo_anonymous": "read-only", "reserved_client_ids": ["*-x"]})


# ---- the embedded broker ------------------------------------------------------------------------------

@pytest.mark.parametrize(("client_id", "owner", "intruder"), [
    (HOST_ID, "host", None),          # the attack of issue 13: anonymous as the host
    (EDGE_ID, "e1", None),            # anonymous as the edge node
    (EDGE_ID, "e1", "e2"),            # another edge user as this edge node
    (HOST_ID, "host", "viewer"),      # a read-only user as the host
])
def test_a_takeover_by_a_non_owner_is_refused_and_the_holder_keeps_working(
        broker: EmbeddedBrokerEndpoint, client_id: str, owner: str, intruder: str | None) -> None:
    prefix = f"t/{client_id}/{intruder}"
    # the edge role may only read its own Sparkplug topics: it counts the NCMDs sent to it
    topic = "spBv1.0/G1/NCMD/E1" if owner == "e1" else prefix
    with connection(url(broker), client_id, user=owner, password=USERS[owner].password) as holder:
        assert holder.wait_connack() == 0
        holder.subscribe(topic if owner == "e1" else f"{prefix}/#")
        with connection(url(broker), client_id, user=intruder,
                        password=USERS[intruder].password if intruder else None) as attacker:
            assert attacker.wait_connack() == NOT_AUTHORIZED
            time.sleep(0.5)  # the attacker "holds" its attempt, as in the issue (3-4 s there)
        if owner == "e1":
            with connection(url(broker), f"pub-{time.monotonic_ns()}", user="host",
                            password=USERS["host"].password) as pub:
                assert pub.wait_connack() == 0
                for _ in range(20):
                    pub.client.publish(topic, b"cmd", qos=1).wait_for_publish(5)
            eventually(lambda: holder.count(topic) == 20)
        else:
            publish_n(url(broker), prefix, 20)
            eventually(lambda: holder.count(prefix) == 20)
        assert not holder.dropped.is_set(), "the refused CONNECT disconnected the rightful holder"
    log = broker.log_path.read_text() if broker.log_path else ""
    assert f"refused client '{client_id}'" in log


@pytest.mark.parametrize("intruder", [None, "host-wrong-password"])
def test_a_persistent_session_is_not_touched_by_a_refused_connect(broker: EmbeddedBrokerEndpoint,
                                                                   intruder: str | None) -> None:
    """amqtt reuses a persistent session object for a new CONNECT before it authenticates it: a
    refusal must put the holder's identity back, or its ACL (and Will) would be the intruder's."""
    client_id = f"uns-host-persistent-{intruder}"
    prefix = f"p/{intruder}"
    will_watch_id = f"watch-{time.monotonic_ns()}"
    with connection(url(broker), will_watch_id, user="host", password=USERS["host"].password) as watcher:
        assert watcher.wait_connack() == 0
        watcher.subscribe("will/#")
        with connection(url(broker), client_id, user="host", password=USERS["host"].password, clean=False,
                        will=("will/holder", b"holder-will")) as holder:
            assert holder.wait_connack() == 0
            holder.subscribe(f"{prefix}/#")
            user, password = ("host", "wrong") if intruder else (None, None)
            # (a Will the anonymous reader may not publish would be refused for that alone: none here)
            with connection(url(broker), client_id, user=user, password=password, clean=False,
                            will=("will/intruder", b"intruder-will") if intruder else None) as attacker:
                assert attacker.wait_connack() == NOT_AUTHORIZED
            publish_n(url(broker), prefix, 10)
            eventually(lambda: holder.count(prefix) == 10)
            assert not holder.dropped.is_set()
            holder.client.socket().close()  # the holder dies without DISCONNECT: its own Will is due
            eventually(lambda: watcher.count("will/") == 1)
        time.sleep(0.3)
        assert watcher.messages == [("will/holder", b"holder-will")]


def test_the_owner_takes_over_the_old_connection_is_closed_and_routing_follows(
        broker: EmbeddedBrokerEndpoint) -> None:
    """MQTT-3.1.4-2: the old connection is closed (its Will published), the new one gets everything."""
    client_id = "uns-host-takeover"
    with connection(url(broker), f"watch-{time.monotonic_ns()}", user="host", password=USERS["host"].password) as w:
        assert w.wait_connack() == 0
        w.subscribe("spBv1.0/STATE/#")
        with connection(url(broker), client_id, user="host", password=USERS["host"].password,
                        will=("spBv1.0/STATE/takeover", b"old-offline")) as old:
            assert old.wait_connack() == 0
            old.subscribe("r/#")
            with connection(url(broker), client_id, user="host", password=USERS["host"].password,
                            will=("spBv1.0/STATE/takeover", b"new-offline")) as new:
                assert new.wait_connack() == 0
                assert old.dropped.wait(5), "the old connection was not closed (MQTT-3.1.4-2)"
                eventually(lambda: w.count("spBv1.0/STATE/takeover") == 1)
                assert w.messages == [("spBv1.0/STATE/takeover", b"old-offline")]
                new.subscribe("r/#")
                publish_n(url(broker), "r", 15)
                eventually(lambda: new.count("r/") == 15)
                assert old.count("r/") == 0
            # the new connection ended with DISCONNECT: no Will
        time.sleep(0.3)
        assert w.count("spBv1.0/STATE/takeover") == 1
    log = broker.log_path.read_text() if broker.log_path else ""
    assert f"client '{client_id}' connected again (user 'host'): closing its previous connection" in log


def test_a_taken_over_client_comes_back_when_it_reconnects(broker: EmbeddedBrokerEndpoint) -> None:
    """The legitimate host, pushed off by its own user (a second process, a stale connection),
    reconnects by itself (paho's reconnect, 1 s) and receives every message again."""
    client_id = "uns-host-comeback"
    creds = {"user": "host", "password": USERS["host"].password}
    with connection(url(broker), client_id, reconnect_s=1, **creds) as host:
        assert host.wait_connack() == 0
        host.subscribe("c/#")
        host.dropped.clear()
        with connection(url(broker), client_id, **creds) as other:
            assert other.wait_connack() == 0
            assert host.dropped.wait(5)
            host.subscribed.clear()
            assert host.wait_connack() == 0  # the host is back, and takes its id back in turn
            assert other.dropped.wait(5)
        host.subscribe("c/#")  # clean session: a client subscribes again after each connect
        publish_n(url(broker), "c", 12)
        eventually(lambda: host.count("c/") == 12)


# ---- Mosquitto: the takeover behaves the same -------------------------------------------------------------

def test_mosquitto_closes_the_old_connection_on_a_takeover_too(tmp_path: Path) -> None:
    """The generated Mosquitto config can't restrict ids per user (docs/security.md); its takeover
    follows MQTT-3.1.4-2 like the embedded broker's: old connection closed, Will out, routing to the new."""
    with mosquitto_broker(tmp_path) as mosq:
        base = url(mosq)
        with connection(base, "watch") as w:
            assert w.wait_connack() == 0
            w.subscribe("spBv1.0/STATE/#")
            with connection(base, HOST_ID, will=("spBv1.0/STATE/x", b"old-offline")) as old:
                assert old.wait_connack() == 0
                old.subscribe("r/#")
                with connection(base, HOST_ID, will=("spBv1.0/STATE/x", b"new-offline")) as new:
                    assert new.wait_connack() == 0
                    assert old.dropped.wait(5)
                    eventually(lambda: w.count("spBv1.0/STATE/x") == 1)
                    assert w.messages == [("spBv1.0/STATE/x", b"old-offline")]
                    new.subscribe("r/#")
                    with connection(base, "pub") as pub:
                        assert pub.wait_connack() == 0
                        for i in range(15):
                            pub.client.publish(f"r/{i}", b"x", qos=1).wait_for_publish(5)
                    eventually(lambda: new.count("r/") == 15)
                    assert old.count("r/") == 0
