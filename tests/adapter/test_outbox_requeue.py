"""A dead-lettered confirmation, requeued over the REST API, reaches the MES with the same bytes.

Real adapter (uvicorn), real Mosquitto, a real HTTP receiver: the MES refuses the first POST with
a 400 (its content refused: dead-lettered at once, no retry), a supervisor requeues it, and the
webhook sender is woken to deliver it again under the same ``Idempotency-Key`` and body.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from tests.adapter.conftest import eventually, serve
from tests.adapter.edge import LINE, Edge
from tests.adapter.setup import auth, write_files
from tests.mes.receiver import Receiver
from tests.support.mosquitto import BrokerEndpoint
from tests.support.net import free_port
from uns.audit.query import AuditReader


async def test_dead_letter_requeued_by_a_supervisor_is_delivered_once_more(
        tmp_path: Path, mosquitto: BrokerEndpoint) -> None:
    with Receiver() as receiver:
        receiver.script.append(400)  # then the default: 200
        files = write_files(tmp_path, mosquitto.url, free_port())
        files.config["mes"]["webhook"] = {"url": receiver.url}
        (files.directory / "adapter.yaml").write_text(yaml.safe_dump(files.config, sort_keys=False))
        async with serve(files, mosquitto) as adapter:
            client = adapter.client
            edge = Edge(mosquitto.host, mosquitto.port).__enter__()
            try:
                await asyncio.to_thread(edge.birth)
                start = await client.post(f"/api/lines/{LINE}/batch/start", json={"batch_id": "B-7"},
                                          headers=auth("operator"))
                assert start.status_code == 201, start.text
                await asyncio.to_thread(edge.ndata, {"GoodCount": 104, "RejectCount": 5})

                async def counted() -> bool:
                    state = (await client.get(f"/api/lines/{LINE}/state", headers=auth("viewer"))).json()
                    return bool(state["current_batch"] and state["current_batch"]["good"] == 4)

                await eventually(counted)
                end = await client.post(f"/api/lines/{LINE}/batch/end", json={}, headers=auth("operator"))
                assert end.status_code == 200, end.text

                async def dead() -> list | None:
                    rows = (await client.get("/api/outbox", params={"status": "dead_lettered"},
                                             headers=auth("viewer"))).json()["entries"]
                    return rows or None

                [entry] = await eventually(dead)
                cid = entry["confirmation_id"]
                assert (entry["batch_id"], entry["attempts"], entry["last_http_status"]) == ("B-7", 1, 400)
                assert len(receiver.requests) == 1

                refused = await client.post(f"/api/outbox/{cid}/requeue", headers=auth("operator"))
                assert refused.status_code == 403 and refused.json()["reason"] == "role_required"
                unknown = await client.post("/api/outbox/no-such-id/requeue", headers=auth("supervisor"))
                assert unknown.status_code == 404 and unknown.json()["reason"] == "unknown_confirmation"

                requeued = await client.post(f"/api/outbox/{cid}/requeue", headers=auth("supervisor"))
                assert requeued.status_code == 200, requeued.text
                assert requeued.json()["confirmation_id"] == cid

                async def delivered() -> dict | None:
                    view = (await client.get("/api/outbox", headers=auth("viewer"))).json()
                    mine = [e for e in view["entries"] if e["confirmation_id"] == cid]
                    return view if mine and mine[0]["status"] == "delivered" else None

                view = await eventually(delivered)
                assert view["counts"] == {"pending": 0, "delivered": 1, "dead_lettered": 0}
                assert view["depth"] == 0
                assert len(receiver.requests) == 2
                first, second = receiver.requests
                assert second.body == first.body
                assert second.headers["Idempotency-Key"] == first.headers["Idempotency-Key"] == cid

                again = await client.post(f"/api/outbox/{cid}/requeue", headers=auth("supervisor"))
                assert again.status_code == 409 and again.json()["reason"] == "not_dead_lettered"
                # issue 19 item 6: the requeue is in the audit chain with who did it (the refused ones are not)
                with AuditReader(adapter.service.audit.path) as reader:
                    [record] = [r.fields() for r in reader.events("outbox_requeued")]
                assert (record["actor_user_id"], record["auth_method"]) == ("bob", "api-token")
                assert record["batch_id"] == "B-7"
                assert record["details"] == {"confirmation_id": cid, "attempts_before": 1}
                assert record["target"]["isa95_path"] == LINE
            finally:
                edge.__exit__()
