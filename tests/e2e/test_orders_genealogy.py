"""Issue 19 items 1 and 4 end to end: simulator → edge → broker → adapter → MES webhook.

An order is posted over REST, started through the signed StartBatch command, and the batch counts
as started only after the edge confirmed the write: the simulator's own batch tags then hold the
order's parameters. Lots are asserted over REST and on the UNS; the final confirmation the MES
receiver gets carries the order, the product and exactly the consumed lots; trace queries return
exactly the expected lots. Bad input (unknown product, recipe version not released, second start,
a lot asserted twice with other content) is refused with its reason and loses nothing. The final
confirmation carries the good and scrap counts and the same in kg (a conversion for the product).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from aiomqtt import Client as Mqtt
from asyncua import Client, ua

from simulator.client import call_method
from simulator.config import NAMESPACE_URI
from tests.e2e.stack import Stack, fast_confirmations, running_stack, wait_until
from tests.mes.receiver import Receiver
from uns.commands.model import CommandRequest, SignatureMeaning
from uns.commands.signing import load_private_key, sign_command
from uns.mqtt_url import parse_broker_url
from uns.sparkplug.model import now_ms

ORDER = {"order_id": "WO-4711", "product_id": "SKU-12", "quantity": 100000, "uom": "EA",
         "recipe_version": "R-12.3", "due_time": "2026-12-31T18:00:00Z"}


async def _read_tags(endpoint: str, *paths: str) -> list[Any]:
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        return [await client.get_node(ua.NodeId(p, ns)).read_value() for p in paths]


def _sign(stack: Stack, command: dict) -> dict:
    """The operator's own signature of the start command, with the demo key `uns init` wrote."""
    summary = yaml.safe_load((stack.folder / "stack.yaml").read_text())
    key = load_private_key(Path(summary["signing_keys"]["demo-operator"]))
    request = CommandRequest.model_validate(command["request"])
    return sign_command(request, key, user_id="demo-operator", full_name="Demo operator",
                        meaning=SignatureMeaning.AUTHORED, now_ms=now_ms()).model_dump(mode="json")


async def _publish_material(stack: Stack, payload: dict) -> None:
    """A weigh station asserting a lot on the UNS (as the `mes` broker user of the generated config)."""
    adapter = yaml.safe_load((stack.folder / "adapter.yaml").read_text())
    url = parse_broker_url(adapter["host"]["broker_url"])
    async with Mqtt(**url.aiomqtt_kwargs(identifier="weigh-station-2")) as mqtt:
        await mqtt.publish(f"{stack.line}/_context/material", json.dumps(payload).encode(), qos=1, retain=True)


def _metrics(stack: Stack) -> str:
    with urllib.request.urlopen(f"{stack.http}/metrics", timeout=10) as response:  # noqa: S310 - loopback
        return response.read().decode()


def test_order_to_plc_to_confirmation_with_lots_and_traces(tmp_path: Path) -> None:
    with Receiver() as receiver:
        def configure(adapter: dict) -> None:
            fast_confirmations(adapter)
            adapter["mes"]["webhook"] = {"url": receiver.url}
            # a bottle of SKU-12 weighs 12.5 g: the confirmation carries kg beside the count
            adapter["mes"]["lines"][0]["conversions"] = {
                "SKU-12": {"counted_in": "EA", "steps": [{"to": "kg", "factor": 0.0125}]}}

        with running_stack(tmp_path, adapter_overrides=configure) as stack:
            line = stack.line
            # -- bad orders are refused with their reason, and nothing is stored
            status, body = stack.api("POST", "/api/orders", {**ORDER, "line": line, "product_id": "SKU-404"})
            assert (status, body["reason"]) == (422, "unknown_product"), body
            assert body["detail"] == "product 'SKU-404' is not configured (known: SKU-12)"
            status, body = stack.api("POST", "/api/orders", {**ORDER, "line": line, "recipe_version": "R-12.2"})
            assert (status, body["reason"]) == (422, "recipe_version_not_valid"), body
            assert body["detail"] == ("recipe/BOM version 'R-12.2' of 'SKU-12' is not released for production "
                                      "(valid: R-12.3)")
            assert stack.api("GET", f"/api/orders?line={line}", role="viewer") == (200, [])

            # -- the order is received, then started through the signed command path
            status, order = stack.api("POST", "/api/orders", {**ORDER, "line": line})
            assert status == 201, order
            assert (order["status"], order["line"], order["received_by"]) == ("received", line, "demo-operator")
            status, body = stack.api("POST", "/api/orders", {**ORDER, "line": line})
            assert (status, body["reason"]) == (409, "order_id_used"), body
            status, started = stack.api("POST", "/api/orders/WO-4711/start")
            assert status == 202, started
            command = started["command"]
            assert (started["order"]["status"], command["status"]) == ("starting", "awaiting_signature")
            assert command["request"]["value"] == {"Order": "WO-4711", "Product": "SKU-12", "Quantity": 100000}
            # not started before the PLC has the parameters: no batch context yet
            assert stack.api("GET", f"/api/batches?line={line}", role="viewer") == (200, [])
            status, signed = stack.api("POST", f"/api/commands/{command['request']['command_id']}/sign",
                                       _sign(stack, command))
            assert status == 200 and signed["status"] in ("dispatched", "confirmed"), signed

            def running() -> dict | None:
                _, found = stack.api("GET", "/api/orders/WO-4711", role="viewer")
                return found if found["status"] != "starting" else None

            order = wait_until(running, 30, "order start confirmed by the edge")
            assert (order["status"], order["batch_id"], order["command_id"]) == (
                "running", "WO-4711", command["request"]["command_id"]), order
            _, cmd = stack.api("GET", f"/api/commands/{order['command_id']}", role="viewer")
            assert cmd["status"] == "confirmed"
            # the parameters, read back on the simulator itself
            assert asyncio.run(_read_tags(stack.opcua, "Line1/CurrentBatch", "Line1/CurrentProduct",
                                          "Line1/BatchQuantity")) == ["WO-4711", "SKU-12", 100000]
            _, listed = stack.api("GET", f"/api/orders?line={line}&status=running", role="viewer")
            assert [o["order_id"] for o in listed] == ["WO-4711"]
            status, again = stack.api("POST", "/api/orders/WO-4711/start")
            assert (status, again["reason"]) == (409, "order_already_started"), again

            # -- lots: one over REST, one on the UNS, the produced lot over REST
            pet = {"line": line, "batch_id": "WO-4711", "lot_id": "PET-LOT-77", "material_id": "RM-PET-500",
                   "quantity": 12.5, "uom": "kg"}
            assert stack.api("POST", "/api/genealogy/consumed", pet) == (201, {"outcome": "accepted"})
            assert stack.api("POST", "/api/genealogy/consumed", pet) == (200, {"outcome": "duplicate"})
            status, body = stack.api("POST", "/api/genealogy/consumed", {**pet, "quantity": 13})
            assert (status, body["reason"]) == (409, "lot_already_asserted"), body
            asyncio.run(_publish_material(stack, {"kind": "consumed", "batch_id": "WO-4711", "lot_id": "CAP-LOT-3",
                                                  "material_id": "PK-CAP", "quantity": 2000, "uom": "EA",
                                                  "asserted_by": "weigh-station-2"}))
            wait_until(lambda: len(stack.api("GET", f"/api/genealogy/batches/{line}/WO-4711",
                                             role="viewer")[1]["consumed"]) == 2, 20, "UNS lot assertion")
            # the same lot with another quantity on the UNS: refused, counted, nothing recorded changes
            asyncio.run(_publish_material(stack, {"kind": "consumed", "batch_id": "WO-4711", "lot_id": "CAP-LOT-3",
                                                  "material_id": "PK-CAP", "quantity": 1, "uom": "EA"}))
            refused = 'uns_adapter_material_assertions_total{outcome="refused",source="uns"} 1.0'
            wait_until(lambda: refused in _metrics(stack), 20, "refused UNS lot assertion counted")
            assert 'uns_adapter_material_assertions_total{outcome="accepted",source="uns"} 1.0' in _metrics(stack)
            _, lots = stack.api("GET", f"/api/genealogy/batches/{line}/WO-4711", role="viewer")
            assert [(c["lot_id"], c["quantity"]) for c in lots["consumed"]] == [("CAP-LOT-3", 2000),
                                                                                 ("PET-LOT-77", 12.5)]
            assert stack.api("POST", "/api/genealogy/produced", {
                "line": line, "batch_id": "WO-4711", "lot_id": "FIN-4711-A", "material_id": "SKU-12",
                "quantity": 500, "uom": "EA"}) == (201, {"outcome": "accepted"})

            # -- production, then the batch ends
            time.sleep(2.0)
            asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
            good, = asyncio.run(_read_tags(stack.opcua, "Line1/GoodCount"))

            def counted() -> bool:
                _, tags = stack.api("GET", f"/api/tags?line={line}", role="viewer")
                return any(t["name"] == "GoodCount" and t.get("device_id") is None and t["value"] == good
                           for t in tags)

            wait_until(counted, 20, "final counter value in the adapter")
            status, ended = stack.api("POST", f"/api/lines/{line}/batch/end", {"batch_id": "WO-4711"})
            assert status == 200, ended
            wait_until(lambda: any(json.loads(r.body)["final"] for r in receiver.requests), 30,
                       "final confirmation at the MES receiver")
            final = next(json.loads(r.body) for r in receiver.requests if json.loads(r.body)["final"])
            assert (final["work_order_id"], final["batch_id"]) == ("WO-4711", "WO-4711")
            assert [(p["material_id"], p["lot_id"]) for p in final["produced"]] == [("SKU-12", "WO-4711")]
            made = final["produced"][0]
            assert made["good"] > 0 and made["uom"] == "EA"
            assert made["converted"] == {"uom": "kg", "via": ["EA", "kg"], "factors": [0.0125],
                                         "good": round(made["good"] * 0.0125, 9),
                                         "scrap": round(made["scrap"] * 0.0125, 9), "rework": 0}
            assert final["consumed"] == [
                {"material_id": "PK-CAP", "lot_id": "CAP-LOT-3", "uom": "EA", "quantity": 2000},
                {"material_id": "RM-PET-500", "lot_id": "PET-LOT-77", "uom": "kg", "quantity": 12.5},
            ]
            assert stack.api("GET", "/api/orders/WO-4711", role="viewer")[1]["status"] == "completed"

            # -- trace queries
            _, back = stack.api("GET", "/api/genealogy/trace?lot_id=FIN-4711-A&direction=backward", role="viewer")
            batch = [{"line": line, "batch_id": "WO-4711"}]
            assert (back["batches"], back["lots"], back["end_lots"]) == (
                batch, ["CAP-LOT-3", "PET-LOT-77"], ["CAP-LOT-3", "PET-LOT-77"])
            _, fwd = stack.api("GET", "/api/genealogy/trace?lot_id=PET-LOT-77&direction=forward", role="viewer")
            assert (fwd["batches"], fwd["lots"], fwd["end_lots"]) == (batch, ["FIN-4711-A"], ["FIN-4711-A"])
