"""Issue 13, item 3, end to end: a fuzzing edge with the real edge's credentials cannot pollute the UNS.

The whole stack runs (simulator, adapter, edge node; the embedded broker, then Mosquitto). While a batch runs, a second
client logs in with the edge's own user and publishes thousands of hostile Sparkplug messages on the
edge's topics: random bytes, truncated payloads, the real births with their metric names mutated
(``GoodC\\x7funt``, ``+``, ``#``, empty folders), forged births with ghost metrics and ghost devices,
and births by the dozen. Afterwards:

* the retained UNS tag topics are exactly the real edge's tags (ghosts retired, no invalid name);
* ``mosquitto_sub -t 'acme/#'`` stayed connected the whole time (one CONNECT, still running);
* the node was quarantined for birth churn and came back through a rebirth;
* the batch's final confirmation equals the simulator's own good/reject counts.

Values are never forged: a well-formed NDATA under the edge's own credentials is indistinguishable
from a real one, so what the host must (and can) defend is its namespace and its own liveness.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import pytest
import yaml

from simulator.client import call_method
from tests.e2e.stack import (
    Stack,
    fast_confirmations,
    running_stack,
    simulator_truth,  # the simulator's own good/reject totals
    wait_final_confirmation,
    wait_until,
)
from tests.support.brokers import broker_variants
from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload
from uns.sparkplug.topic import MessageType, SparkplugTopic, parse_topic

#: bounded for the suite; ``UNS_EDGE_FUZZ_MESSAGES=50000`` repeats the issue's campaign
FUZZ_MESSAGES = int(os.environ.get("UNS_EDGE_FUZZ_MESSAGES", "3000"))
QUIET_S = 2.0


def _edge_credentials(stack: Stack) -> tuple[str, str]:
    plant = yaml.safe_load((stack.folder / "plant.yaml").read_text())
    url = urlparse(plant["sparkplug"]["brokers"][0])
    assert url.username and url.password
    return url.username, url.password


def _tag_topics(topics: set[str]) -> set[str]:
    """Tag value and ``_meta`` topics: no reserved ``_`` segment but a final ``_meta``."""
    out = set()
    for topic in topics:
        levels = topic.split("/")
        inner = levels[:-1] if levels[-1] == "_meta" else levels
        if not any(level.startswith("_") for level in inner):
            out.add(topic)
    return out


def _mosquitto_sub() -> str:
    found = shutil.which("mosquitto_sub")
    assert found, "mosquitto_sub is missing (Debian package mosquitto-clients)"
    return found


def _retained(port: int) -> set[str]:
    """Every retained topic under ``acme/#`` as a fresh mosquitto_sub sees it."""
    result = subprocess.run([_mosquitto_sub(), "-h", "127.0.0.1", "-p", str(port), "-t", "acme/#", "--retained-only",
                             "-W", "3", "-F", "%t"], capture_output=True, timeout=30)
    return set(result.stdout.decode("utf-8").splitlines())


@contextmanager
def _watcher(port: int, log: Path) -> Iterator[subprocess.Popen]:
    """``mosquitto_sub -d -t 'acme/#'``: its debug output shows every CONNECT it sends."""
    sub = _mosquitto_sub()
    with log.open("wb") as out:
        proc = subprocess.Popen([sub, "-d", "-h", "127.0.0.1", "-p", str(port), "-t", "acme/#", "-F", "%t"],
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(10)


def _edge_client(stack: Stack, client_id: str) -> mqtt.Client:
    user, password = _edge_credentials(stack)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(user, password)
    client.connect("127.0.0.1", stack.mqtt_port)
    client.loop_start()
    return client


def _births(stack: Stack) -> dict[str, bytes]:
    """The real edge's births: one malformed NDATA makes the host ask for a rebirth, which we watch
    (works on any broker; a Sparkplug-aware one would also serve them as certificates)."""
    births: dict[str, bytes] = {}
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzz-births")

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        births[message.topic] = bytes(message.payload)

    watcher.on_message = on_message
    watcher.connect("127.0.0.1", stack.mqtt_port)
    watcher.subscribe([("spBv1.0/+/NBIRTH/+", 0), ("spBv1.0/+/DBIRTH/+/+", 0)])
    watcher.loop_start()
    ids = yaml.safe_load((stack.folder / "stack.yaml").read_text())["sparkplug"]
    group, edge = ids["group_id"], ids["edge_node_id"]
    poker = _edge_client(stack, "fuzz-poke")
    try:
        time.sleep(0.5)  # the subscription is in place
        poker.publish(f"spBv1.0/{group}/NDATA/{edge}", b"\x00", qos=1).wait_for_publish(10)
        wait_until(lambda: any("/NBIRTH/" in t for t in births) and any("/DBIRTH/" in t for t in births), 20,
                   "the real edge's rebirth")
        time.sleep(1.0)  # every DBIRTH of that rebirth
    finally:
        for client in (poker, watcher):
            client.disconnect()
            client.loop_stop()
    return births


def _expected_tag_topics(stack: Stack, births: dict[str, bytes]) -> set[str]:
    topics = set()
    for topic, data in births.items():
        parsed = parse_topic(topic)
        assert isinstance(parsed, SparkplugTopic)
        payload = decode_payload(data, parsed.message_type)
        prefix = stack.line if parsed.device_id is None else f"{stack.line}/{parsed.device_id}"
        for metric in payload.metrics:
            assert metric.name is not None
            if metric.name == "bdSeq" or metric.name.startswith(("Node Control/", "Device Control/")):
                continue
            topics |= {f"{prefix}/{metric.name}", f"{prefix}/{metric.name}/_meta"}
    return topics


def _renamed(data: bytes, kind: MessageType, rng: random.Random, ghosts: bool) -> bytes:
    """A real birth with some metric names made hostile, or extra ghost metrics (values untouched)."""
    payload = decode_payload(data, kind)
    metrics = list(payload.metrics)
    hostile = ["GoodC\x7funt", "Line/+/Speed", "#", "/Lead", "A//B", "tail/", "x\x00y", "bell\x07", "\x9b", "\ufffe",
               "é" * 600]
    out: list[Metric] = []
    for metric in metrics:
        if metric.name not in ("bdSeq", "Node Control/Rebirth") and rng.random() < 0.3:
            name = rng.choice(hostile) if rng.random() < 0.7 else f"{metric.name}{rng.choice(hostile)}"
            metric = Metric(name=name, value=metric.value, datatype=metric.datatype,
                            alias=None if metric.alias is None else metric.alias + 10_000,
                            timestamp=metric.timestamp, is_null=metric.is_null)
        out.append(metric)
    if ghosts:
        stamp = payload.timestamp
        base = 20_000 if kind is MessageType.NBIRTH else 30_000  # aliases are unique across node and devices
        out += [Metric(name=f"Ghost/{rng.randrange(10_000)}", value=1, datatype=DataType.Int64,
                       alias=base + i, timestamp=stamp) for i in range(rng.randint(1, 5))]
    return encode_payload(Payload(out, timestamp=payload.timestamp, seq=payload.seq), kind)


def _fuzz(stack: Stack, births: dict[str, bytes], rng: random.Random) -> int:
    client = _edge_client(stack, "fuzzing-edge")
    nbirth_topic = next(t for t in births if "/NBIRTH/" in t)
    dbirth_topic = next(t for t in births if "/DBIRTH/" in t)
    group, _kind, edge = nbirth_topic.split("/")[1:4]
    data_topics = [f"spBv1.0/{group}/NDATA/{edge}", dbirth_topic.replace("/DBIRTH/", "/DDATA/")]
    ghost_device = f"spBv1.0/{group}/DBIRTH/{edge}/ghost{rng.randrange(100)}"
    sent = 0
    try:
        for i in range(FUZZ_MESSAGES):
            choice = rng.random()
            if choice < 0.25:
                topic, data = nbirth_topic, _renamed(births[nbirth_topic], MessageType.NBIRTH, rng, rng.random() < 0.5)
            elif choice < 0.45:
                device_topic = dbirth_topic if rng.random() < 0.7 else ghost_device
                topic, data = device_topic, _renamed(births[dbirth_topic], MessageType.DBIRTH, rng, rng.random() < 0.5)
            elif choice < 0.65:
                source = births[rng.choice([nbirth_topic, dbirth_topic])]
                topic, data = (rng.choice([nbirth_topic, dbirth_topic, *data_topics]),
                               source[:rng.randrange(len(source))])
            else:
                topic, data = rng.choice([nbirth_topic, dbirth_topic, *data_topics]), rng.randbytes(rng.randrange(400))
            info = client.publish(topic, data, qos=1 if i % 50 == 0 else 0)
            if i % 50 == 0:
                info.wait_for_publish(10)  # paced, so the broker's queues never drop what we fuzz with
            sent += 1
        client.publish(nbirth_topic, b"last", qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return sent


@pytest.mark.parametrize("broker", broker_variants("embedded"))
def test_a_fuzzing_edge_leaves_the_uns_equal_to_the_real_edge(tmp_path: Path, broker: str) -> None:
    def configure(adapter: dict) -> None:
        adapter["host"].update({"quarantine_quiet_s": QUIET_S, "retire_grace_s": 0, "rebirth_throttle_s": 1.0})
        fast_confirmations(adapter)

    rng = random.Random(20261202)
    with running_stack(tmp_path, adapter_overrides=configure, broker=broker) as stack, \
            _watcher(stack.mqtt_port, tmp_path / "watcher.log") as watcher:
        births = _births(stack)
        expected = _expected_tag_topics(stack, births)
        wait_until(lambda: _tag_topics(_retained(stack.mqtt_port)) == expected, 20, "the UNS mirrors every real tag")

        good0, reject0 = asyncio.run(simulator_truth(stack.opcua))
        status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/start",
                                 {"batch_id": "B-FUZZ", "work_order_id": "WO-1", "product_id": "SKU-12"})
        assert status == 201, body
        time.sleep(0.3)
        asyncio.run(call_method(stack.opcua, "Line1", "Start"))

        assert _fuzz(stack, births, rng) == FUZZ_MESSAGES
        _, nodes = stack.api("GET", "/api/nodes", role="viewer")
        node = next(n for n in nodes if n["line"] == stack.line)
        assert node["violations"].get("birth_churn", 0) >= 1, node
        assert node["violations"].get("invalid_metric_name", 0) >= 1, node

        time.sleep(QUIET_S + 1)  # quiet: the real edge's next message lets the node back in, a rebirth follows
        asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
        time.sleep(0.5)
        good1, reject1 = asyncio.run(simulator_truth(stack.opcua))

        def counters_arrived() -> bool:
            _, tags = stack.api("GET", f"/api/tags?line={stack.line}", role="viewer")
            values = {t["name"]: (t["value"], t["quality"]) for t in tags if t.get("device_id") is None}
            return values.get("GoodCount") == (good1, "GOOD") and values.get("RejectCount") == (reject1, "GOOD")

        wait_until(counters_arrived, 30, "the real counters back in the adapter after the quarantine")
        status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/end", {"batch_id": "B-FUZZ"})
        assert status == 200, body
        confirmation = wait_final_confirmation(stack, "B-FUZZ")
        assert confirmation["produced"][0]["good"] == good1 - good0
        assert confirmation["produced"][0]["scrap"] == reject1 - reject0

        # the UNS holds exactly the real edge's tags, every one GOOD again; no ghost, no invalid name
        final = wait_until(lambda: (t := _tag_topics(_retained(stack.mqtt_port))) == expected and t, 30,
                           "ghost tags retired")
        assert final == expected
        _, tags = stack.api("GET", f"/api/tags?line={stack.line}", role="viewer")
        live = {t["topic"]: t["quality"] for t in tags}
        assert set(live) == {topic for topic in expected if not topic.endswith("/_meta")}  # the REST API too
        assert set(live.values()) <= {"GOOD", "UNCERTAIN", "BAD"}

        assert watcher.poll() is None, "mosquitto_sub on acme/# died"
    log = (tmp_path / "watcher.log").read_text(errors="replace")
    assert log.count("sending CONNECT") == 1, log[-2000:]
