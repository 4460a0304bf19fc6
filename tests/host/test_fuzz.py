"""Nothing a peer sends stops the host: random and mutated payloads on spBv1.0 topics.

Pure: hypothesis drives tracker → live model → mirror with random bytes and with valid births and
data mutated byte by byte, on valid and broken topics. Live: a short burst of such messages through
Mosquitto, after which the host still mirrors a well-formed edge node.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mes_adapter.host.live_model import LiveModel
from mes_adapter.host.mirror import UnsMirror
from mes_adapter.host.tracker import EdgeTracker, MetricsRetired, ProtocolViolation
from tests.host.conftest import LINE, running_host, wait_for
from tests.host.edge import EdgeScript, PahoEdge
from tests.support.mosquitto import BrokerEndpoint
from tests.support.sniffer import Sniffer
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.names import control_character, metric_name_problem

KINDS = ["NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH", "NCMD", "DCMD", "STATE", "BOGUS"]
_script = EdgeScript()
VALID = [_script.nbirth(), _script.dbirth(), _script.ddata({"Speed": 1.5, "Offset": -3}),
         _script.ndata({"Line/State": "X"}), _script.ddeath(), _script.ndeath()]

topics = st.builds(
    lambda kind, group, edge, device: "/".join(x for x in ("spBv1.0", group, kind, edge, device) if x is not None),
    st.sampled_from(KINDS), st.sampled_from(["acme:plant1", "g", "", "a+b"]),
    st.sampled_from(["packaging:line1", "e", "#"]), st.one_of(st.none(), st.sampled_from(["filler", "d", ""])),
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    topic, data = draw(st.sampled_from(VALID))
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        pos = draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del buf[pos:pos + draw(st.integers(1, 8))]
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "dup":
            buf += buf[pos:pos + 16]
    if draw(st.booleans()):
        topic = draw(topics)
    return topic, bytes(buf)


def run_pipeline(messages: list[tuple[str, bytes]], reorder_timeout_ms: int = 0) -> EdgeTracker:
    tracker = EdgeTracker(max_payload_bytes=4096, reorder_timeout_ms=reorder_timeout_ms, retire_grace_ms=20)
    model, mirror = LiveModel(), UnsMirror(interval_ms=0)
    t = 1_700_000_000_000
    for topic, data in messages:
        t += 7
        events = tracker.handle(topic, data, t) + tracker.tick(t)  # the shell ticks the reorder timer
        for event in events:
            if isinstance(event, MetricsRetired):
                mirror.retire(*event.node, event.device_id, event.names, t)
            elif not isinstance(event, ProtocolViolation):
                mirror.offer(model.apply(event), t)
        if topic.startswith("spBv1.0/acme:plant1/NBIRTH"):
            tracker.handle_certificate("$sparkplug/certificates/" + topic, data, t)
        for message in mirror.take(t):
            if message.payload:  # an empty one deletes a retired tag's topic
                json.loads(message.payload)  # whatever got through is valid JSON
            # and its topic is one every subscriber can hold (issue 13, item 3)
            assert control_character(message.topic) is None, message.topic
            assert "+" not in message.topic and "#" not in message.topic and "" not in message.topic.split("/")
    return tracker


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(topics, st.binary(max_size=300)), max_size=20))
def test_random_bytes_never_stop_the_tracker(messages: list[tuple[str, bytes]]) -> None:
    run_pipeline([VALID[0], VALID[1], *messages])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(mutated(), st.sampled_from(VALID)), min_size=1, max_size=25))
def test_mutated_payloads_never_stop_the_tracker(messages: list[tuple[str, bytes]]) -> None:
    tracker = run_pipeline(messages)
    assert tracker.counters.messages == len(messages)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(mutated(), st.sampled_from(VALID)), min_size=1, max_size=25))
def test_out_of_order_and_mutated_messages_never_stop_the_reorder_buffer(messages: list[tuple[str, bytes]]) -> None:
    """With a reorder timeout (21 ms: three messages) held messages are released or expire; none stays."""
    tracker = run_pipeline(messages, reorder_timeout_ms=21)
    tracker.tick(1_800_000_000_000)
    assert tracker.next_reorder_deadline_ms() is None


@pytest.mark.mosquitto
async def test_live_fuzz_through_mosquitto(mosquitto: BrokerEndpoint, sniffer: Sniffer) -> None:
    rng = random.Random(20240611)
    async with running_host(mosquitto, max_payload_bytes=2048, quarantine_quiet_s=0.5) as host:
        with PahoEdge(mosquitto.host, mosquitto.port) as fuzzer:
            for i in range(600):
                topic, data = VALID[rng.randrange(len(VALID))]
                buf = bytearray(data)
                for _ in range(rng.randint(1, 4)):
                    if buf:
                        buf[rng.randrange(len(buf))] = rng.randrange(256)
                if i % 5 == 0:
                    buf = bytearray(rng.randbytes(rng.randint(0, 3000)))
                if i % 7 == 0:
                    topic = rng.choice(["spBv1.0/g/NDATA", "spBv1.0/g/XDATA/e", "spBv1.0/a/DDATA/b/c/d",
                                        "spBv1.0/STATE/other"])
                fuzzer.client.publish(topic, bytes(buf), qos=0)
            fuzzer.send(("spBv1.0/STATE/mes", b"\x00not json"), qos=1)  # our own STATE topic, garbage
        await wait_for(sniffer, lambda m: m.topic.startswith("spBv1.0/") and m.payload == b"\x00not json")
        # forged NBIRTHs by the dozen: birth churn put the node in quarantine (issue 13, item 3)
        for _ in range(300):  # the sniffer may see the last message before the host has read them all
            if host.stats.messages_in >= 601:
                break
            await asyncio.sleep(0.05)
        assert host.tracker.quarantined() == [("acme:plant1", "packaging:line1")]
        assert host.tracker.counters.quarantines >= 1
        await asyncio.sleep(0.5)  # quarantine_quiet_s without a birth: the next message is let in
        # the host is alive and still understands a well-behaved edge node
        with PahoEdge(mosquitto.host, mosquitto.port, EdgeScript(bd_seq=42)) as edge:
            edge.send(edge.script.nbirth())
            edge.send(edge.script.dbirth())
            edge.send(edge.script.ddata({"Speed": 3.25}))
            await wait_for(sniffer, lambda m: m.topic == f"{LINE}/filler/Speed"
                           and json.loads(m.payload) .get("value") == 3.25)
        stats = host.stats
        assert host.online and stats.handler_errors == 0
        assert stats.messages_in >= 600 and sum(stats.violations.values()) > 100


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=8, unique=True))
def test_any_metric_names_in_a_birth_leave_only_valid_topics(names: list[str]) -> None:
    """Whatever names a birth declares: the valid ones are mirrored, each invalid one refused and counted."""
    edge = EdgeScript()
    edge.device_metrics = [(name, 100 + i, DataType.Int64, i) for i, name in enumerate(names)]
    tracker = run_pipeline([edge.nbirth(), edge.dbirth()])
    reasons = [problem[0] for name in names if (problem := metric_name_problem(name)) is not None]
    assert sum(tracker.counters.metrics_refused.values()) == len(reasons)
    # one violation per reason per birth, naming the first offender
    assert tracker.counters.violations["invalid_metric_name"] == len(set(reasons))
