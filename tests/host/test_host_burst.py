"""A DDATA burst through the whole host on Mosquitto: nothing lost or reordered on the hot path.

The per-change path (decode, tracker, live model with tuple states, change streams fed one batch
per message, mirror offer/take) was rewritten for cost in issue 20; this is the end-to-end check
that it still keeps the guarantees: every change reaches the lossless stream in order, the
conflating stream keeps exactly the newest ones, and every mirror topic receives its values in
increasing order (retained, QoS 1), each offered change either published or replaced by a newer
one before it went out, the last one always published.
"""

from __future__ import annotations

import json

import pytest

from mes_adapter.host import MetricChange
from tests.host.conftest import LINE, running_host, wait_for
from tests.host.edge import CELL, EDGE, GROUP, PahoEdge
from tests.support.mosquitto import BrokerEndpoint
from tests.support.mqtt_faults import until
from tests.support.sniffer import Sniffer
from uns.conventions import Quality

MESSAGES = 400
#: the metrics each DDATA changes, and their value (increasing with the message number)
BURST = {"Speed": float, "Temperature": float, "Recipe": lambda i: f"SKU-{i:05d}"}
TOPICS = {f"{LINE}/{CELL}/{name}": name for name in BURST}


def _values(sniffer: Sniffer) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {topic: [] for topic in TOPICS}
    for m in sniffer.snapshot(lambda m: m.topic in TOPICS):
        assert m.retain and m.qos == 1, m
        out[m.topic].append(json.loads(m.payload)["value"])
    return out


@pytest.mark.mosquitto
async def test_a_ddata_burst_loses_and_reorders_nothing_from_decode_to_mirror(
        mosquitto: BrokerEndpoint, sniffer: Sniffer, edge: PahoEdge) -> None:
    """400 DDATA of 3 metrics each, sent back to back (tck-id-payloads-sequence-num-incrementing:
    seq in order, so no rebirth), with the mirror at QoS 1 and a 20 ms conflation interval, so
    values wait in the mirror and newer ones replace them (the path that must never lose the
    latest value)."""
    async with running_host(mosquitto, conflation_interval_ms=20) as host:
        edge.send(edge.script.nbirth(), qos=1)
        edge.send(edge.script.dbirth(), qos=1)
        await wait_for(sniffer, lambda m: m.topic == f"{LINE}/{CELL}/Recipe")
        await until(lambda: host.stats.mirror_pending == 0, 10, "the births mirrored")
        before = {topic: len(values) for topic, values in _values(sniffer).items()}
        offered, conflated = host.mirror.counters.offered, host.mirror.counters.conflated
        decoded = host.stats.metrics_decoded
        async with host.model.subscribe(lossless=True) as every, host.model.subscribe(100) as latest:
            for i in range(MESSAGES):
                edge.send(edge.script.ddata({name: make(i) for name, make in BURST.items()}), qos=1)
            total = MESSAGES * len(BURST)
            await until(lambda: host.stats.metrics_decoded == decoded + total and host.stats.mirror_pending == 0,
                        30, "every change decoded and mirrored")
            changes = [every.get_nowait() for _ in range(len(every))]
            kept = [latest.get_nowait() for _ in range(len(latest))]
            assert (latest.dropped, every.dropped) == (total - 100, 0)
        expected = [(name, make(i)) for i in range(MESSAGES) for name, make in BURST.items()]
        assert all(isinstance(c, MetricChange) and not c.birth and not c.historical for c in changes)
        assert [(c.metric.name, c.metric.value) for c in changes] == expected
        assert [(c.metric.name, c.metric.value) for c in kept] == expected[-100:]
        for name, make in BURST.items():
            state = host.model.metric(GROUP, EDGE, CELL, name)
            assert state is not None and (state.value, state.quality) == (make(MESSAGES - 1), Quality.GOOD)
        stats = host.stats
        assert (stats.seq_gaps, stats.invalid_payloads, stats.rebirths_requested, stats.handler_errors) == (0, 0, {}, 0)
        assert host.mirror.counters.offered - offered == total
        replaced = host.mirror.counters.conflated - conflated
        assert replaced > 0  # the burst outpaces the 20 ms interval: conflation was exercised
        last = {topic: BURST[name](MESSAGES - 1) for topic, name in TOPICS.items()}
        await wait_for(sniffer, lambda m: m.topic in last and json.loads(m.payload)["value"] == last[m.topic],
                       count=len(last), timeout=15)
        burst = {topic: values[before[topic]:] for topic, values in _values(sniffer).items()}
    for topic, values in burst.items():
        assert values == sorted(set(values)), f"{topic}: a value went backwards or came twice"
        assert values[-1] == last[topic]
    assert sum(len(v) for v in burst.values()) + replaced == total  # each change published or replaced
