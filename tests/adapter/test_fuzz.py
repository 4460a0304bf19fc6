"""Schemathesis against the running adapter's OpenAPI: whatever it generates, no 5xx, no hang, and
every response as documented (status code, content type and body schema: issue 13, item 7).

The adapter runs as ``uns adapter run`` (a subprocess, so the fuzzer's blocking HTTP calls never stall
its event loop). Every operation, the batch endpoints included, gets a bounded number of positive
and negative examples (10 of each: the cases are derandomized, so each run sends the same ones); a
longer run is ``UNS_SCHEMATHESIS_EXAMPLES=500 pytest tests/adapter/test_fuzz.py``. The operations
are dealt into :data:`SHARDS` tests, each with its own adapter, so the suite's workers share the
work instead of one of them walking all 60+ operations alone. ``/api/events`` is left out
of the generated cases (an endless stream by design). Requests carry the engineer token so every
route runs past authentication.

Schemathesis' own pytest integration (``from_fixture``/``parametrize``) reads ``request.node._nodeid``,
which pytest 9 no longer has; the operations are driven with Hypothesis directly instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.mosquitto import mosquitto_binary, mosquitto_broker

from .running import adapter_process
from .setup import auth

EXAMPLES_PER_MODE = int(os.environ.get("UNS_SCHEMATHESIS_EXAMPLES", "10"))
#: operation k goes to shard k % SHARDS (in the order of the OpenAPI document)
SHARDS = 3
SKIP = {"/api/events"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# a hang guard, not a speed claim: with 2 × 30 examples the whole walk took up to 230 s on a loaded
# 2-core machine, past the suite's default 120 s; a shard at 2 × 10 is about a ninth of that
@pytest.mark.timeout(400)
@pytest.mark.parametrize("shard", range(SHARDS))
def test_no_server_errors(tmp_path: Path, shard: int) -> None:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is missing: scripts/test installs it")
    failures: list[str] = []
    calls = 0
    operations: set[str] = set()
    everything: set[str] = set()
    with mosquitto_broker(tmp_path) as broker, adapter_process(tmp_path, broker.url) as (base, _files, proc):
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        for index, result in enumerate(schema.get_all_operations()):
            operation = result.ok()
            everything.add(f"{operation.method.upper()} {operation.path}")
            if operation.path in SKIP or index % SHARDS != shard:
                continue
            operations.add(f"{operation.method.upper()} {operation.path}")
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case: schemathesis.Case) -> None:
                    nonlocal calls
                    calls += 1
                    try:
                        response = case.call(base_url=base, headers=auth("engineer"), timeout=10)
                    except Exception as exc:  # noqa: BLE001 - a hang (timeout) or a dropped connection
                        failures.append(f"{case.method} {case.formatted_path}: {exc!r}\n  {case.as_curl_command()}")
                        return
                    try:
                        case.validate_response(response, checks=CHECKS)
                    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - FailureGroup: every failed check
                        failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                        f"{str(exc)[:600]}\n  body: {response.text[:300]}\n  {case.as_curl_command()}")

                try:
                    run()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE, operation.path  # nothing to break in a bare GET
        assert proc.poll() is None, "the adapter died during the fuzz run"
    print(f"schemathesis shard {shard}: {calls} calls over {len(operations)} operations")
    assert len(operations) >= 15 and calls > 10 * len(operations)
    # the flows the MES depends on are in the document and not skipped (each lands in one shard)
    assert {"POST /api/lines/{line}/batch/start", "POST /api/lines/{line}/batch/phase",
            "POST /api/lines/{line}/batch/end", "GET /api/batches", "GET /api/batches/{batch_id}/records",
            "POST /api/commands"} <= everything
    assert not failures, "\n".join(failures[:20])
