"""Issue 12 (defects 3, 4, 10, 11), black-box against the whole stack as real processes:
simulator → edge → broker → adapter. Counts are compared with the simulator's own totals
(``Simulation/Truth``), never with "some data arrived".

* a far-future and a far-past SourceTimestamp on GoodCount during a batch: the confirmation
  equals the simulator's totals (the wrong clocks freeze nothing);
* the adapter's data directory on a full tmpfs during a batch: ``/readyz`` not ready naming
  "ingest failing", no crash loop, the failures counted in ``/metrics``, and after space returns
  the confirmation equals the simulator's totals;
* an adapter restart while the MES shows a batch the line does not run: the batch is ended by the
  start-up reconciliation, which says what it did; a batch the line runs is kept;
* ``since_ms`` in seconds or in the future: 422 naming the field and the range; the adapter stays
  healthy; a batch stored with a 1970 start (what the old API accepted) does not hang the next
  start: one catch-up confirmation covers the decades.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from mes_adapter.config.application import AdapterConfig
from mes_adapter.context import ContextAssertion, ContextStore
from simulator.client import call_method, call_simulation, double, string, uint32
from tests.e2e.stack import (
    Stack,
    fast_confirmations,
    running_stack,
    simulator_truth,
    wait_final_confirmation,
    wait_until,
)
from tests.faults.rig import restart, start_service, stop_service
from tests.support.disk import fill, small_tmpfs


def _inject(stack: Stack, kind: str, tag: str, duration_s: float, value: float) -> None:
    asyncio.run(call_simulation(stack.opcua, "InjectFault", string(kind), string(tag), double(duration_s),
                                double(value)))


def _batch_good_and_scrap(stack: Stack, batch_id: str) -> tuple[float, float] | None:
    _, batches = stack.api("GET", f"/api/batches?line={stack.line}", role="viewer")
    for batch in batches or []:
        if batch["batch_id"] == batch_id:
            return batch["good"], batch["scrap"]
    return None


def _confirmed(stack: Stack, batch_id: str) -> tuple[float, float]:
    """Good and scrap over every confirmation of the batch (final plus any late supplement)."""
    _, confirmations = stack.api("GET", "/api/confirmations", role="viewer")
    mine = [c["confirmation"] for c in confirmations or [] if c["batch_id"] == batch_id]
    return (sum(p["good"] for c in mine for p in c["produced"]),
            sum(p["scrap"] for c in mine for p in c["produced"]))


def _run_batch_and_compare(stack: Stack, batch_id: str, during_production,  # type: ignore[no-untyped-def]
                           since_ms: int | None = None) -> None:
    """Start a batch (``since_ms``: backdated, while the line is still stopped), run the line, call
    ``during_production``, stop, end; confirmations = truth."""
    good0, reject0 = asyncio.run(simulator_truth(stack.opcua))
    start = {"batch_id": batch_id, "work_order_id": "WO-1", "product_id": "SKU-12"}
    if since_ms is not None:
        start["since_ms"] = since_ms
    status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/start", start)
    assert status == 201, body
    time.sleep(0.3)
    asyncio.run(call_method(stack.opcua, "Line1", "Start"))
    time.sleep(1.5)
    during_production()
    asyncio.run(call_simulation(stack.opcua, "ForceRejects", uint32(3)))
    time.sleep(1.5)
    asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
    time.sleep(0.5)
    good1, reject1 = asyncio.run(simulator_truth(stack.opcua))
    produced = (good1 - good0, reject1 - reject0)
    assert produced[0] > 20 and produced[1] >= 3
    # the adapter's counts of the running batch reach the simulator's (nothing frozen, nothing lost)
    wait_until(lambda: _batch_good_and_scrap(stack, batch_id) == produced, 30,
               f"batch {batch_id} counts {produced} in the adapter")
    status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/end", {"batch_id": batch_id})
    assert status == 200, body
    wait_final_confirmation(stack, batch_id)
    time.sleep(1.5)  # a late supplement, if any, would be built within a second or two
    assert _confirmed(stack, batch_id) == produced


def test_future_and_past_source_timestamps_on_good_count_lose_no_count(tmp_path: Path) -> None:
    """Wrong source clocks on GoodCount during a batch, on a stack whose batch start first refused
    implausible ``since_ms`` values (seconds for milliseconds, an hour ahead) and stayed healthy; the
    batch itself starts with a plausible backdated ``since_ms`` (one stack for both, to spare the
    suite's time)."""
    with running_stack(tmp_path, adapter_overrides=fast_confirmations) as stack:
        now_ms = int(time.time() * 1000)
        for since, hint in ((now_ms // 1000, "it looks like seconds"), (now_ms + 3_600_000, "")):
            status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/start",
                                     {"batch_id": "B-BAD", "since_ms": since})
            assert status == 422, body
            assert body["reason"] == "implausible_time" and body["field"] == "since_ms"
            assert body["detail"].startswith(f"since_ms {since} (") and "accepted range" in body["detail"]
            assert hint in body["detail"]
            assert body["earliest_ms"] <= now_ms + 5_000 and body["latest_ms"] >= now_ms
        with urllib.request.urlopen(f"{stack.http}/healthz", timeout=5) as response:  # noqa: S310
            assert response.status == 200
        assert _current_batch(stack) is None

        def wrong_clocks() -> None:
            _inject(stack, "future_timestamp", "Line1/GoodCount", 3, 3600)  # an hour ahead
            time.sleep(4)
            _inject(stack, "future_timestamp", "Line1/GoodCount", 3, -3 * 3600)  # three hours back
            time.sleep(4)

        # a plausible time in the recent past is accepted (the line is stopped until the batch runs)
        _run_batch_and_compare(stack, "B-CLOCK", wrong_clocks, since_ms=int(time.time() * 1000) - 2_000)
        # the wrong clock was flagged and counted as what it is (at its receive time)
        assert _metric(stack, "uns_adapter_counter_clock_corrected") >= 1
        # the adapter's live GoodCount is the simulator's again (not stuck at the future sample)
        good, _ = asyncio.run(simulator_truth(stack.opcua))
        _, tags = stack.api("GET", f"/api/tags?line={stack.line}", role="viewer")
        assert {t["name"]: t["value"] for t in tags if t.get("device_id") is None}["GoodCount"] == good


# -- disk full -------------------------------------------------------------------------------


def _metric(stack: Stack, name: str) -> float:
    with urllib.request.urlopen(f"{stack.http}/metrics", timeout=10) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    found = re.search(rf"^{re.escape(name)}(?:_total)? ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _readyz(stack: Stack) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{stack.http}/readyz", timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_adapter_disk_full_during_a_batch_is_reported_and_loses_no_count(tmp_path: Path) -> None:
    # 32 MiB: room for the adapter's steady footprint once the filler is gone. Each SQLite file's
    # write-ahead log runs up to ~4 MiB between checkpoints (records, production, historian, ...);
    # on an 8 MiB disk the logs alone filled it again seconds after space returned.
    with small_tmpfs(tmp_path / "adapter-data", "32m") as data:
        def on_tmpfs(adapter: dict) -> None:
            fast_confirmations(adapter)
            adapter["data_dir"] = str(data)

        with running_stack(tmp_path, adapter_overrides=on_tmpfs) as stack:
            adapter_proc = next(proc for spec, proc in stack.supervisor.running if spec.name == "adapter")

            def disk_full_for_a_while() -> None:
                filler = fill(data)
                try:
                    status, body = wait_until(lambda: (r := _readyz(stack))[0] == 503 and r, 20,
                                              "/readyz not ready while the disk is full")
                    assert body["status"] == "not_ready" and body["detail"].startswith("ingest failing: ")
                    assert "full" in body["detail"]
                    time.sleep(6)  # production goes on while nothing can be written
                    assert adapter_proc.poll() is None, "the adapter must not exit"
                    assert _metric(stack, "uns_adapter_ingest_write_failures") >= 1
                    assert _metric(stack, "uns_adapter_ingest_failing") == 1
                finally:
                    filler.unlink()
                wait_until(lambda: _readyz(stack)[0] == 200, 20, "/readyz ready once space returns")

            _run_batch_and_compare(stack, "B-DISK", disk_full_for_a_while)
            assert adapter_proc.poll() is None and stack.supervisor.failed() == []


# -- restart and operator input ----------------------------------------------------------------


def _reconciliation(stack: Stack) -> dict | None:
    status, body = stack.api("GET", f"/api/lines/{stack.line}/batch/reconciliation", role="viewer")
    return body if status == 200 else None


def _current_batch(stack: Stack) -> str | None:
    _, lines = stack.api("GET", "/api/lines", role="viewer")
    return next(line["current_batch"] for line in lines if line["line"] == stack.line)


def test_restart_reconciles_the_batch_context_with_the_line(tmp_path: Path) -> None:
    with running_stack(tmp_path, adapter_overrides=fast_confirmations) as stack:
        # the MES runs B-RUN and so does the line: a restart keeps it
        assert stack.api("POST", f"/api/lines/{stack.line}/batch/start", {"batch_id": "B-RUN"})[0] == 201
        asyncio.run(call_method(stack.opcua, "Line1", "StartBatch", string("B-RUN"), string("SKU-12"), uint32(0)))
        wait_until(lambda: any(t["name"] == "CurrentBatch" and t["value"] == "B-RUN" for t in
                               stack.api("GET", f"/api/tags?line={stack.line}", role="viewer")[1]), 20,
                   "CurrentBatch B-RUN in the adapter")
        restart(stack, "adapter", sig=signal.SIGINT)
        kept = wait_until(lambda: _reconciliation(stack), 30, "the reconciliation after the restart")
        assert (kept["action"], kept["batch_id"], kept["end_ms"]) == ("kept", "B-RUN", None), kept["detail"]
        assert "line state 'Execute', batch tag 'B-RUN'" in kept["detail"]
        assert _current_batch(stack) == "B-RUN"

        # the line finishes its batch while the adapter is down; the MES still shows B-RUN
        asyncio.run(call_method(stack.opcua, "Line1", "StopBatch"))
        time.sleep(1.0)
        restart(stack, "adapter", sig=signal.SIGINT)
        ended = wait_until(lambda: _reconciliation(stack), 30, "the reconciliation after the second restart")
        assert (ended["action"], ended["batch_id"]) == ("ended", "B-RUN")
        assert "the line runs no batch" in ended["detail"] and "batch tag ''" in ended["detail"]
        assert _current_batch(stack) is None
        [batch] = [b for b in stack.api("GET", f"/api/batches?line={stack.line}", role="viewer")[1]
                   if b["batch_id"] == "B-RUN"]
        assert batch["running"] is False and batch["end_ms"] == ended["end_ms"]
        log = (stack.supervisor.log_dir / "adapter.log").read_text()
        assert f"context of {stack.line} reconciled with the line at start: batch 'B-RUN' ended" in log
        # the next batch starts (no 409 from a batch of a previous run)
        status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/start", {"batch_id": "B-NEXT"})
        assert status == 201, body


def test_a_batch_stored_with_a_1970_start_before_the_fix_does_not_hang_the_next_start(tmp_path: Path) -> None:
    """What the old API accepted (``since_ms`` in seconds) is in the store: the adapter restarts,
    answers at once, and covers the decades with one catch-up confirmation, not one per window."""
    def often(adapter: dict) -> None:
        adapter["confirmations_every_s"] = 0.5

    with running_stack(tmp_path, adapter_overrides=often) as stack:
        stop_service(stack, "adapter", signal.SIGINT)
        config = AdapterConfig.model_validate(yaml.safe_load((stack.folder / "adapter.yaml").read_text()))
        assert config.mes.partial_interval_s == 300  # uns init's demo: 5.9 million windows since 1970
        since_1970 = int(time.time())  # seconds sent as milliseconds: 21 January 1970
        store = ContextStore(config.mes.context_db)
        store.append(ContextAssertion(line=stack.line, seq=0, since_ms=since_1970, batch_id="B-1970",
                                      asserted_by="old-api"), int(time.time() * 1000))
        store.close()
        start_service(stack, "adapter")
        with urllib.request.urlopen(f"{stack.http}/healthz", timeout=5) as response:  # noqa: S310
            assert response.status == 200

        def confirmations(kind: str) -> list[dict]:
            _, rows = stack.api("GET", "/api/confirmations", role="viewer")
            return [r["confirmation"] for r in rows or [] if r["batch_id"] == "B-1970" and r["kind"] == kind]

        wait_until(lambda: confirmations("partial"), 30, "the catch-up confirmation of B-1970")
        # the idle line's reconciliation ends B-1970; its final follows the catch-up
        wait_until(lambda: confirmations("final"), 30, "the final confirmation of B-1970")
        time.sleep(2)
        [catch_up], [final] = confirmations("partial"), confirmations("final")  # nothing planned twice
        assert catch_up["start_time"].startswith("1970-01-")
        assert final["start_time"] <= final["end_time"]
        with urllib.request.urlopen(f"{stack.http}/healthz", timeout=5) as response:  # noqa: S310
            assert response.status == 200
