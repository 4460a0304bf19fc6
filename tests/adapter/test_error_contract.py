"""Issue 13, item 7: one documented error model, invalid and deeply nested input refused early.

Real HTTP and a real Mosquitto: every refusal has the ``ErrorBody`` shape the OpenAPI documents for
that operation and status; a body that is not JSON is a 400 ``invalid_json`` (not FastAPI's
undocumented 400); a 5,000-deep JSON document (HTTP body, STATE, ``_context``, ``_cmd`` result) is
refused with a specific error and no RecursionError anywhere.
"""

from __future__ import annotations

import asyncio
import logging

import paho.mqtt.client as mqtt
import pytest

from tests.adapter.conftest import RunningAdapter, eventually
from tests.adapter.edge import LINE
from tests.adapter.setup import auth

DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000


def _error_ref(operation: dict, status: str) -> str | None:
    response = operation["responses"].get(status)
    if response is None:
        return None
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


async def test_every_refusal_of_every_operation_is_documented_as_error_body(adapter: RunningAdapter) -> None:
    spec = (await adapter.client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    body = spec["components"]["schemas"]["ErrorBody"]
    assert body["properties"]["detail"]["type"] == "string" and body["properties"]["reason"]["type"] == "string"
    assert set(body["required"]) == {"detail", "reason"}
    checked = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            statuses = [s for s in operation["responses"] if s.isdigit() and int(s) >= 400]
            for status in statuses:
                if (path, status) == ("/readyz", "503"):
                    continue  # readiness says why in its own Health body
                assert _error_ref(operation, status) == "#/components/schemas/ErrorBody", (method, path, status)
                checked += 1
            if "requestBody" in operation:
                assert {"400", "422"} <= set(statuses), (method, path)
            if operation.get("security") or path.startswith("/api/"):
                assert {"401", "403"} <= set(statuses), (method, path)
    assert checked > 60


async def test_invalid_json_deep_json_and_validation_errors_have_the_error_body(adapter: RunningAdapter) -> None:
    client = adapter.client
    url = f"/api/lines/{LINE}/batch/start"
    headers = {**auth("operator"), "Content-Type": "application/json"}
    response = await client.post(url, content=b'{"batch_id": "B-1",', headers=headers)
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_json" and response.json()["detail"].startswith("the body is not JSON")
    for deep in (DEEP, DEEP_OBJECT):
        response = await client.post(url, content=deep, headers=headers)
        assert response.status_code == 400
        assert response.json() == {"detail": "the body is JSON nested deeper than 32 levels (at least 33); refused",
                                   "reason": "json_too_deep"}
    response = await client.post(url, json={"batch_id": 5}, headers=headers)
    assert response.status_code == 422
    problem = response.json()
    assert problem["reason"] == "invalid_request" and isinstance(problem["detail"], str)
    assert {"loc": ["body", "batch_id"], "msg": "Input should be a valid string", "type": "string_type"} \
        in problem["errors"]
    # nothing was accepted: the line has no batch
    state = (await client.get(f"/api/lines/{LINE}/state", headers=auth("viewer"))).json()
    assert state.get("context") in (None, {}) or state["context"].get("batch_id") is None


async def test_deep_json_on_mqtt_is_refused_without_recursion(adapter: RunningAdapter,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    host = adapter.service.host
    commands = adapter.service.commands
    invalid_results_before = commands.results_invalid
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="deep-json")
    client.connect(adapter.broker.host, adapter.broker.port)
    client.loop_start()
    try:
        for topic in ("spBv1.0/STATE/mes", "spBv1.0/STATE/other", f"{LINE}/_context/batch",
                      f"{LINE}/_cmd/result/0b7c4f8e-6f4a-4d3e-9a53-2f1ad0c7e001"):
            client.publish(topic, DEEP_OBJECT if "_context" in topic else DEEP, qos=1).wait_for_publish(5)
        client.publish(f"{LINE}/_context/batch", b"", qos=1, retain=True).wait_for_publish(5)

        def refused(start: str) -> bool:
            return any(r.getMessage().startswith(start) and r.getMessage().endswith(
                "JSON nested deeper than 32 levels (at least 33); refused") for r in caplog.records)

        async def all_refused() -> bool:
            return (refused("sparkplug bad_state on spBv1.0/STATE/mes: STATE payload: ")
                    and refused("sparkplug bad_state on spBv1.0/STATE/other: STATE payload: ")
                    and refused(f"context on {LINE}/_context/batch refused: ")
                    and refused(f"command result on {LINE}/_cmd/result/")
                    and commands.results_invalid - invalid_results_before == 1)

        await eventually(all_refused)
    finally:
        client.disconnect()
        client.loop_stop()
    await asyncio.sleep(0)
    messages = [r.getMessage() for r in caplog.records] + [str(r.exc_info) for r in caplog.records if r.exc_info]
    assert not any("RecursionError" in m or "maximum recursion" in m for m in messages)
    assert host.stats.handler_errors == 0
    assert sum("nested deeper than 32 levels" in m for m in messages) == 4
    assert host.online
