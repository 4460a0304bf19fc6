"""Issue 12, defect 1: after any broker outage every MQTT connection of the stack comes back, the
retained UNS is complete again and nothing is miscounted.

The whole stack runs as real processes (simulator, edge, broker, adapter) on the embedded broker
and on Mosquitto, neither with persistence: a restarted broker retains nothing, so the UNS tree a
fresh subscriber sees afterwards is only what the adapter's mirror published again on its new
connection (plus what the edge's re-birth refreshed).

One batch runs across three restarts of the broker: a quick clean stop and start (SIGTERM, started
at once) and a slow crash (SIGKILL, down 12 s) while the line produces, then a quick one with the
line stopped. After each: the adapter is ready again (and while the broker was down it said which
connections were missing), the retained tree has exactly the topics it had before with every
``_meta`` sibling; with the line stopped every retained tag carries the adapter's current value
and quality. At the end the batch's final confirmation equals the simulator's own counts.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import pytest

from simulator.client import call_method
from tests.e2e.stack import (
    Stack,
    fast_confirmations,
    running_stack,
    simulator_truth,
    wait_final_confirmation,
    wait_until,
)
from tests.faults.rig import adapter_metrics, adapter_ready, restart, retained_tree, start_service, stop_service
from tests.support.brokers import both_brokers

ENTERPRISE = "acme"
MQTT_CONNECTIONS = {"sparkplug_host", "uns_mirror", "uns_link"}


def _tags(stack: Stack) -> dict[str, dict]:
    status, tags = stack.api("GET", f"/api/tags?line={stack.line}", role="viewer")
    assert status == 200, tags
    return {t["topic"]: t for t in tags if t.get("topic")}


def _is_event(topic: str) -> bool:
    return "/_alarms/" in topic


def _wait_tree(stack: Stack, topics: set[str], what: str) -> dict[str, dict]:
    """The retained tree once its tags, ``_meta`` and other state topics are exactly ``topics``
    (the mirror re-publishes in batches), and every quality event under ``_alarms`` is cleared.

    Why events are apart: while the host had no broker every tag was STALE (not known), which is
    a quality episode (reason ``comm_lost``) that the adapter records and publishes under
    ``_alarms``; once the tags are GOOD again each such event must say ``cleared``."""
    topics = {t for t in topics if not _is_event(t)}
    found: dict[str, dict] = {}

    def complete() -> bool:
        found.clear()
        found.update(retained_tree(stack.mqtt_port, ENTERPRISE, settle_s=0.5))
        events = [message for topic, message in found.items() if _is_event(topic)]
        return {t for t in found if not _is_event(t)} == topics and all(
            message.get("state") == "cleared" for message in events)

    try:
        wait_until(complete, 40, what, interval=0.5)
    except TimeoutError:
        state = {t for t in found if not _is_event(t)}
        missing, extra = sorted(topics - state), sorted(state - topics)
        active = sorted(t for t, m in found.items() if _is_event(t) and m.get("state") != "cleared")
        raise AssertionError(f"{what}: retained tree differs; missing {missing[:10]} ({len(missing)}), "
                             f"extra {extra[:10]} ({len(extra)}), events not cleared {active[:10]} "
                             f"({len(active)})") from None
    return dict(found)


def _current_values_retained(stack: Stack) -> bool:
    """Every tag's retained message is the adapter's current value: taken between two reads of the
    adapter's model, it is no older than the first, no newer than the second, and equal to
    whichever read has its timestamp (noisy sensors change between reads; nothing else may)."""
    before = _tags(stack)
    tree = retained_tree(stack.mqtt_port, ENTERPRISE, settle_s=0.5)
    after = _tags(stack)
    for topic, tag in after.items():
        retained = tree.get(topic)
        if retained is None:
            return False
        ts = retained["timestamp_ms"]
        first = before.get(topic)
        if first is None or not first["timestamp_ms"] <= ts <= tag["timestamp_ms"]:
            return False
        for read in (first, tag):
            if read["timestamp_ms"] == ts and (read["value"], read["quality"]) != (retained["value"],
                                                                                 retained["quality"]):
                return False
        if tag["quality"] != "GOOD":
            return False
    return True


def _configure(adapter: dict) -> None:
    fast_confirmations(adapter)
    adapter["host"]["reconnect_max_s"] = 2.0


@pytest.mark.parametrize("broker", both_brokers())
def test_every_connection_and_the_retained_uns_come_back_after_broker_restarts(tmp_path: Path, broker: str) -> None:
    with running_stack(tmp_path, adapter_overrides=_configure, broker=broker) as stack:
        good0, reject0 = asyncio.run(simulator_truth(stack.opcua))
        status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/start",
                                 {"batch_id": "B-12", "work_order_id": "WO-12", "product_id": "SKU-12",
                                  "target_quantity": 100000})
        assert status == 201, body
        time.sleep(0.3)
        asyncio.run(call_method(stack.opcua, "Line1", "Start"))
        time.sleep(1.0)

        tag_topics = set(_tags(stack))
        before = retained_tree(stack.mqtt_port, ENTERPRISE)
        assert tag_topics <= set(before) and {f"{t}/_meta" for t in tag_topics} <= set(before)
        topics = set(before)

        # 1. quick clean stop and start while the line produces
        restart(stack, "broker", down_s=0.0, sig=signal.SIGTERM)
        wait_until(lambda: adapter_ready(stack).status == 200, 30, "adapter ready after a quick restart")
        _wait_tree(stack, topics, "retained UNS after a quick restart")

        # 2. a crash, down 12 s: the adapter says which connections are missing, then recovers
        stop_service(stack, "broker", signal.SIGKILL)
        down = wait_until(lambda: (r := adapter_ready(stack)).status == 503 and MQTT_CONNECTIONS <= r.failing
                          and r, 15, "adapter not ready, naming its MQTT connections")
        assert "UNS mirror not connected" in down.detail
        time.sleep(12)
        assert adapter_ready(stack).failing >= MQTT_CONNECTIONS
        metrics = adapter_metrics(stack)
        assert "uns_host_mirror_connected 0.0" in metrics and "uns_host_online 0.0" in metrics
        failed_attempts = re.search(r"^uns_host_mirror_connect_failures_total (\S+)$", metrics, re.MULTILINE)
        assert failed_attempts and float(failed_attempts.group(1)) >= 3  # it kept trying while down
        start_service(stack, "broker")
        wait_until(lambda: adapter_ready(stack).status == 200, 40, "adapter ready after a slow restart")
        assert "uns_host_mirror_connected 1.0" in adapter_metrics(stack)
        _wait_tree(stack, topics, "retained UNS after a slow restart")

        # 3. the line stopped, one more quick restart: every retained tag is the current value
        asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
        time.sleep(0.5)
        good1, reject1 = asyncio.run(simulator_truth(stack.opcua))
        restart(stack, "broker", down_s=0.0, sig=signal.SIGTERM)
        wait_until(lambda: adapter_ready(stack).status == 200, 30, "adapter ready after the last restart")
        tree = _wait_tree(stack, topics, "retained UNS after the last restart")
        assert all(f"{t}/_meta" in tree for t in tag_topics)
        wait_until(lambda: _current_values_retained(stack), 30, "every retained tag at its current value")
        line_counters = {t["name"]: topic for topic, t in _tags(stack).items()
                         if t["device_id"] is None and t["name"] in ("GoodCount", "RejectCount")}
        now = retained_tree(stack.mqtt_port, ENTERPRISE)
        assert {name: now[topic]["value"] for name, topic in line_counters.items()} == \
            {"GoodCount": good1, "RejectCount": reject1}

        # the batch spanning all three outages is confirmed with the simulator's own counts
        status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/end", {"batch_id": "B-12"})
        assert status == 200, body
        confirmation = wait_final_confirmation(stack, "B-12")
        produced = confirmation["produced"][0]
        assert (produced["good"], produced["scrap"]) == (good1 - good0, reject1 - reject0)
        assert good1 - good0 > 0
        assert stack.supervisor.failed() == []
