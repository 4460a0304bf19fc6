"""Issue 12, fault suite: crashes and outages in the middle of a batch lose no count and duplicate
no confirmation.

One batch runs on the whole stack as real processes (embedded broker and Mosquitto) through, in
order: the MES webhook answering 503 to its first POSTs, a broker crash (SIGKILL, down ~14 s)
during which the edge node is SIGKILLed while it buffers and started again still without a broker;
then the MES webhook holding a POST while the adapter is SIGKILLed with that POST in flight, and
the adapter started again. Afterwards, exactly:

* the batch's confirmations (partials and final, each counted once by ``confirmation_id``) add
  up to the simulator's own good and reject totals for the batch;
* every confirmation reached the MES, every repeated delivery with the same Idempotency-Key and
  the same body (so the MES dedups a retry, never books twice);
* the batch record's GoodCount history ends at the simulator's total and never goes backwards.

A longer outage (60 s) is the same scenario with other numbers; it is left to a soak run
(``UNS_FAULT_OUTAGE_S=60 ./scripts/test tests/faults/test_process_kills.py``) to keep the suite short.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import deque
from pathlib import Path

import pytest

from simulator.client import call_method, call_simulation, uint32
from tests.e2e.stack import Stack, fast_confirmations, running_stack, simulator_truth, wait_until
from tests.faults.rig import adapter_ready, start_service, stop_service
from tests.mes.receiver import Receiver
from tests.support.brokers import broker_variants

BATCH = "B-FAULT-7"
OUTAGE_S = float(os.environ.get("UNS_FAULT_OUTAGE_S", "14"))


def _confirmations(stack: Stack) -> list[dict]:
    status, rows = stack.api("GET", f"/api/confirmations?batch_id={BATCH}", role="viewer")
    assert status == 200, rows
    return [row["confirmation"] for row in rows]


@pytest.mark.parametrize("broker", broker_variants("embedded"))
def test_crashes_and_outages_during_a_batch_lose_and_duplicate_nothing(tmp_path: Path, broker: str) -> None:
    with Receiver(script=deque([503] * 8)) as receiver:  # the MES is down for its first 8 POSTs
        def configure(adapter: dict) -> None:
            fast_confirmations(adapter)
            adapter["mes"]["webhook"] = {"url": receiver.url}
            adapter["mes"]["partial_interval_s"] = 4  # partial confirmations while faults happen
            adapter["mes"]["retry"] = {"initial_delay_s": 0.2, "max_delay_s": 1.0, "max_attempts": 50}

        with running_stack(tmp_path, adapter_overrides=configure, broker=broker) as stack:
            good0, reject0 = asyncio.run(simulator_truth(stack.opcua))
            status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/start",
                                     {"batch_id": BATCH, "work_order_id": "WO-77", "product_id": "SKU-12"})
            assert status == 201, body
            time.sleep(0.3)
            asyncio.run(call_method(stack.opcua, "Line1", "Start"))
            time.sleep(2.0)
            asyncio.run(call_simulation(stack.opcua, "ForceRejects", uint32(3)))

            # 1. the broker crashes; the edge buffers, is killed while buffering, comes back without a broker
            stop_service(stack, "broker", signal.SIGKILL)
            time.sleep(OUTAGE_S / 2)
            stop_service(stack, "edge", signal.SIGKILL)
            start_service(stack, "edge", wait=False)  # its broker is down: not ready yet
            asyncio.run(call_simulation(stack.opcua, "ForceRejects", uint32(2)))
            time.sleep(OUTAGE_S / 2)
            start_service(stack, "broker")
            wait_until(lambda: adapter_ready(stack).status == 200, 60, "adapter ready after the broker is back")

            # 2. the adapter is killed with a confirmation POST in flight (the MES holds its answer)
            wait_until(lambda: receiver.requests, 30, "a first confirmation at the MES")
            receiver.gate.clear()
            held = len(receiver.requests)
            wait_until(lambda: len(receiver.requests) > held, 30, "a confirmation POST in flight")
            stop_service(stack, "adapter", signal.SIGKILL)
            receiver.gate.set()  # the MES booked it; the adapter never heard
            start_service(stack, "adapter")

            time.sleep(2.0)
            asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
            time.sleep(0.5)
            good1, reject1 = asyncio.run(simulator_truth(stack.opcua))
            assert good1 > good0 and reject1 - reject0 >= 5

            def counters_arrived() -> bool:
                _, tags = stack.api("GET", f"/api/tags?line={stack.line}", role="viewer")
                values = {t["name"]: t["value"] for t in tags if t.get("device_id") is None}
                return values.get("GoodCount") == good1 and values.get("RejectCount") == reject1

            wait_until(counters_arrived, 30, "final counter values in the adapter")
            status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/end", {"batch_id": BATCH})
            assert status == 200, body
            wait_until(lambda: any(c["kind"] == "final" for c in _confirmations(stack)), 30, "final confirmation")

            confirmations = {c["confirmation_id"]: c for c in _confirmations(stack)}
            good = sum(p["good"] for c in confirmations.values() for p in c["produced"])
            scrap = sum(p["scrap"] for c in confirmations.values() for p in c["produced"])
            assert (good, scrap) == (good1 - good0, reject1 - reject0), confirmations

            def all_delivered() -> bool:
                keys = {{k.lower(): v for k, v in r.headers.items()}["idempotency-key"] for r in receiver.requests}
                return keys >= set(confirmations)

            wait_until(all_delivered, 30, "every confirmation at the MES")
            bodies: dict[str, bytes] = {}
            for request in receiver.requests:
                key = {k.lower(): v for k, v in request.headers.items()}["idempotency-key"]
                assert bodies.setdefault(key, request.body) == request.body, f"{key} re-sent with another body"
                assert json.loads(request.body)["confirmation_id"] == key
            assert set(bodies) == set(confirmations)  # nothing the adapter does not know of reached the MES

            status, records = stack.api("GET", f"/api/batches/{BATCH}/records?metric=GoodCount", role="viewer")
            assert status == 200, records
            line_level = [r for r in records["records"] if r["cell"] is None]  # cells count their own
            values = [r["value"] for r in sorted(line_level, key=lambda r: r["source_ts_ms"])
                      if r["quality"] == "GOOD" and r["value"] is not None]
            assert values and values[-1] == good1
            ordered = sorted(line_level, key=lambda r: r["source_ts_ms"])
            assert values == sorted(values), "GoodCount history goes backwards: " + "\n".join(
                f'{r["source_ts_ms"]} {r["value"]} {r["quality"]} hist={r["is_historical"]} rx={r["received_ms"]}'
                for r in ordered)
