"""A primary host killed with values in its socket loses none of them (edge rule 15).

The adapter (the primary host) is frozen with SIGSTOP while the line runs, so the values the edge
publishes meanwhile reach the broker, which routes them into the adapter's socket, and the edge
counts them as delivered. Then the adapter is SIGKILLed: those values die with it, unread. Before
rule 15 they were lost for good (the edge buffers only from the host's offline STATE on), leaving a
gap in the historian and the records that no restart closes. Now the edge stores again what the
broker confirmed in the last ``host_loss_resend_s`` (2 s) before the offline STATE, and replays it
as historical to the restarted adapter. Afterwards, exactly:

* the historian and the records hold every GoodCount value from the batch's first to the
  simulator's final total, each once (no gap, no double);
* the batch's confirmed good count equals the simulator's own, so the values the adapter had
  stored before the freeze and gets again are not counted twice;
* the edge's ``uns_edge_values_resent_after_host_loss_total`` counted the re-sent values.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.parse
from pathlib import Path

import pytest

from simulator.client import call_method
from tests.e2e.stack import (
    Stack,
    edge_get,
    fast_confirmations,
    good_count_ids,
    prom_metric,
    running_stack,
    simulator_truth,
    wait_until,
)
from tests.faults.rig import _entry, adapter_ready, start_service

BATCH = "B-HOST-KILL"
RESENT = "uns_edge_values_resent_after_host_loss_total"
FROZEN_S = 1.0  # the line makes ~5 items meanwhile; well inside the 2 s the edge re-sends


def _history(stack: Stack, ids: dict[str, str], start: int, end: int) -> list[tuple[int, int]]:
    query = urllib.parse.urlencode({**ids, "start": start, "end": end})
    status, body = stack.api("GET", f"/api/history/raw?{query}", role="viewer")
    assert status == 200, body
    return [(v["source_ms"], v["value"]) for v in body["values"] if v["quality"] == "GOOD"]


def _records(stack: Stack) -> list[tuple[int, int]]:
    status, body = stack.api("GET", f"/api/batches/{BATCH}/records?metric=GoodCount", role="viewer")
    assert status == 200, body
    return sorted((r["source_ts_ms"], r["value"]) for r in body["records"]
                  if r["cell"] is None and r["quality"] == "GOOD" and r["value"] is not None)


@pytest.mark.timeout(180)
def test_values_a_killed_adapter_never_read_reach_it_after_its_restart(tmp_path: Path) -> None:
    with running_stack(tmp_path, adapter_overrides=fast_confirmations) as stack:
        topic_ids = good_count_ids(stack)[1]
        good0, _ = asyncio.run(simulator_truth(stack.opcua))
        start_ms = int(time.time() * 1000)
        status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/start",
                                 {"batch_id": BATCH, "work_order_id": "WO-9", "product_id": "SKU-12"})
        assert status == 201, body
        time.sleep(0.3)
        asyncio.run(call_method(stack.opcua, "Line1", "Start"))
        time.sleep(2.0)

        _, _, adapter = _entry(stack, "adapter")
        os.kill(adapter.pid, signal.SIGSTOP)  # frozen: what the broker routes to it waits in its socket
        try:
            time.sleep(FROZEN_S)
        finally:
            os.kill(adapter.pid, signal.SIGKILL)  # ... and dies there, unread
            adapter.wait(timeout=10)
        wait_until(lambda: prom_metric(edge_get(stack, "/metrics")[1], RESENT) > 0, 15,
                   "the edge re-storing what it published shortly before the host died")
        start_service(stack, "adapter")
        wait_until(lambda: adapter_ready(stack).status == 200, 60, "adapter ready again")
        wait_until(lambda: edge_get(stack, "/readyz")[0] == 200, 60, "edge born again to the adapter")
        wait_until(lambda: prom_metric(edge_get(stack, "/metrics")[1], "uns_edge_store_depth") == 0, 60,
                   "the edge's buffer replayed")
        time.sleep(1.0)
        asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
        time.sleep(0.5)
        good1, _ = asyncio.run(simulator_truth(stack.opcua))
        end_ms = int(time.time() * 1000) + 1

        expected = list(range(good0 + 1, good1 + 1))
        last: list[object] = []

        def complete() -> bool:
            history = [v for _, v in _history(stack, topic_ids, start_ms, end_ms) if v > good0]
            records = [v for _, v in _records(stack) if v > good0]
            last[:] = [history, records]
            return history == expected and records == expected
        try:
            wait_until(complete, 30, "every GoodCount value in the historian and the records, once")
        except TimeoutError:
            raise AssertionError(f"expected {expected}\nhistorian {last[0]}\nrecords {last[1]}") from None

        status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/end", {"batch_id": BATCH})
        assert status == 200, body
        assert body["batch"]["good"] == good1 - good0, body["batch"]
        resent = prom_metric(edge_get(stack, "/metrics")[1], RESENT)
        assert resent >= FROZEN_S * 4  # at least the items made while the adapter was frozen
