"""Schemathesis against the running adapter's OpenAPI: whatever it generates, no 5xx.

The adapter runs as ``uns adapter run`` (a subprocess, so the fuzzer's blocking HTTP calls never stall
its event loop). Every operation gets a bounded number of positive and negative examples, so the run
stays well under a minute. ``/api/events`` is left out: an endless stream by design. Requests carry
the engineer token so every route runs past authentication.

Schemathesis' own pytest integration (``from_fixture``/``parametrize``) reads ``request.node._nodeid``,
which pytest 9 no longer has; the operations are driven with Hypothesis directly instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.support.mosquitto import mosquitto_binary, mosquitto_broker

from .running import adapter_process
from .setup import auth

EXAMPLES_PER_MODE = 30
SKIP = {"/api/events"}


def test_no_server_errors(tmp_path: Path) -> None:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is missing: scripts/test installs it")
    failures: list[str] = []
    calls = 0
    with mosquitto_broker(tmp_path) as broker, adapter_process(tmp_path, broker.url) as (base, _files, proc):
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path in SKIP:
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case: schemathesis.Case) -> None:
                    nonlocal calls
                    calls += 1
                    response = case.call(base_url=base, headers=auth("engineer"), timeout=10)
                    if response.status_code >= 500:
                        failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                        f"{response.text[:300]}\n  {case.as_curl_command()}")

                try:
                    run()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE, operation.path  # nothing to break in a bare GET
        assert proc.poll() is None, "the adapter died during the fuzz run"
    print(f"schemathesis: {calls} calls")
    assert calls > 100
    assert not failures, "\n".join(failures[:20])
