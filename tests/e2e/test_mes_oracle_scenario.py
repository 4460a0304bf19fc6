"""Issue 19, "what must be true when resolved", first bullet: ONE scenario on the real stack (broker,
simulator, edge, adapter, an MES webhook receiver), every figure of the batch record equal to an
oracle computed here by hand.

The scenario: an order is posted → its start is signed and written to the PLC (StartBatch), the
batch counts as started only once the edge read the parameters back, and the simulator holds them →
the crew is asserted (one person over REST, one on the UNS, in and out) → the line runs with forced
rejects and two forced stops: one with a PLC stop-reason code the adapter maps onto the hierarchy,
one without, which an operator explains → material lots are asserted (REST and UNS), the produced
lot and its split → the line stops and the batch ends → QA classifies the rejects (one disposition
sent twice at once, as a client retry does: counted once) → the final confirmation.

The oracle, from the simulator's own figures: good and reject counts from ``Simulation/Truth`` read
before and after; the stops from the simulator's ``State`` samples recorded in the batch (source
timestamps set by the simulator; each stretch outside Execute is one stop, the batch opening before
the line reached Execute), classified by the micro-stop cutoff and their reasons into buckets; the
time figures from the batch window (machine time = batch − every stop; labour time = each person's
overlap with the batch); OEE from the ISO 22400 formulas; the conversion factor of the product.
Then the trace queries backward and forward, ``uns audit verify`` on both chains, the list of
every decision in the adapter's chain, and a tampered copy that verify names as broken.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from aiomqtt import Client as Mqtt

from mes_adapter.quality.models import DispositionSplit, sign_disposition
from simulator.client import call_method, call_simulation, double, int32, uint32
from tests.e2e.stack import (
    Stack,
    fast_confirmations,
    running_stack,
    simulator_truth,
    stop_service,
    wait_final_confirmation,
    wait_until,
)
from tests.e2e.test_downtime import _oracle as stops_oracle
from tests.e2e.test_orders_genealogy import ORDER, _read_tags, _sign
from tests.mes.receiver import Receiver
from uns.audit.query import AuditReader
from uns.audit.verify import verify
from uns.commands.signing import load_private_key
from uns.mqtt_url import parse_broker_url

pytestmark = pytest.mark.timeout(180)

UNS = str(Path(sys.executable).with_name("uns"))
MICRO_S = 1.0          # the forced 1.5 s stops are stops; a shorter head or tail stop would be a micro-stop
JAM = 180_001          # the PLC's stop-reason code for a jam, mapped onto BD-JAM
KG_PER_EA = 0.0125     # a bottle of SKU-12 weighs 12.5 g
IDEAL_CYCLE_S = 0.1    # PRI of SKU-12: twice the simulated line's rate, so effectiveness stays well below 1
WO = ORDER["order_id"]
BUCKETS = ("breakdowns", "setup_adjustments", "small_stops", "unexplained")


def _configure(adapter: dict, receiver_url: str) -> None:
    fast_confirmations(adapter)
    adapter["mes"]["webhook"] = {"url": receiver_url}
    adapter["mes"]["oee"] = {"micro_stop_threshold_s": MICRO_S}
    adapter["mes"]["disposition"] = {"required": True, "final": "wait"}
    line = adapter["mes"]["lines"][0]
    line["conversions"] = {"SKU-12": {"counted_in": "EA", "steps": [{"to": "kg", "factor": KG_PER_EA}]}}
    line["ideal_cycle_s"] = {"SKU-12": IDEAL_CYCLE_S}
    line["context_publisher"] = "mes"  # the broker user whose _context messages are trusted as theirs
    adapter["mes"]["downtime"] = {
        "debounce_s": 0.0,
        "reasons": {"breakdowns": {"mechanical": {"BD-JAM": "material jam"}},
                    "setup_adjustments": {"adjustment": {"SU-ADJ": "adjustment"}}},
        "reason_tags": {line["line"]: {"metric": "StopReason", "codes": {str(JAM): "BD-JAM"}}}}


async def _publish(stack: Stack, topic: str, payload: dict) -> None:
    """A plant app (a badge reader, a weigh station) asserting on the UNS as the `mes` broker user."""
    adapter = yaml.safe_load((stack.folder / "adapter.yaml").read_text())
    url = parse_broker_url(adapter["host"]["broker_url"])
    async with Mqtt(**url.aiomqtt_kwargs(identifier="plant-app-19")) as mqtt:
        await mqtt.publish(f"{stack.line}/_context/{topic}", json.dumps(payload).encode(), qos=1, retain=True)


def _verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([UNS, "audit", "verify", str(path)], capture_output=True, text=True, timeout=60)


def test_order_to_final_confirmation_equals_the_hand_computed_oracle(tmp_path: Path) -> None:
    with Receiver() as receiver, running_stack(tmp_path, adapter_overrides=lambda a: _configure(a, receiver.url)) \
            as stack:
        line = stack.line
        summary = yaml.safe_load((stack.folder / "stack.yaml").read_text())
        data = stack.folder.parent / "data"
        audit_path = data / "adapter" / "audit" / "audit.sqlite"
        good0, reject0 = asyncio.run(simulator_truth(stack.opcua))
        before_order = int(time.time() * 1000)

        # ------------------------------------------------ the order, down to the PLC and read back
        status, order = stack.api("POST", "/api/orders", {**ORDER, "line": line})
        assert (status, order["status"]) == (201, "received"), order
        status, started = stack.api("POST", f"/api/orders/{WO}/start")
        assert status == 202, started
        command = started["command"]
        command_id = command["request"]["command_id"]
        assert command["request"]["value"] == {"Order": WO, "Product": "SKU-12", "Quantity": ORDER["quantity"]}
        status, signed = stack.api("POST", f"/api/commands/{command_id}/sign", _sign(stack, command))
        assert status == 200, signed
        order = wait_until(lambda: (o := stack.api("GET", f"/api/orders/{WO}", role="viewer")[1])["status"]
                           != "starting" and o, 30, "order start confirmed by the edge")
        assert (order["status"], order["batch_id"]) == ("running", WO), order
        assert stack.api("GET", f"/api/commands/{command_id}", role="viewer")[1]["status"] == "confirmed"
        assert asyncio.run(_read_tags(stack.opcua, "Line1/CurrentBatch", "Line1/CurrentProduct",
                                      "Line1/BatchQuantity")) == [WO, "SKU-12", ORDER["quantity"]]
        batch_start = order["started_ms"]

        # ------------------------------------------------ the crew: ann over REST (on since before the order),
        # bob on the UNS (in 1 s after the start, out 3 s later); bad input refused with its reason
        ann = {"person_id": "ann", "start_ms": before_order - 60_000}
        assert stack.api("POST", f"/api/lines/{line}/crew", ann) == (201, {"outcome": "accepted"})
        assert stack.api("POST", f"/api/lines/{line}/crew", ann) == (200, {"outcome": "duplicate"})
        for path, body, refusal in (
                ("acme/plant9/none/line0", ann, (404, "unknown_line")),
                (line, {"person_id": "cem", "start_ms": batch_start, "end_ms": batch_start - 1},
                 (422, "end_before_start")),
                (line, {"person_id": "ann", "start_ms": batch_start, "end_ms": batch_start + 1_000},
                 (409, "crew_overlap"))):
            status, body = stack.api("POST", f"/api/lines/{path}/crew", body)
            assert (status, body["reason"]) == refusal, body
        bob_in, bob_out = batch_start + 1_000, batch_start + 4_000
        asyncio.run(_publish(stack, "crew", {"person_id": "bob", "start_ms": bob_in, "asserted_by": "badge-7"}))
        wait_until(lambda: len(stack.api("GET", f"/api/lines/{line}/crew", role="viewer")[1]) == 2, 20, "bob in")
        asyncio.run(_publish(stack, "crew", {"person_id": "bob", "start_ms": bob_in, "end_ms": bob_out,
                                             "asserted_by": "badge-7"}))
        wait_until(lambda: stack.api("GET", f"/api/lines/{line}/crew", role="viewer")[1][1]["end_ms"] == bob_out,
                   20, "bob out")

        # ------------------------------------------------ production: rejects, a jam (PLC reason), a technical stop
        time.sleep(0.5)
        asyncio.run(call_simulation(stack.opcua, "ForceRejects", uint32(6)))
        time.sleep(1.5)  # the six forced rejects reach the last cell
        asyncio.run(call_simulation(stack.opcua, "ForceStop", double(1.5), int32(JAM)))
        time.sleep(2.5)  # held 1.5 s (plus Holding and Unholding), then Execute again
        asyncio.run(call_simulation(stack.opcua, "ForceStop", double(1.5)))
        time.sleep(2.5)

        # ------------------------------------------------ lots: one over REST, one on the UNS; the produced lot, split
        pet = {"line": line, "batch_id": WO, "lot_id": "PET-LOT-77", "material_id": "RM-PET-500", "quantity": 12.5,
               "uom": "kg"}
        assert stack.api("POST", "/api/genealogy/consumed", pet) == (201, {"outcome": "accepted"})
        asyncio.run(_publish(stack, "material", {"kind": "consumed", "batch_id": WO, "lot_id": "CAP-LOT-3",
                                                 "material_id": "PK-CAP", "quantity": 2000, "uom": "EA",
                                                 "asserted_by": "weigh-station-2"}))
        wait_until(lambda: len(stack.api("GET", f"/api/genealogy/batches/{line}/{WO}", role="viewer")[1]["consumed"])
                   == 2, 20, "the UNS lot assertion")
        assert stack.api("POST", "/api/genealogy/produced", {
            "line": line, "batch_id": WO, "lot_id": "FIN-A", "material_id": "SKU-12", "quantity": 500,
            "uom": "EA"}) == (201, {"outcome": "accepted"})
        assert stack.api("POST", "/api/genealogy/links", {
            "kind": "split", "sources": [{"lot_id": "FIN-A", "quantity": 500, "uom": "EA"}],
            "targets": [{"lot_id": "FIN-A1", "quantity": 300, "uom": "EA"},
                        {"lot_id": "FIN-A2", "quantity": 200, "uom": "EA"}]}) == (201, {"outcome": "accepted"})

        # ------------------------------------------------ the line stops; the batch ends once the counts arrived
        asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
        good1, reject1 = asyncio.run(simulator_truth(stack.opcua))
        good, rejects = good1 - good0, reject1 - reject0
        assert good > 0 and rejects >= 6

        def counters_arrived() -> bool:
            _, tags = stack.api("GET", f"/api/tags?line={line}", role="viewer")
            values = {t["name"]: t["value"] for t in tags if t.get("device_id") is None}
            return (values.get("GoodCount"), values.get("RejectCount"), values.get("State")) == (
                good1, reject1, "Stopped")

        wait_until(counters_arrived, 20, "final counts and the Stopped state in the adapter")
        status, ended = stack.api("POST", f"/api/lines/{line}/batch/end", {"batch_id": WO})
        assert status == 200, ended
        batch_end = ended["batch"]["end_ms"]
        assert (ended["batch"]["start_ms"], ended["batch"]["good"], ended["batch"]["rejects"]) == (
            batch_start, good, rejects)

        # ------------------------------------------------ stops: the oracle from the simulator's State samples
        _, records = stack.api("GET", f"/api/batches/{WO}/records?line={line}&metric=State", role="viewer")
        states = [(r["source_ts_ms"], r["value"]) for r in records["records"] if r["cell"] is None]
        expected = stops_oracle(states, batch_start, batch_end)
        assert len(expected) == 4, states  # the head (before Execute), the jam, the technical stop, the tail
        _, listed = stack.api("GET", f"/api/stops?line={line}&batch={WO}", role="viewer")
        stops = listed["stops"]
        assert [s["lost_s"] for s in stops] == [lost / 1000 for _, lost in expected]
        assert [s["start_ms"] for s in stops[1:]] == [start for start, _ in expected[1:]]
        # a stop shorter than the cutoff is a micro-stop; the head stop began when the line went Idle, long
        # before the batch, so it never is one (its lost time is only the part inside the batch)
        micro = [False] + [lost <= MICRO_S * 1000 for _, lost in expected[1:]]
        assert [s["micro"] for s in stops] == micro and micro[1:3] == [False, False]
        jam, technical = stops[1], stops[2]
        assert (jam["reason"]["code"], jam["reason"]["source"], jam["bucket"]) == ("BD-JAM", "plc", "breakdowns")
        assert (technical["reason"], technical["bucket"]) == (None, "unexplained")
        status, body = stack.api("POST", "/api/stops/reason", {"line": line, "start_ms": technical["start_ms"],
                                                               "code": "SU-ADJ", "comment": "guide rail"})
        assert (status, body["bucket"]) == (200, "setup_adjustments"), body

        # ------------------------------------------------ QA: one disposition sent twice at once (a client
        # retry), counted once; then the rest
        qa_key = load_private_key(Path(summary["signing_keys"]["demo-qa"]))
        base = f"/api/lines/{line}/batches/{WO}/disposition"
        wait_until(lambda: stack.api("GET", base, role="qa")[1]["final_waiting"], 20, "final held for QA")
        assert receiver.requests == []

        def disposition(did: str, split: DispositionSplit) -> dict:
            signature = sign_disposition(qa_key, user_id="demo-qa", full_name="Demo qa", line=line, batch_id=WO,
                                         disposition_id=did, split=split, now_ms=int(time.time() * 1000))
            return {"disposition_id": did, "split": split.model_dump(), "reason": "visual inspection",
                    "signature": signature.model_dump(mode="json")}

        scrap, rework, accepted = 2, rejects - 3, 1
        first = disposition("D-1", DispositionSplit(scrap=scrap, rework=1))
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: stack.api("POST", base, first, role="qa"), range(2)))
        assert [(s, b["scrap"], b["rework"], b["pending"]) for s, b in answers] == [(201, scrap, 1, rejects - 3)] * 2
        status, body = stack.api("POST", base, disposition("D-2", DispositionSplit(rework=rework - 1,
                                                                                 accepted=accepted)), role="qa")
        assert (status, body["pending"]) == (201, 0), body

        # ------------------------------------------------ the final confirmation against the oracle
        final = wait_final_confirmation(stack, WO)
        wait_until(lambda: receiver.requests, 20, "the final at the MES receiver")
        assert json.loads(receiver.requests[-1].body) == final
        produced = final["produced"][0]
        assert (final["work_order_id"], final["batch_id"], final["final"]) == (WO, WO, True)
        assert (produced["good"], produced["scrap"], produced["rework"], produced["accepted"],
                produced["pending_disposition"], produced["uom"]) == (good, scrap, rework, accepted, 0, "EA")
        assert produced["converted"] == {
            "uom": "kg", "via": ["EA", "kg"], "factors": [KG_PER_EA], "good": round(good * KG_PER_EA, 9),
            "scrap": round(scrap * KG_PER_EA, 9), "rework": round(rework * KG_PER_EA, 9),
            "accepted": round(accepted * KG_PER_EA, 9), "pending_disposition": 0}
        batch_ms = batch_end - batch_start
        machine_ms = batch_ms - sum(lost for _, lost in expected)
        labour_ms = batch_ms + (bob_out - bob_in)  # ann the whole batch (stops included), bob 3 s
        assert final["data"] == [{"name": "machine_time", "value": machine_ms / 1000, "uom": "s"},
                                 {"name": "labour_time", "value": labour_ms / 1000, "uom": "s"}]
        assert final["consumed"] == [
            {"material_id": "PK-CAP", "lot_id": "CAP-LOT-3", "uom": "EA", "quantity": 2000},
            {"material_id": "RM-PET-500", "lot_id": "PET-LOT-77", "uom": "kg", "quantity": 12.5}]

        # ------------------------------------------------ OEE and its loss buckets against the oracle
        status, oee = stack.api("GET", f"/api/oee?line={line}&batch={WO}", role="viewer")
        assert status == 200, oee
        buckets = {b: {"lost_s": 0.0, "stops": 0} for b in BUCKETS}
        for (_, lost), is_micro, bucket in zip(expected, micro, (
                "unexplained", "breakdowns", "setup_adjustments", "unexplained"), strict=True):
            into = buckets["small_stops" if is_micro else bucket]
            into["lost_s"] = (round(into["lost_s"] * 1000) + lost) / 1000
            into["stops"] += 1
        assert oee["losses"] == buckets
        unplanned_ms = sum(lost for (_, lost), m in zip(expected, micro, strict=True) if not m)
        micro_ms = sum(lost for (_, lost), m in zip(expected, micro, strict=True) if m)
        assert (oee["planned_downtime_s"], oee["pbt_s"], round(oee["unplanned_stop_s"] * 1000),
                round(oee["micro_stop_s"] * 1000)) == (0, batch_ms / 1000, unplanned_ms, micro_ms)
        apt_ms = batch_ms - unplanned_ms
        availability, quality = apt_ms / batch_ms, good / (good + rejects)
        performance = IDEAL_CYCLE_S * (good + rejects) * 1000 / apt_ms
        assert (oee["good"], oee["scrap"], oee["warnings"]) == (good, rejects, [])
        assert (oee["availability"], oee["performance"], oee["quality"], oee["oee"]) == pytest.approx(
            (availability, performance, quality, availability * performance * quality), rel=1e-12)
        # the batch list: QA's split beside the counted rejects (not every reject called scrap)
        _, batches = stack.api("GET", f"/api/batches?line={line}", role="viewer")
        assert [(b["batch_id"], b["good"], b["rejects"], b["scrap"], b["rework"], b["accepted"],
                 b["pending_disposition"]) for b in batches] == [(WO, good, rejects, scrap, rework, accepted, 0)]

        # ------------------------------------------------ trace queries
        _, back = stack.api("GET", "/api/genealogy/trace?lot_id=FIN-A1&direction=backward", role="viewer")
        assert (back["batches"], back["lots"], back["end_lots"]) == (
            [{"line": line, "batch_id": WO}], ["CAP-LOT-3", "FIN-A", "PET-LOT-77"], ["CAP-LOT-3", "PET-LOT-77"])
        _, fwd = stack.api("GET", "/api/genealogy/trace?lot_id=CAP-LOT-3&direction=forward", role="viewer")
        assert (fwd["batches"], fwd["lots"], fwd["end_lots"]) == (
            [{"line": line, "batch_id": WO}], ["FIN-A", "FIN-A1", "FIN-A2"], ["FIN-A1", "FIN-A2"])

        # ------------------------------------------------ the audit chain: every decision, with who made it
        with AuditReader(audit_path) as reader:
            chain = [r.fields() for r in reader.events()]
        decisions = [(r["event"], r["actor_user_id"], r["auth_method"]) for r in chain
                     if r["event"] != "config_loaded"]
        assert decisions == [
            ("order_received", "demo-operator", "api-token"),
            # the signed StartBatch command (command records name their signatures, not an auth method)
            ("requested", "demo-operator", None),
            ("signed", "demo-operator", "ed25519-signature"),
            ("dispatched", "demo-operator", "ed25519-signature"),
            ("readback_ok", "demo-operator", None),                       # the edge read the parameters back
            ("batch_started", "service:orders", "service"),               # only then the batch counts as started
            ("crew_asserted", "demo-operator", "api-token"),              # ann
            ("crew_asserted", "mqtt:mes", "broker-acl"),                   # bob in
            ("crew_asserted", "mqtt:mes", "broker-acl"),                   # bob out
            ("lot_consumed", "demo-operator", "api-token"),
            ("lot_consumed", "mqtt:mes", "broker-acl"),
            ("lot_produced", "demo-operator", "api-token"),
            ("lot_linked", "demo-operator", "api-token"),
            ("batch_ended", "demo-operator", "api-token"),
            ("reason_code_set", "demo-operator", "api-token"),
            ("disposition_recorded", "demo-qa", "ed25519-signature"),
            ("disposition_recorded", "demo-qa", "ed25519-signature"),
        ], decisions
        assert {r["command_id"] for r in chain if r["event"] in ("requested", "signed", "dispatched",
                                                                  "readback_ok")} == {command_id}
        # the configuration versions the batch was decided by, first in the chain
        assert [(r["details"]["role"], r["details"]["sha256"]) for r in chain if r["event"] == "config_loaded"] == [
            (role, hashlib.sha256((stack.folder / name).read_bytes()).hexdigest())
            for role, name in (("adapter_config", "adapter.yaml"), ("allowlist", "allowlist.yaml"),
                               ("signers", "signers.yaml"))]
        recorded = [r for r in chain if r["event"] == "disposition_recorded"]
        assert [r["requested_value"] for r in recorded] == [
            {"scrap": scrap, "rework": 1.0, "accepted": 0.0},
            {"scrap": 0.0, "rework": float(rework - 1), "accepted": float(accepted)}]
        crew = [r for r in chain if r["event"] == "crew_asserted"]
        assert [(r["requested_value"]["person_id"], r["requested_value"]["end_ms"], r["details"]["closed"],
                 r["details"]["claimed_asserted_by"]) for r in crew] == [
            ("ann", None, False, None), ("bob", None, False, "badge-7"), ("bob", bob_out, True, "badge-7")]

        # ------------------------------------------------ `uns audit verify` passes on both chains (the services
        # stopped: each sealed its tail with a checkpoint, written to its witness); a tampered copy of the
        # adapter's (the second disposition's split edited) is named broken at that record
        stop_service(stack, "edge")
        stop_service(stack, "adapter")
        edge_audit = data / "edge" / "audit" / "commands.db"   # the edge's chain: the write and its read-back
        ok = _verify(audit_path)
        assert ok.returncode == 0 and ok.stdout.startswith(f"OK: {len(chain)} records"), ok.stdout + ok.stderr
        assert verify(edge_audit).ok  # the same walk `uns audit verify` runs, without another process
        with AuditReader(edge_audit) as reader:
            at_edge = [r.fields()["event"] for r in reader.events() if r.fields()["command_id"] == command_id]
        assert {"written", "readback_ok"} <= set(at_edge), at_edge
        copy = tmp_path / "tampered.sqlite"
        with sqlite3.connect(audit_path) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        seq = recorded[-1]["seq"]
        with sqlite3.connect(copy, isolation_level=None) as db:  # as someone with the disk: triggers dropped
            for op in ("update", "delete"):
                db.execute(f"DROP TRIGGER IF EXISTS audit_record_no_{op}")
            (body,) = db.execute("SELECT body FROM audit_record WHERE seq=?", (seq,)).fetchone()
            edited = body.replace('"accepted":1,"rework"', '"accepted":0,"rework"')  # QA accepted none
            assert edited != body
            db.execute("UPDATE audit_record SET body=? WHERE seq=?", (edited, seq))
        broken = _verify(copy)
        assert broken.returncode == 1 and broken.stdout.startswith(f"BROKEN at record seq {seq}: edited"), \
            broken.stdout + broken.stderr
