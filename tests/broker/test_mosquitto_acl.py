"""The Mosquitto ACL that `uns init` writes says what the embedded broker's role table says.

One real Mosquitto (Debian's binary) runs the rendered ACL with real passwords; paho clients
publish and subscribe as the users `uns init` creates (edge, mes = host, anonymous = explorer)
on topics of every kind (own/other node and group, births, data, commands, STATE, certificates,
UNS JSON, ``$SYS``). Each verdict is compared with :class:`broker.acl.Authorizer` on
:data:`broker.policy.DEFAULT_ROLES`:

* publish: did a reader of everything receive the message?
* receive (Mosquitto's ``read``, the embedded broker's subscribe/receive rule): did the user,
  subscribed to that exact topic, receive a message a privileged client published there?

Mosquitto 2.0's acl_file grants every SUBSCRIBE and filters delivery, so on exact topics
"subscribe" is judged by delivery; the embedded broker's SUBSCRIBE verdict on an exact topic
equals its RECEIVE verdict (asserted too).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from broker.acl import Action, Authorizer, Principal, RoleRules
from broker.mosquitto_acl import AclUser, MosquittoAclError, filters_intersect, render_acl, write_filters
from broker.policy import DEFAULT_ROLES, DEMO_ROLES
from tests.support.mosquitto import mosquitto_binary
from tests.support.net import free_port, wait_for_port
from tests.support.procs import stop_process

G, E = "acme:plant1", "packaging:line1"
UNS_ROOTS = ("acme", "sparkplug")
USERS = {"edge": AclUser("edge", "edge", G, E), "mes": AclUser("mes", "host")}
PRINCIPALS = {"edge": Principal("edge", "edge", group=G, edge=E), "mes": Principal("mes", "host"),
              None: Principal(None, DEMO_ROLES["read-only"])}
PROBE = "acl-probe"  # a test-only client that reads and writes everything (added after the rendered file)
SYNC = "spBv1.0/STATE/uns-acl-sync"  # every role may receive it: marks the end of a phase

TOPICS = (
    f"spBv1.0/{G}/NBIRTH/{E}", f"spBv1.0/{G}/NDATA/{E}", f"spBv1.0/{G}/NDEATH/{E}",
    f"spBv1.0/{G}/DBIRTH/{E}/filler", f"spBv1.0/{G}/DDATA/{E}/filler", f"spBv1.0/{G}/DDEATH/{E}/filler",
    f"spBv1.0/{G}/NBIRTH/packaging:line2", f"spBv1.0/{G}/NDATA/packaging:line2",
    f"spBv1.0/{G}/DDATA/packaging:line2/filler", f"spBv1.0/globex:site/NDATA/{E}",
    f"spBv1.0/{G}/NCMD/{E}", f"spBv1.0/{G}/DCMD/{E}/filler",
    f"spBv1.0/{G}/NCMD/packaging:line2", f"spBv1.0/{G}/DCMD/packaging:line2/filler",
    "spBv1.0/STATE/uns-mes", "spBv1.0/STATE/other-host",
    f"$sparkplug/certificates/spBv1.0/{G}/NBIRTH/{E}",
    "acme/plant1/packaging/line1/Filler/Speed", "acme/plant1/packaging/line1/_cmd/result/1",
    "acme/plant1/packaging/line2/_cmd/result/1", "sparkplug/Plant_1/gw-07/Line/State",
    "$SYS/broker/uns-acl-probe",
)
#: where the file is narrower than the table, by construction (module docstring of broker.mosquitto_acl):
#: the host publishing outside the deployment's namespaces
NARROWER = {("mes", "globex/site/area/line/Speed"), ("mes", f"spBv1.0/{G}/NOTSPARKPLUG/{E}")}


@dataclass
class Client:
    name: str
    client: mqtt.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    subscribed: dict[int, list[int]] = field(default_factory=dict)
    disconnected: bool = False

    def wait_for(self, topic: str, payload: bytes, timeout: float = 20.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: (topic, payload) in self.received, timeout), \
                f"{self.name} never received {topic} {payload!r}"

    def publish_all(self, items: list[tuple[str, bytes]]) -> None:
        """QoS 0, then a SUBSCRIBE round trip: Mosquitto handles a connection's packets in order, so
        its SUBACK says every publish before it was routed."""
        for topic, payload in items:
            assert self.client.publish(topic, payload, qos=0).rc == mqtt.MQTT_ERR_SUCCESS
        assert subscribe(self, ["uns-acl-test/barrier"]) == [0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(port: int, name: str, user: str | None, password: str | None) -> Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-test-{name}",
                         protocol=mqtt.MQTTv311, reconnect_on_failure=False)
    out = Client(name, client)
    connected = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with out.cond:
            out.received.append((msg.topic, msg.payload))
            out.cond.notify_all()

    def on_subscribe(_c: mqtt.Client, _u: object, mid: int, codes: list, _p: object = None) -> None:
        with out.cond:
            out.subscribed[mid] = [c.value for c in codes]
            out.cond.notify_all()

    def on_disconnect(*_a: object) -> None:
        with out.cond:
            out.disconnected = True
            out.cond.notify_all()

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    codes: list[int] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object = None) -> None:
        codes.append(rc.value)
        connected.set()

    client.on_connect = on_connect
    if user:
        client.username_pw_set(user, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10) and codes == [0], f"{name} did not connect: {codes}"
    return out


def subscribe(c: Client, filters: list[str]) -> list[int] | None:
    """The SUBACK codes; None if the broker closed the connection first."""
    _rc, mid = c.client.subscribe([(f, 0) for f in filters])
    with c.cond:
        assert c.cond.wait_for(lambda: mid in c.subscribed or c.disconnected, 10)
        return c.subscribed.get(mid)


def publish_once(port: int, name: str, user: str | None, topic: str, payload: bytes) -> bool:
    """Publish on a fresh connection; False if Mosquitto closed it (2.0.11 disconnects a client
    whose publish it refuses, QoS 0 or 1)."""
    c = connect(port, name, user, f"pw-{user}" if user else None)
    try:
        c.client.publish(topic, payload, qos=0)  # its rc turns to NO_CONN if the refusal closes the link
        return subscribe(c, ["uns-acl-test/barrier"]) == [0]
    finally:
        c.close()


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[int]:
    binary = mosquitto_binary()
    if binary is None or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto is missing: scripts/test installs it")
    base = Path(tempfile.mkdtemp(prefix="uns-acl-"))
    base.chmod(0o755)  # Mosquitto started as root drops to its own user
    port = free_port()
    acl = render_acl(DEFAULT_ROLES, USERS.values(), anonymous_role=DEMO_ROLES["read-only"], uns_roots=UNS_ROOTS)
    acl += (f"\nuser {PROBE}\n" + "".join(f"topic readwrite {f}\n" for f in ("#", "$SYS/#", "$sparkplug/#")))
    (base / "acl").write_text(acl)
    for index, user in enumerate([*USERS, PROBE]):
        subprocess.run(["mosquitto_passwd", *(["-c"] if index == 0 else []), "-b", str(base / "passwd"), user,
                        f"pw-{user}"], check=True, capture_output=True, timeout=30)
    (base / "passwd").chmod(0o644)
    (base / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\npassword_file {base / 'passwd'}\nacl_file {base / 'acl'}\n"
        "allow_anonymous true\npersistence false\nmax_queued_messages 0\nset_tcp_nodelay true\n")
    proc = subprocess.Popen([binary, "-c", str(base / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        stop_process(proc)
        shutil.rmtree(base, ignore_errors=True)


def test_both_engines_allow_and_deny_the_same_user_topic_action_triples(mosquitto: int) -> None:
    port = mosquitto
    probe = connect(port, "probe", PROBE, f"pw-{PROBE}")  # publishes, never subscribes
    watch = connect(port, "watch", PROBE, f"pw-{PROBE}")  # reads everything
    users = {name: connect(port, str(name), name, f"pw-{name}" if name else None) for name in PRINCIPALS}
    try:
        assert subscribe(watch, ["#", "$SYS/#", "$sparkplug/#"]) == [0, 0, 0]
        for c in users.values():
            # Mosquitto's acl_file grants every subscription (delivery is what it filters)
            assert subscribe(c, [*TOPICS, SYNC]) == [0] * (len(TOPICS) + 1)

        # receive: the probe publishes on every topic; who gets what
        # the probe does not publish on $SYS: Mosquitto refuses that to every client (and drops it)
        probe.publish_all([(t, f"r|{t}".encode()) for t in TOPICS if not t.startswith("$SYS")]
                          + [(SYNC, b"sync-receive")])
        for c in users.values():
            c.wait_for(SYNC, b"sync-receive")
        watch.wait_for(SYNC, b"sync-receive")
        controls = {t for t, p in watch.received if p == f"r|{t}".encode()}
        assert controls == set(TOPICS) - {"$SYS/broker/uns-acl-probe"}

        # publish: every user publishes on every topic; what reaches the probe
        everything = [*TOPICS, *sorted({t for _u, t in NARROWER})]
        stayed = {(name, t): publish_once(port, f"{name}-{i}", name, t, f"p|{name}|{t}".encode())
                  for name in PRINCIPALS for i, t in enumerate(everything)}
        probe.publish_all([("probe/sync", b"sync-publish")])
        watch.wait_for("probe/sync", b"sync-publish")

        auth = Authorizer(dict(DEFAULT_ROLES))
        mismatches = []
        for name, c in users.items():
            principal = PRINCIPALS[name]
            got = set(c.received)
            for t in TOPICS:
                assert auth.allowed(principal, Action.SUBSCRIBE, t) == auth.allowed(principal, Action.RECEIVE, t)
                if t in controls:
                    mosq = (t, f"r|{t}".encode()) in got
                    if mosq != auth.allowed(principal, Action.RECEIVE, t):
                        mismatches.append((name, t, "receive", mosq))
            for t in everything:
                mosq = (t, f"p|{name}|{t}".encode()) in watch.received
                embedded = auth.allowed(principal, Action.PUBLISH, t)
                assert stayed[(name, t)] == mosq, (name, t)  # refused publishes cost the connection
                if (name, t) in NARROWER:
                    assert embedded and not mosq, (name, t)
                elif mosq != embedded:
                    mismatches.append((name, t, "publish", mosq))
        assert mismatches == []
        # the triples are not all alike: each user is refused some publishes and allowed others (but
        # anonymous), and the edge both receives and is refused messages
        assert {name for (name, _t), ok in stayed.items() if ok} == {"edge", "mes"}
        assert {name for (name, _t), ok in stayed.items() if not ok} == {"edge", "mes", None}
        assert {auth.allowed(PRINCIPALS["edge"], Action.RECEIVE, t) for t in TOPICS} == {True, False}
    finally:
        for c in [probe, watch, *users.values()]:
            c.close()


def test_the_host_publish_rule_is_written_as_the_deployments_namespaces() -> None:
    """The six edge types are cut out of 'everything' as whole pieces; nothing wider is written."""
    writes = write_filters(DEFAULT_ROLES["host"].publish, [f.replace("{group}", "+") for f in
                                                           DEFAULT_ROLES["host"].deny_publish], UNS_ROOTS)
    assert writes == ["spBv1.0/STATE/#", "spBv1.0/+/NCMD/#", "spBv1.0/+/DCMD/#", "acme/#", "sparkplug/#"]


def test_what_mosquitto_cannot_say_is_an_error_not_a_wider_file() -> None:
    with pytest.raises(MosquittoAclError, match=r"'a/#' minus \['a/secret'\] cannot be written"):
        write_filters(["a/#"], ["a/secret"], ())
    roles = {"peek": RoleRules.of(subscribe=["#"], deny_subscribe=["secret/#"])}
    with pytest.raises(MosquittoAclError, match="denies subscriptions"):
        render_acl(roles, [AclUser("p", "peek")], anonymous_role=None, uns_roots=())
    with pytest.raises(MosquittoAclError, match="no Sparkplug group/edge is set"):
        render_acl(DEFAULT_ROLES, [AclUser("e", "edge")], anonymous_role=None, uns_roots=())


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("a/#", "a", True), ("a/+", "a/b/c", False), ("+/b", "a/+", True), ("#", "$SYS/x", False),
    ("spBv1.0/STATE/#", "spBv1.0/+/NBIRTH/#", False), ("spBv1.0/#", "spBv1.0/+/NBIRTH/#", True),
    ("a/b", "a/c", False),
])
def test_filter_intersection(a: str, b: str, expected: bool) -> None:
    assert filters_intersect(a, b) is expected
    assert filters_intersect(b, a) is expected
