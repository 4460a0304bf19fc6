"""Issue "MES adapter", end to end: simulator → edge node → broker → adapter → MES webhook.

A batch is started through the REST API, the simulated line runs with injected rejects and a
stop, the batch is ended; the final production confirmation's good and scrap equal the
simulator's own counts for that window exactly, it reaches a real HTTP receiver, and the retry
after a receiver outage carries the same idempotency key and body.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from pathlib import Path

import pytest

from simulator.client import call_method, call_simulation, double, uint32
from tests.e2e.stack import fast_confirmations, running_stack, simulator_truth, wait_final_confirmation, wait_until
from tests.mes.receiver import Receiver
from tests.support.brokers import broker_variants


@pytest.mark.parametrize("broker", broker_variants("mosquitto"))
def test_confirmation_counts_equal_the_simulator_and_survive_a_webhook_outage(tmp_path: Path, broker: str) -> None:
    """Written for both brokers (only the broker URL differs); tests.support.brokers says which run."""
    with Receiver(script=deque([503])) as receiver:
        def configure(adapter: dict) -> None:
            fast_confirmations(adapter)
            adapter["mes"]["webhook"] = {"url": receiver.url}
            adapter["mes"]["retry"] = {"initial_delay_s": 0.2, "max_delay_s": 1.0, "max_attempts": 5}

        with running_stack(tmp_path, adapter_overrides=configure, broker=broker) as stack:
            line_path = stack.line
            good0, reject0 = asyncio.run(simulator_truth(stack.opcua))
            status, body = stack.api("POST", f"/api/lines/{line_path}/batch/start",
                                     {"batch_id": "B-4872", "work_order_id": "WO-4711", "product_id": "SKU-12",
                                      "target_quantity": 1000})
            assert status == 201, body
            time.sleep(0.3)  # the line starts after the context is asserted
            asyncio.run(call_method(stack.opcua, "Line1", "Start"))
            time.sleep(2.0)
            asyncio.run(call_simulation(stack.opcua, "ForceRejects", uint32(4)))
            time.sleep(1.0)
            asyncio.run(call_simulation(stack.opcua, "ForceStop", double(1.5)))
            time.sleep(3.0)
            asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
            time.sleep(0.5)
            good1, reject1 = asyncio.run(simulator_truth(stack.opcua))
            produced_good, produced_reject = good1 - good0, reject1 - reject0
            assert produced_good > 0 and produced_reject >= 4

            # the adapter has seen the last counter values before the batch ends
            def counters_arrived() -> bool:
                _, tags = stack.api("GET", f"/api/tags?line={line_path}", role="viewer")
                values = {t["name"]: t["value"] for t in tags if t.get("device_id") is None}
                return values.get("GoodCount") == good1 and values.get("RejectCount") == reject1

            wait_until(counters_arrived, 20, "final counter values in the adapter")
            status, body = stack.api("POST", f"/api/lines/{line_path}/batch/end", {"batch_id": "B-4872"})
            assert status == 200, body
            confirmation = wait_final_confirmation(stack, "B-4872")
            produced = confirmation["produced"][0]
            assert produced["good"] == produced_good
            assert produced["scrap"] == produced_reject
            assert confirmation["work_order_id"] == "WO-4711"

            wait_until(lambda: len(receiver.requests) >= 2, 30, "webhook retry after the outage")
            first, second = receiver.requests[0], receiver.requests[1]
            key = {k.lower(): v for k, v in first.headers.items()}["idempotency-key"]
            assert {k.lower(): v for k, v in second.headers.items()}["idempotency-key"] == key
            assert first.body == second.body
            delivered = json.loads(second.body)
            assert delivered["confirmation_id"] == key == confirmation["confirmation_id"]
