"""Order receipt and lot assertions in the audit chain (issue 19 leftovers, item 2), over real HTTP and
MQTT: an order accepted and one refused at intake, lots consumed over REST and on the UNS (the broker
user bound to the line's ``_context`` is the actor, the payload's ``asserted_by`` only a claim), a
produced lot, a split and a merge; repeats record nothing. Then `uns audit verify` passes on the
chain and names the record an attacker edited."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiomqtt
import yaml

from tests.audit.conftest import attacker
from tests.support.mosquitto import BrokerEndpoint
from tests.support.net import free_port
from uns.audit.query import AuditReader

from .conftest import eventually, serve
from .edge import EDGE, GROUP, LINE
from .setup import auth, write_files

UNS = str(Path(sys.executable).with_name("uns"))
ORDER = {"order_id": "WO-7", "product_id": "SKU-12", "quantity": 500, "uom": "EA", "recipe_version": "R-12.3",
         "due_time": "2026-12-31T18:00:00Z", "line": LINE}


def _lot(lot: str, quantity: float) -> dict:
    return {"lot_id": lot, "quantity": quantity, "uom": "kg"}


async def test_order_receipts_and_lot_assertions_are_chained_and_tampering_is_named(
        tmp_path: Path, mosquitto: BrokerEndpoint) -> None:
    files = write_files(tmp_path, mosquitto.url, free_port())
    files.config["mes"]["lines"][0]["context_publisher"] = "weigh-app"
    files.config["mes"]["orders"] = {"products": {"SKU-12": {"recipe_versions": ["R-12.3"]}},
                                     "lines": [{"line": LINE, "group_id": GROUP, "edge_node_id": EDGE}]}
    (files.directory / "adapter.yaml").write_text(yaml.safe_dump(files.config, sort_keys=False))
    audit_path = files.directory / "data" / "audit" / "audit.sqlite"
    consumed = {"line": LINE, "batch_id": "WO-7", "lot_id": "FLOUR-1", "material_id": "RM-FLOUR",
                "quantity": 12.5, "uom": "kg"}
    produced = {"line": LINE, "batch_id": "WO-7", "lot_id": "DOUGH-1", "material_id": "SF-DOUGH",
                "quantity": 100, "uom": "kg"}
    split = {"kind": "split", "sources": [_lot("DOUGH-1", 100)],
             "targets": [_lot("DOUGH-1a", 60), _lot("DOUGH-1b", 40)]}
    merge = {"kind": "merge", "sources": [_lot("DOUGH-1a", 60), _lot("DOUGH-1b", 40)],
             "targets": [_lot("PAL-1", 100)]}
    async with serve(files, mosquitto) as running:
        client = running.client
        refused = await client.post("/api/orders", json={**ORDER, "product_id": "SKU-404"}, headers=auth("operator"))
        assert (refused.status_code, refused.json()["reason"]) == (422, "unknown_product"), refused.text
        accepted = await client.post("/api/orders", json=ORDER, headers=auth("operator"))
        assert accepted.status_code == 201, accepted.text
        again = await client.post("/api/orders", json=ORDER, headers=auth("supervisor"))
        assert (again.status_code, again.json()["reason"]) == (409, "order_id_used"), again.text
        for path, body, status in (("consumed", consumed, 201), ("consumed", consumed, 200),
                                   ("produced", produced, 201), ("links", split, 201), ("links", merge, 201),
                                   ("links", merge, 200)):
            answer = await client.post(f"/api/genealogy/{path}", json=body, headers=auth("operator"))
            assert answer.status_code == status, (path, answer.text)
        # a weigh station on the UNS; its payload names someone else
        sugar = {"kind": "consumed", "batch_id": "WO-7", "lot_id": "SUGAR-7", "material_id": "RM-SUGAR",
                 "quantity": 2, "uom": "kg", "asserted_by": "mallory-says-she-is-qa"}
        async with aiomqtt.Client(hostname="127.0.0.1", port=mosquitto.port, identifier="weigh-app-test") as mqtt:
            await mqtt.publish(f"{LINE}/_context/material", json.dumps(sugar).encode(), qos=1)

        async def sugar_recorded() -> bool:
            lots = (await client.get(f"/api/genealogy/batches/{LINE}/WO-7", headers=auth("viewer"))).json()
            return len(lots["consumed"]) == 2

        await eventually(sugar_recorded)
    with AuditReader(audit_path) as reader:
        records = [r.fields() for r in reader.events()]
    decisions = [r for r in records if r["event"] != "config_loaded"]
    assert [(r["event"], r["actor_user_id"], r["auth_method"], r["outcome"], r["reason_code"]) for r in decisions] == [
        ("order_refused", "alice", "api-token", "refused", "unknown_product"),
        ("order_received", "alice", "api-token", "accepted", None),
        ("order_refused", "bob", "api-token", "refused", "order_id_used"),
        ("lot_consumed", "alice", "api-token", "accepted", None),
        ("lot_produced", "alice", "api-token", "accepted", None),
        ("lot_linked", "alice", "api-token", "accepted", None),
        ("lot_linked", "alice", "api-token", "accepted", None),
        ("lot_consumed", "mqtt:weigh-app", "broker-acl", "accepted", None),
    ]
    assert [(r["requested_value"], r["work_order_id"], r["target"]["isa95_path"]) for r in decisions[:3]] == [
        ({**ORDER, "product_id": "SKU-404"}, "WO-7", LINE), (ORDER, "WO-7", LINE), (ORDER, "WO-7", LINE)]
    assert decisions[0]["message"] == "product 'SKU-404' is not configured (known: SKU-12)"
    assert decisions[1]["actor_printed_name"] == "Alice Operator"
    assert [(r["batch_id"], r["details"]) for r in decisions[3:]] == [
        ("WO-7", {"via": "api", "assertion": consumed, "claimed_asserted_by": None}),
        ("WO-7", {"via": "api", "assertion": produced, "claimed_asserted_by": None}),
        (None, {"via": "api", "assertion": split, "claimed_asserted_by": None}),
        (None, {"via": "api", "assertion": merge, "claimed_asserted_by": None}),
        ("WO-7", {"via": "uns", "assertion": {"line": LINE, "batch_id": "WO-7", "lot_id": "SUGAR-7",
                                              "material_id": "RM-SUGAR", "quantity": 2, "uom": "kg"},
                  "claimed_asserted_by": "mallory-says-she-is-qa"}),
    ]

    ok = await asyncio.to_thread(subprocess.run, [UNS, "audit", "verify", str(audit_path)],
                                 capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"OK: {len(records)} records")
    consumed_seq = records.index(decisions[3]) + 1
    with attacker(audit_path) as db:  # someone shrinks the flour quantity a recall would be scoped by
        db.execute("UPDATE audit_record SET body=replace(body, '12.5', '2.5') WHERE seq=?", (consumed_seq,))
    broken = await asyncio.to_thread(subprocess.run, [UNS, "audit", "verify", str(audit_path)],
                                     capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert broken.stdout.startswith(f"BROKEN at record seq {consumed_seq}: edited"), broken.stdout
