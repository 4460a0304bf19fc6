"""Issue 19 item 3, end to end: simulator rejects → QA disposition → final confirmation at the MES.

The simulated line runs a batch with forced rejects; the batch ends; with
``mes.disposition.required`` (final: wait) the final confirmation is held while rejects are pending.
Refused dispositions (no QA role, a signature over other numbers, more than pending) change
nothing; two signed QA dispositions classify every reject; the final confirmation then reaches the
MES receiver with the exact scrap / rework / accepted split, and the simulator's own counters give
the good and the reject totals. Every disposition and refusal is in the audit chain.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import yaml

from mes_adapter.quality.models import DispositionSplit, sign_disposition
from simulator.client import call_method, call_simulation, uint32
from tests.e2e.stack import (
    fast_confirmations,
    running_stack,
    simulator_truth,  # the simulator's own good/reject totals
    wait_final_confirmation,
    wait_until,
)
from tests.mes.receiver import Receiver
from uns.audit.query import AuditReader
from uns.commands.signing import generate_private_key, registry_entry

QA_TOKEN = "test-qa-token-0123"
QA_USER, QA_NAME = "quinn", "Quinn Quality"
BATCH = "B-QA-1"


def test_final_confirmation_waits_for_qa_and_carries_the_exact_split(tmp_path: Path) -> None:
    qa_key = generate_private_key()
    paths: dict[str, Path] = {}

    with Receiver() as receiver:
        def configure(adapter: dict) -> None:
            fast_confirmations(adapter)
            adapter["mes"]["webhook"] = {"url": receiver.url}
            adapter["mes"]["disposition"] = {"required": True, "final": "wait"}
            adapter["auth"]["tokens"].append({"user_id": QA_USER, "full_name": QA_NAME, "role": "qa",
                                              "token": QA_TOKEN})
            folder = tmp_path / "config"
            signers = folder / adapter["commands"]["signers"]
            registry = yaml.safe_load(signers.read_text()) or {"users": {}}
            registry.setdefault("users", {}).update(registry_entry(QA_USER, QA_NAME, qa_key.public_key())["users"])
            signers.write_text(yaml.safe_dump(registry))
            data_dir = Path(adapter["data_dir"])
            paths["audit"] = (data_dir if data_dir.is_absolute() else folder / data_dir) / "audit" / "audit.sqlite"

        with running_stack(tmp_path, adapter_overrides=configure) as stack:
            line = stack.line
            stack.tokens["qa"] = QA_TOKEN
            base = f"/api/lines/{line}/batches/{BATCH}/disposition"
            good0, reject0 = asyncio.run(simulator_truth(stack.opcua))
            status, body = stack.api("POST", f"/api/lines/{line}/batch/start",
                                     {"batch_id": BATCH, "work_order_id": "WO-QA", "product_id": "SKU-12"})
            assert status == 201, body
            time.sleep(0.3)  # the line starts after the context is asserted
            asyncio.run(call_method(stack.opcua, "Line1", "Start"))
            time.sleep(1.5)
            asyncio.run(call_simulation(stack.opcua, "ForceRejects", uint32(6)))
            time.sleep(1.5)
            asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
            time.sleep(0.5)
            good1, reject1 = asyncio.run(simulator_truth(stack.opcua))
            made_good, rejects = good1 - good0, reject1 - reject0
            assert made_good > 0 and rejects >= 6

            def counters_arrived() -> bool:
                _, tags = stack.api("GET", f"/api/tags?line={line}", role="viewer")
                values = {t["name"]: t["value"] for t in tags if t.get("device_id") is None}
                return values.get("GoodCount") == good1 and values.get("RejectCount") == reject1

            wait_until(counters_arrived, 20, "final counter values in the adapter")
            status, body = stack.api("POST", f"/api/lines/{line}/batch/end", {"batch_id": BATCH})
            assert status == 200, body

            # held: every reject pending, the final waits (the confirmation loop has run since the end)
            held = wait_until(lambda: (s := stack.api("GET", base, role="qa")[1]) and s["final_waiting"] and s,
                              20, "final held for disposition")
            assert (held["rejects"], held["pending"], held["scrap"], held["rework"], held["accepted"]) == (
                rejects, rejects, 0, 0, 0)
            _, rows = stack.api("GET", "/api/confirmations", role="viewer")
            assert [r for r in rows if r["batch_id"] == BATCH and r["kind"] == "final"] == []
            assert receiver.requests == []

            def signed(did: str, split: DispositionSplit, *, key: Any = qa_key) -> dict:
                signature = sign_disposition(key, user_id=QA_USER, full_name=QA_NAME, line=line, batch_id=BATCH,
                                             disposition_id=did, split=split, now_ms=int(time.time() * 1000))
                return {"disposition_id": did, "split": split.model_dump(), "reason": "visual inspection",
                        "signature": signature.model_dump(mode="json")}

            first = DispositionSplit(scrap=2, rework=1)
            # bad input, each refused with its reason, nothing changes
            status, body = stack.api("POST", base, signed("D-0", first), role="supervisor")
            assert (status, body["reason"]) == (403, "role_required"), body
            forged = signed("D-0", first)
            forged["split"] = {"scrap": 3, "rework": 0, "accepted": 0}  # numbers changed after signing
            status, body = stack.api("POST", base, forged, role="qa")
            assert (status, body["reason"]) == (422, "signature_invalid"), body
            status, body = stack.api("POST", base, signed("D-0", DispositionSplit(scrap=rejects + 1)), role="qa")
            assert (status, body["reason"]) == (409, "exceeds_pending"), body
            assert f"only {rejects} of batch" in body["detail"]
            after_refusals = stack.api("GET", base, role="qa")[1]
            assert (after_refusals["pending"], after_refusals["dispositions"]) == (rejects, [])

            d1 = signed("D-1", first)
            status, body = stack.api("POST", base, d1, role="qa")
            assert status == 201, body
            assert (body["pending"], body["scrap"], body["rework"], body["final_waiting"]) == (rejects - 3, 2, 1, True)
            again = stack.api("POST", base, d1, role="qa")  # the same request retried: not counted twice
            assert again[0] == 201 and again[1]["pending"] == rejects - 3
            reused = stack.api("POST", base, signed("D-1", DispositionSplit(scrap=1)), role="qa")
            assert (reused[0], reused[1]["reason"]) == (409, "disposition_id_used")
            second = DispositionSplit(rework=rejects - 4, accepted=1)
            status, body = stack.api("POST", base, signed("D-2", second), role="qa")
            assert status == 201, body
            assert body["pending"] == 0

            confirmation = wait_final_confirmation(stack, BATCH)
            produced = confirmation["produced"][0]
            assert (produced["good"], produced["scrap"], produced["rework"], produced["accepted"],
                    produced["pending_disposition"]) == (made_good, 2, rejects - 3, 1, 0)
            wait_until(lambda: receiver.requests, 20, "the final at the MES receiver")
            delivered = json.loads(receiver.requests[0].body)
            assert delivered["confirmation_id"] == confirmation["confirmation_id"]
            assert delivered["produced"] == confirmation["produced"]

            with AuditReader(paths["audit"]) as reader:
                recorded = [r.fields() for r in reader.events("disposition_recorded")]
                refused = [r.fields() for r in reader.events("disposition_refused")]
            assert [(r["actor_user_id"], r["auth_method"], r["batch_id"], r["requested_value"], r["old_value"])
                    for r in recorded] == [
                (QA_USER, "ed25519-signature", BATCH, {"scrap": 2.0, "rework": 1.0, "accepted": 0.0},
                 {"pending": rejects}),
                (QA_USER, "ed25519-signature", BATCH,
                 {"scrap": 0.0, "rework": float(rejects - 4), "accepted": 1.0}, {"pending": rejects - 3}),
            ]
            assert [(r["actor_user_id"], r["reason_code"]) for r in refused] == [
                ("demo-supervisor", "role_required"), (QA_USER, "signature_invalid"), (QA_USER, "exceeds_pending"),
                (QA_USER, "disposition_id_used")]
