"""SparkplugHost against a real Mosquitto: STATE on the wire, the mirror, rebirths, deaths."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from tests.host.conftest import LINE, latest_json, rebirth_requests, running_host, wait_for
from tests.host.edge import CELL, EDGE, GROUP, EdgeScript, PahoEdge
from tests.support.mosquitto import BrokerEndpoint, mosquitto_broker
from tests.support.net import free_port
from tests.support.procs import running, stop_process, uns_command
from tests.support.sniffer import Sniffer

pytestmark = pytest.mark.mosquitto

STATE = "spBv1.0/STATE/mes"


async def test_state_birth_reassert_and_clean_offline(mosquitto: BrokerEndpoint, sniffer: Sniffer) -> None:
    """tck-id-host-topic-phid-birth-qos, -birth-retain, -birth-payload, tck-id-payloads-state-birth,
    tck-id-message-flow-hid-sparkplug-state-message-delivered,
    tck-id-host-topic-phid-death-payload-timestamp-disconnect-clean,
    tck-id-operational-behavior-host-application-death-qos/-retained."""
    async with running_host(mosquitto) as host:
        (birth,) = await wait_for(sniffer, lambda m: m.topic == STATE)
        state = json.loads(birth.payload)
        assert state == {"online": True, "timestamp": host.session.connect_timestamp}
        assert birth.qos == 1 and birth.retain
        # someone (the TCK, a confused peer) declares us offline: we re-assert with the same timestamp
        with PahoEdge(mosquitto.host, mosquitto.port) as other:
            other.send((STATE, json.dumps({"online": False, "timestamp": state["timestamp"] + 1}).encode()),
                       qos=1, retain=True)
        found = await wait_for(sniffer, lambda m: m.topic == STATE and json.loads(m.payload)["online"], count=2)
        assert json.loads(found[1].payload) == state and found[1].retain
        assert host.stats.state_reasserted == 1
    # the sniffer is another client: the host's clean offline STATE (after the peer's false one above)
    # reaches it a moment after the host stopped
    last = (await wait_for(sniffer, lambda m: m.topic == STATE and not json.loads(m.payload)["online"], count=2))[-1]
    assert sniffer.snapshot(lambda m: m.topic == STATE)[-1] == last  # nothing after the offline STATE
    offline = json.loads(last.payload)
    assert offline["online"] is False and offline["timestamp"] > state["timestamp"]


async def test_will_carries_the_connect_timestamp_when_the_host_dies(mosquitto: BrokerEndpoint,
                                                                     sniffer: Sniffer, tmp_path) -> None:  # noqa: ANN001
    """tck-id-host-topic-phid-death-payload-timestamp-connect: the CLI host is killed, the broker sends the Will."""
    cmd = uns_command("host", "--broker", mosquitto.url, "--host-id", "mes", "--stats-every-s", "0")
    with running(cmd, log_path=tmp_path / "host.log") as proc:
        (birth,) = await wait_for(sniffer, lambda m: m.topic == STATE, timeout=20)
        stop_process(proc, sig=signal.SIGKILL)
    (will,) = await wait_for(sniffer, lambda m: m.topic == STATE and not json.loads(m.payload)["online"])
    assert json.loads(will.payload)["timestamp"] == json.loads(birth.payload)["timestamp"]
    assert will.qos == 1 and will.retain


async def test_mirror_shows_our_edge_node_metrics(mosquitto: BrokerEndpoint, sniffer: Sniffer,
                                                  edge: PahoEdge) -> None:
    async with running_host(mosquitto) as host:
        edge.send(edge.script.nbirth())
        edge.send(edge.script.dbirth())
        edge.send(edge.script.ddata({"Speed": 98.25, "Offset": -7, "Running": False}))
        await wait_for(sniffer, lambda m: m.topic == f"{LINE}/filler/Running"
                       and json.loads(m.payload)["value"] is False)
        speed = latest_json(sniffer, f"{LINE}/filler/Speed")
        assert speed["value"] == 98.25 and speed["quality"] == "GOOD" and speed["datatype"] == "Double"
        assert latest_json(sniffer, f"{LINE}/filler/Offset")["value"] == -7
        assert latest_json(sniffer, f"{LINE}/filler/Speed/_meta")["unit"] == "m/min"
        assert all(m.retain and m.qos == 1 for m in sniffer.snapshot(lambda m: m.topic.startswith(LINE)))
        assert host.model.metric(GROUP, EDGE, CELL, "Offset").value == -7  # type: ignore[union-attr]
        assert host.stats.births == 2 and host.stats.invalid_payloads == 0
        assert rebirth_requests(sniffer, GROUP, EDGE) == []


async def _born(edge: PahoEdge, sniffer: Sniffer) -> None:
    edge.send(edge.script.nbirth())
    edge.send(edge.script.dbirth())
    await wait_for(sniffer, lambda m: m.topic == f"{LINE}/filler/Counts")


async def _exactly_one_rebirth(sniffer: Sniffer, settle: float = 1.0) -> None:
    await wait_for(sniffer, lambda m: m.topic == f"spBv1.0/{GROUP}/NCMD/{EDGE}")
    await asyncio.sleep(settle)  # anything more would come now: the throttle is 3 s
    assert len(rebirth_requests(sniffer, GROUP, EDGE)) == 1


async def test_seq_gap_gets_exactly_one_rebirth(mosquitto: BrokerEndpoint, sniffer: Sniffer, edge: PahoEdge) -> None:
    """tck-id-operational-behavior-host-reordering-rebirth, tck-id-operational-behavior-data-commands-ncmd-rebirth-verb,
    -ncmd-rebirth-name, -ncmd-rebirth-value, tck-id-topics-ncmd-topic, tck-id-payloads-ncmd-seq."""
    async with running_host(mosquitto) as host:
        await _born(edge, sniffer)
        for _ in range(4):
            edge.script.skip_seq(2)
            edge.send(edge.script.ddata({"Speed": 1.0}))
        await _exactly_one_rebirth(sniffer)
        assert edge.commands, "the edge node received the NCMD"
        assert host.stats.rebirths_requested == {"seq_gap": 1} and host.stats.seq_gaps == 4


async def test_reorder_timeout_on_the_wire(mosquitto: BrokerEndpoint, sniffer: Sniffer, edge: PahoEdge) -> None:
    """tck-id-operational-behavior-host-reordering-param / -start / -success / -rebirth: with
    ``reorder_timeout_ms`` an out-of-order pair is applied in seq order with no NCMD; a gap never
    filled earns one rebirth after the timeout, not before."""
    async with running_host(mosquitto, reorder_timeout_ms=800) as host:
        await _born(edge, sniffer)
        early, late = edge.script.ddata({"Speed": 1.0}), edge.script.ddata({"Speed": 2.0})
        edge.send(late)
        edge.send(early)
        await wait_for(sniffer, lambda m: m.topic == f"{LINE}/filler/Speed" and json.loads(m.payload)["value"] == 2.0)
        await asyncio.sleep(1.2)  # past the timeout: nothing was left open
        assert rebirth_requests(sniffer, GROUP, EDGE) == []
        assert host.model.metric(GROUP, EDGE, CELL, "Speed").value == 2.0  # type: ignore[union-attr]
        assert host.stats.extra["reorder_recovered"] == 1 and host.stats.seq_gaps == 0
        edge.script.skip_seq(1)  # never sent
        edge.send(edge.script.ddata({"Speed": 3.0}))
        await asyncio.sleep(0.4)
        assert rebirth_requests(sniffer, GROUP, EDGE) == []  # still waiting
        await _exactly_one_rebirth(sniffer)
        assert host.model.metric(GROUP, EDGE, CELL, "Speed").value == 3.0  # type: ignore[union-attr]
        assert host.stats.seq_gaps == 1


async def test_unknown_alias_gets_exactly_one_rebirth(mosquitto: BrokerEndpoint, sniffer: Sniffer,
                                                      edge: PahoEdge) -> None:
    async with running_host(mosquitto) as host:
        await _born(edge, sniffer)
        for alias in (900, 901, 902):
            edge.send(edge.script.ddata({"Ghost": 1}, alias_override=alias))
        await _exactly_one_rebirth(sniffer)
        assert host.stats.rebirths_requested == {"unknown_alias": 1}


async def test_restarted_edge_node_gets_exactly_one_rebirth(mosquitto: BrokerEndpoint, sniffer: Sniffer,
                                                            edge: PahoEdge) -> None:
    """The node restarts (NDEATH, new bdSeq) and its new NBIRTH is lost: its data earns one rebirth."""
    async with running_host(mosquitto) as host:
        await _born(edge, sniffer)
        edge.send(edge.script.ndeath())
        edge.script = EdgeScript(bd_seq=1)
        edge.script.nbirth()  # lost
        edge.script.dbirth()
        for i in range(4):
            edge.send(edge.script.ddata({"Speed": float(i)}))
        await _exactly_one_rebirth(sniffer)
        assert host.stats.rebirths_requested == {"data_before_birth": 1}
        # the edge answers the rebirth; the mirror is live again
        edge.send(edge.script.nbirth())
        edge.send(edge.script.dbirth())
        edge.send(edge.script.ddata({"Speed": 77.0}))
        await wait_for(sniffer, lambda m: m.topic == f"{LINE}/filler/Speed" and json.loads(m.payload)["value"] == 77.0)
        assert latest_json(sniffer, f"{LINE}/filler/Speed")["quality"] == "GOOD"


async def test_ndeath_marks_every_metric_stale_in_the_mirror(mosquitto: BrokerEndpoint, sniffer: Sniffer,
                                                             edge: PahoEdge) -> None:
    """tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-tags-stale, -devices-tags-stale."""
    async with running_host(mosquitto, stale_on_shutdown=False) as host:
        await _born(edge, sniffer)
        mirrored = {m.topic for m in sniffer.snapshot(lambda m: m.topic.startswith(LINE) and "_meta" not in m.topic)}
        assert len(mirrored) == 8
        edge.send(EdgeScript(bd_seq=9).ndeath())  # stale: another session's bdSeq, ignored
        edge.send(edge.script.ndeath())
        await wait_for(sniffer, lambda m: m.topic in mirrored and json.loads(m.payload)["quality"] == "STALE",
                       count=len(mirrored))
        for topic in mirrored:
            assert latest_json(sniffer, topic)["quality"] == "STALE"
        assert latest_json(sniffer, f"{LINE}/filler/Speed")["value"] == 120.5
        assert host.stats.violations.get("stale_ndeath") == 1
        node = host.model.node(GROUP, EDGE)
        assert node is not None and not node.online


async def test_clean_shutdown_publishes_stale_then_offline(mosquitto: BrokerEndpoint, sniffer: Sniffer,
                                                           edge: PahoEdge) -> None:
    async with running_host(mosquitto):
        await _born(edge, sniffer)
    stale = sniffer.snapshot(lambda m: m.topic == f"{LINE}/filler/Speed")[-1]
    assert json.loads(stale.payload)["quality"] == "STALE"
    last = sniffer.snapshot(lambda m: m.topic == STATE or m.topic.startswith(LINE))[-1]
    assert last.topic == STATE and not json.loads(last.payload)["online"]


async def test_reconnects_after_the_broker_restarts(tmp_path, sniffer: Sniffer) -> None:  # noqa: ANN001
    """A lost connection makes every tag STALE in the model (spec ch. 5) and the host comes back online."""

    port = free_port()
    with mosquitto_broker(tmp_path, port=port) as broker:
        async with running_host(broker, reconnect_min_s=0.2, reconnect_max_s=0.5) as host:
            with PahoEdge(broker.host, broker.port) as e:
                e.send(e.script.nbirth())
                e.send(e.script.dbirth())
                for _ in range(100):
                    if host.model.metric(GROUP, EDGE, CELL, "Speed") is not None:
                        break
                    await asyncio.sleep(0.05)
            first = host.session.connect_timestamp
            os.kill(broker.pid, signal.SIGKILL)  # the broker we started, by PID
            for _ in range(100):
                if not host.online:
                    break
                await asyncio.sleep(0.05)
            assert host.model.metric(GROUP, EDGE, CELL, "Speed").quality.value == "STALE"  # type: ignore[union-attr]
            again = tmp_path / "again"
            again.mkdir()
            with mosquitto_broker(again, port=port):
                await host.wait_online(15)
                assert host.session.connect_timestamp != first
                assert host.stats.reconnects >= 1
