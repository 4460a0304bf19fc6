"""Issue 12, defect 5: a full disk under the edge node's data_dir never stops its MQTT session.

The whole stack runs as real processes; the edge's data_dir is a real 8 MB tmpfs (needs root, as
CI has), filled to the last byte by a file of ours. Then the broker is killed, so the edge must
buffer and cannot: it keeps trying to connect (connect failures are counted during the outage),
counts every value it cannot store (``uns_edge_store_lost``), logs the episode once when it
starts and once when it ends (with the same count as the metric; no traceback per value), and says
"store failing" on its /readyz while it lasts. The broker comes back while the disk is still full:
the edge connects and births again anyway (its bdSeq cannot be saved; it is, once space returns).
The space is freed: the episode ends by itself, and a second outage, with space, loses nothing:
every GoodCount change of the line reaches the adapter exactly once, and its last value is the
simulator's own total. Over both outages the edge's own books balance exactly: every value it had
to buffer was either replayed or counted lost.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from simulator.client import call_method
from tests.e2e.stack import Stack, running_stack, simulator_truth, wait_until
from tests.faults.rig import restart, start_service, stop_service
from tests.support.brokers import broker_variants
from tests.support.disk import fill, small_tmpfs
from tests.support.net import free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs as the edge's data_dir needs root "
                                "(CI runs as root)")

START = "store-and-forward failing"
END = "store-and-forward works again"


class Edge:
    def __init__(self, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:  # noqa: S310 - loopback
            text = response.read().decode()
        match = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE)
        assert match, f"{name} not in the edge's /metrics"
        return float(match.group(1))

    def ready(self) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def lines(self, text: str) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if text in line]


def _good_count(stack: Stack) -> tuple[str, int]:
    _, tags = stack.api("GET", f"/api/tags?line={stack.line}", role="viewer")
    tag = next(t for t in tags if t["device_id"] is None and t["name"] == "GoodCount")
    return tag["topic"], tag["value"]


@pytest.mark.parametrize("broker", broker_variants("mosquitto"))
def test_a_full_disk_never_stops_the_edge_and_loses_only_what_it_counts(tmp_path: Path, broker: str) -> None:
    data_dir = tmp_path / "edge-data"
    edge_http = free_port()

    def configure_edge(plant: dict) -> None:
        plant["data_dir"] = str(data_dir)
        plant["http"]["port"] = edge_http
        plant["sparkplug"]["reconnect_max_s"] = 1.0

    with small_tmpfs(data_dir), running_stack(tmp_path, edge_overrides=configure_edge, broker=broker) as stack:
        edge = Edge(edge_http, stack.supervisor.log_dir / "edge.log")
        wait_until(lambda: edge.ready()[0] == 200, 30, "edge ready")
        good0, _ = asyncio.run(simulator_truth(stack.opcua))
        asyncio.run(call_method(stack.opcua, "Line1", "Start"))
        time.sleep(1.0)
        tracebacks = len(edge.lines("Traceback"))
        filler = fill(data_dir)

        # 1. broker down, disk full: values cannot be stored, the edge keeps trying to connect
        failures = edge.metric("uns_edge_mqtt_connect_failures_total")
        stop_service(stack, "broker", signal.SIGKILL)
        wait_until(lambda: edge.metric("uns_edge_store_lost_total") > 0, 15, "values counted as lost")
        status, body = edge.ready()
        assert status == 503 and "store failing" in body, body
        wait_until(lambda: edge.metric("uns_edge_mqtt_connect_failures_total") >= failures + 2, 20,
                   "connect attempts during the outage")
        time.sleep(2.0)

        # 2. the broker comes back while the disk is still full: the edge connects and births
        start_service(stack, "broker")
        wait_until(lambda: edge.metric("uns_edge_born") == 1, 30, "edge born again with the disk full")
        assert edge.metric("uns_edge_store_failing") == 1
        assert len(edge.lines(START)) == 1 and edge.lines(END) == []

        # 3. space returns: the episode ends by itself, one line each, the count as in the metric
        filler.unlink()
        wait_until(lambda: edge.ready()[0] == 200, 20, "edge ready once space returned")
        assert edge.metric("uns_edge_store_failing") == 0
        lost = edge.metric("uns_edge_store_lost_total")
        ends = edge.lines(END)
        assert len(edge.lines(START)) == 1 and len(ends) == 1, ends
        logged = int(re.search(r"(\d+) values could not be stored", ends[0]).group(1))  # type: ignore[union-attr]
        assert logged == lost > 0
        assert len(edge.lines("Traceback")) == tracebacks, "a traceback was logged during the episode"

        # 4. a second outage with space: buffered and replayed, every change exactly once
        topic, _ = _good_count(stack)
        from_ms = int(time.time() * 1000)
        restart(stack, "broker", down_s=3.0, sig=signal.SIGKILL)
        wait_until(lambda: edge.metric("uns_edge_born") == 1 and edge.metric("uns_edge_store_depth") == 0, 30,
                   "edge born again and its store replayed")
        asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
        time.sleep(0.5)
        good1, _ = asyncio.run(simulator_truth(stack.opcua))
        wait_until(lambda: _good_count(stack)[1] == good1, 20, "the adapter's GoodCount at the simulator's total")
        assert edge.metric("uns_edge_store_lost_total") == lost  # nothing lost this time
        # every value that had to be buffered, in both outages, was either replayed once or counted lost
        assert edge.metric("uns_edge_store_depth") == 0
        assert edge.metric("uns_edge_values_stored_total") == edge.metric("uns_edge_values_replayed_total") + lost
        status, history = stack.api("GET", f"/api/tags/history?topic={topic}&from_ms={from_ms}", role="viewer")
        assert status == 200, history
        # the STALE marks of the outage are not changes; every GOOD value is one change, once
        values = [p["value"] for p in history["points"] if p["quality"] == "GOOD"]
        assert values == list(range(values[0], good1 + 1)), history["points"]
        assert good0 < values[0] < good1
        assert stack.supervisor.failed() == []
