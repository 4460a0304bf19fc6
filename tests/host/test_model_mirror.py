"""LiveModel + UnsMirror without a network: values, STALE, history, ordering, conflation, topics."""

from __future__ import annotations

import asyncio
import json

from mes_adapter.host.live_model import LiveModel, MetricChange, NodeChange
from mes_adapter.host.mirror import UnsMirror
from mes_adapter.host.tracker import EdgeTracker
from tests.host.edge import CELL, EDGE, GROUP, EdgeScript
from uns.conventions import Quality
from uns.isa95 import NamespaceMapping
from uns.sparkplug.datatypes import DataType

LINE = "acme/plant1/packaging/line1"


class Pipeline:
    """tracker → model → mirror, the way the MQTT shell wires them."""

    def __init__(self, interval_ms: int = 0, mapping: NamespaceMapping | None = None) -> None:
        self.t = 1_700_000_000_000
        self.tracker = EdgeTracker()
        self.model = LiveModel()
        self.mirror = UnsMirror(mapping, interval_ms=interval_ms)
        self.published: dict[str, dict] = {}

    def feed(self, message: tuple[str, bytes]) -> None:
        for event in self.tracker.handle(message[0], message[1], self.t):
            self.mirror.offer(self.model.apply(event), self.t)

    def flush(self) -> list[str]:
        out = self.mirror.take(self.t)
        for m in out:
            self.published[m.topic] = json.loads(m.payload)
        return [m.topic for m in out]


def test_births_and_data_reach_isa95_topics_with_meta() -> None:
    p = Pipeline()
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    p.flush()
    speed = p.published[f"{LINE}/filler/Speed"]
    assert speed["value"] == 120.5 and speed["quality"] == "GOOD" and speed["datatype"] == "Double"
    assert speed["unit"] == "m/min" and isinstance(speed["timestamp_ms"], int)
    meta = p.published[f"{LINE}/filler/Speed/_meta"]
    assert meta == {"datatype": "Double", "unit": "m/min", "description": "line speed", "group_id": GROUP,
                    "edge_node_id": EDGE, "device_id": CELL, "metric_name": "Speed", "alias": 10}
    assert p.published[f"{LINE}/Line/State"]["value"] == "RUNNING"  # node metrics sit on the line
    assert p.published[f"{LINE}/filler/Offset"]["value"] == -5
    assert p.published[f"{LINE}/filler/Counts"]["value"] == [1, -2, 3]
    assert not any("bdSeq" in t or "Node Control" in t for t in p.published)
    p.feed(edge.ddata({"Speed": 99.0}))
    assert p.flush() == [f"{LINE}/filler/Speed"]  # no _meta again for data
    assert p.published[f"{LINE}/filler/Speed"]["value"] == 99.0


def test_ndeath_marks_every_metric_stale_keeping_values() -> None:
    """tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-tags-stale, -devices-tags-stale."""
    p = Pipeline()
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    p.flush()
    p.t += 1000
    p.feed(edge.ndeath())
    republished = p.flush()
    assert len(republished) == 2 + 6  # every node and device tag
    for topic in republished:
        assert p.published[topic]["quality"] == "STALE"
        assert p.published[topic]["timestamp_ms"] == p.t
    assert p.published[f"{LINE}/filler/Speed"]["value"] == 120.5
    state = p.model.metric(GROUP, EDGE, CELL, "Speed")
    assert state is not None and state.quality is Quality.STALE
    node = p.model.node(GROUP, EDGE)
    assert node is not None and not node.online and not node.devices[CELL].online


def test_ddeath_marks_device_metrics_stale() -> None:
    p = Pipeline()
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    p.flush()
    p.feed(edge.ddeath())
    assert sorted(p.flush()) == sorted(f"{LINE}/filler/{n}" for n in
                                       ("Speed", "Temperature", "Offset", "Running", "Recipe", "Counts"))
    assert p.published[f"{LINE}/Line/State"]["quality"] == "GOOD"


def test_historical_values_do_not_overwrite_live_ones() -> None:
    p = Pipeline()
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    p.flush()
    stream = p.model.subscribe()
    p.feed(edge.ddata({"Speed": 1.0}, historical=True, ts=p.t - 60_000))
    assert p.flush() == []
    assert p.model.metric(GROUP, EDGE, CELL, "Speed").value == 120.5  # type: ignore[union-attr]
    change = stream.get_nowait()
    assert isinstance(change, MetricChange) and change.historical and change.metric.value == 1.0
    assert p.model.historical_values == 1


def test_older_value_does_not_overwrite_newer() -> None:
    p = Pipeline()
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    now = p.model.metric(GROUP, EDGE, CELL, "Speed").source_timestamp_ms  # type: ignore[union-attr]
    p.feed(edge.ddata({"Speed": 5.0}, ts=now + 100))
    p.feed(edge.ddata({"Speed": 4.0}, ts=now + 50))
    p.flush()
    assert p.published[f"{LINE}/filler/Speed"]["value"] == 5.0
    assert p.model.out_of_order_values == 1


def test_conflation_sends_latest_per_interval_and_never_older() -> None:
    p = Pipeline(interval_ms=100)
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    p.flush()
    topic = f"{LINE}/filler/Speed"
    sent = []
    for i in range(50):  # 50 changes in 49 ms
        p.t += 1
        p.feed(edge.ddata({"Speed": float(i)}))
        sent += [json.loads(m.payload)["value"] for m in p.mirror.take(p.t) if m.topic == topic]
    assert sent == []  # the birth was sent at t0; the next slot opens at t0+100
    assert p.mirror.next_due_ms() == 1_700_000_000_000 + 100
    p.t += 51
    sent += [json.loads(m.payload)["value"] for m in p.mirror.take(p.t) if m.topic == topic]
    assert sent == [49.0]
    assert p.mirror.counters.conflated == 49
    p.t += 1000
    p.feed(edge.ddata({"Speed": 7.0}))  # a quiet tag goes out at once
    assert [m.topic for m in p.mirror.take(p.t)] == [topic]


def test_stale_and_rebirth_inside_one_interval_conflate_to_good() -> None:
    p = Pipeline(interval_ms=100)
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    p.flush()
    p.t += 10
    p.feed(edge.nbirth())  # a rebirth: devices are offline until their DBIRTH
    p.feed(edge.dbirth())
    p.t += 100
    p.flush()
    assert p.published[f"{LINE}/filler/Speed"]["quality"] == "GOOD"


def test_non_isa95_ids_fall_back_under_a_root() -> None:
    p = Pipeline()
    edge = EdgeScript(group="Plant 1".replace(" ", "_"), edge="gw-07", device="press3")
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    p.flush()
    assert p.published["sparkplug/Plant_1/gw-07/press3/Speed"]["value"] == 120.5
    assert "sparkplug/Plant_1/gw-07/Line/State" in p.published
    assert p.mirror.counters.unmapped_topics == 2


def test_mirror_root_prefixes_isa95_topics() -> None:
    p = Pipeline(mapping=NamespaceMapping(mirror_root="uns"))
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    p.flush()
    assert f"uns/{LINE}/filler/Speed" in p.published


async def test_change_stream_drops_oldest_for_slow_consumers() -> None:
    p = Pipeline()
    edge = EdgeScript()
    async with p.model.subscribe(maxsize=5) as stream:
        p.feed(edge.nbirth())
        p.feed(edge.dbirth())
        assert len(stream) == 5 and stream.dropped > 0
        assert p.model.dropped_changes == stream.dropped
        got = [await stream.get() for _ in range(5)]
        assert all(isinstance(c, MetricChange) for c in got)
        assert got[-1].metric.name == "Counts"  # the newest survived
        waiter = asyncio.create_task(stream.get())
        await asyncio.sleep(0)
        p.feed(edge.ddeath())
        change = await asyncio.wait_for(waiter, 1)
        assert change is not None
    left = len(stream)
    p.feed(edge.nbirth())  # a closed stream gets nothing more
    assert len(stream) == left


def test_snapshot_is_json_ready() -> None:
    p = Pipeline()
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    snap = p.model.snapshot()
    json.dumps(snap)
    assert snap[0]["online"] and snap[0]["devices"][0]["device_id"] == CELL


def test_node_changes_are_streamed() -> None:
    p = Pipeline()
    edge = EdgeScript()
    stream = p.model.subscribe()
    p.feed(edge.nbirth())
    p.feed(edge.ndeath())
    nodes = []
    while (c := stream.get_nowait()) is not None:
        if isinstance(c, NodeChange):
            nodes.append((c.online, c.reason))
    assert nodes == [(True, "nbirth"), (False, "ndeath")]


def test_first_value_replaces_a_null_birth_placeholder_even_if_older() -> None:
    """An edge that births before its source answered sends null stamped with the birth time; the
    first real value carries its (older) source timestamp and must still land, or a counter's
    baseline is lost. (A Bad marker is replaced the same way: tests/host/test_live_model_markers.py.)"""
    p = Pipeline()
    edge = EdgeScript(node_metrics=[("Line/State", 1, DataType.String, "RUNNING"),
                                    ("Line/GoodCount", 2, DataType.UInt64, None)])
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    born = p.model.metric(GROUP, EDGE, None, "Line/GoodCount")
    assert born is not None and born.value is None
    p.feed(edge.ndata_at({"Line/GoodCount": 0}, ts=born.source_timestamp_ms - 5_000))
    p.flush()
    assert p.model.metric(GROUP, EDGE, None, "Line/GoodCount").value == 0  # type: ignore[union-attr]
    assert p.published[f"{LINE}/Line/GoodCount"]["value"] == 0
    assert p.model.out_of_order_values == 0


def _born(interval_ms: int = 0) -> tuple[Pipeline, EdgeScript]:
    """A pipeline that has mirrored the edge's births (sent, nothing pending)."""
    p = Pipeline(interval_ms=interval_ms)
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    p.flush()
    return p, edge


def test_conflated_changes_are_never_turned_into_json() -> None:
    """The value JSON is built when a message is taken, once per sent value: the 49 changes a fast
    tag conflates away cost no JSON, and what is sent is exactly the latest state's JSON."""
    p, edge = _born(interval_ms=100)
    built: list[str] = []

    def counted(state):  # noqa: ANN001, ANN202
        built.append(state.name)
        return UnsMirror.value_payload(state)

    p.mirror.value_payload = counted  # type: ignore[method-assign]
    for i in range(50):
        p.t += 1
        p.feed(edge.ddata({"Speed": float(i)}))
    assert built == [] and p.mirror.counters.conflated == 49
    p.t += 100
    taken = p.mirror.take(p.t)
    assert built == ["Speed"] and [m.topic for m in taken] == [f"{LINE}/filler/Speed"]
    latest = p.model.metric(GROUP, EDGE, CELL, "Speed")
    assert latest is not None and latest.value == 49.0
    assert taken[0].payload == UnsMirror.value_payload(latest)
    assert p.mirror.take(p.t + 1000) == [] and built == ["Speed"]


def test_a_value_whose_json_fails_is_counted_and_the_others_are_sent() -> None:
    p, edge = _born()
    before = dict(p.published)

    def failing(state):  # noqa: ANN001, ANN202
        if state.name == "Speed":
            raise TypeError("a bug of ours")
        return UnsMirror.value_payload(state)

    p.mirror.value_payload = failing  # type: ignore[method-assign]
    p.t += 1
    p.feed(edge.ddata({"Speed": 1.5, "Offset": 3}))
    assert p.flush() == [f"{LINE}/filler/Offset"]
    assert p.published[f"{LINE}/filler/Offset"]["value"] == 3
    assert p.published[f"{LINE}/filler/Speed"] == before[f"{LINE}/filler/Speed"]
    assert p.mirror.counters.unencodable == 1 and p.mirror.pending == 0
