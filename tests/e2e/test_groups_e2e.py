"""Issue 16 item 5, scale-out: two MES adapter instances, each owning one Sparkplug group (``host.groups``)
with its own host id, sharing one PostgreSQL for the historian and the MES state (``mes.state_dsn``: batch
context, contextualized records, production counters, and the outbox that follows it), on one Mosquitto,
posting to one MES webhook.

Two simulators, two edge nodes (``acme:plant1`` and ``acme:plant2``, each naming its adapter's host id
as primary host), two adapters, all real processes on free loopback ports; one real PostgreSQL
(tests/support/postgres.py). A batch runs on each line; adapter A is SIGKILLed mid-batch and started
again. Afterwards, exactly:

* each line's batch has one confirmation, whose good and scrap equal its simulator's own totals for
  the batch, in the shared outbox (either adapter's API lists both lines'), and the MES webhook
  received each confirmation exactly once (both instances' senders drain the one outbox);
* while adapter A was down its edge node saw its primary host offline (the Will on STATE) and
  buffered (store-and-forward); edge B stayed born throughout;
* the shared PostgreSQL history holds each line's GoodCount values exactly as that line's adapter
  recorded them (same source times, values, qualities; none doubled), ending at the simulator's
  total, and either adapter's history API answers the same for both lines (one store);
* either adapter answers for the other's line from the shared MES state: the batch list and the batch
  report (counts, context history, confirmations) equal what the owning adapter answers, and the
  line's records (``/api/lines/{line}/records``) are the same rows; the record table holds each
  line's GoodCount values once each, across adapter A's SIGKILL, restart and edge A's replay.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from simulator.client import call_method, call_simulation, uint32
from tests.e2e.browser import ARTIFACTS, dashboard
from tests.e2e.stack import (
    Stack,
    edge_get,
    fast_confirmations,
    good_count_ids,
    prom_metric,
    simulator_truth,
    uns_init,
    wait_until,
)
from tests.faults.rig import start_service, stop_service
from tests.mes.receiver import Receiver
from tests.support.mosquitto import BrokerEndpoint, mosquitto_broker
from tests.support.net import free_port
from tests.support.postgres import postgres_bin_dir, postgres_server
from tests.support.procs import uns_command
from unshub.supervisor import ServiceSpec, Supervisor, http_ok

pytestmark = [pytest.mark.timeout(400), pytest.mark.mosquitto,
              pytest.mark.skipif(postgres_bin_dir() is None, reason="PostgreSQL is not installed (scripts/test)")]

SITES = {"a": "plant1", "b": "plant2"}


def _configure(folder: Path, name: str, site: str, broker: BrokerEndpoint, dsn: str, webhook: str) -> None:
    """One partition: the `uns init` configs moved to site ``site`` (group acme:<site>), host id
    ``mes-<name>``, owning only its group, its historian and outbox on the shared PostgreSQL."""
    group, line, host_id = f"acme:{site}", f"acme/{site}/packaging/line1", f"mes-{name}"
    plant_file, adapter_file = folder / "plant.yaml", folder / "adapter.yaml"
    plant = yaml.safe_load(plant_file.read_text())
    plant["line"]["site"] = site
    plant["sparkplug"]["brokers"] = [broker.url]
    plant["sparkplug"]["primary_host_id"] = host_id
    plant_file.write_text(yaml.safe_dump(plant, sort_keys=False))
    adapter = yaml.safe_load(adapter_file.read_text())
    adapter["host"].update(broker_url=broker.url, host_id=host_id, groups=[group])
    fast_confirmations(adapter)
    adapter["mes"]["lines"][0]["line"] = line
    adapter["mes"]["orders"]["lines"][0].update(line=line, group_id=group)
    adapter["historian"] = {"backend": "postgres", "dsn": dsn}
    adapter["mes"].update(state_dsn=dsn, webhook={"url": webhook})  # the outbox follows state_dsn
    adapter_file.write_text(yaml.safe_dump(adapter, sort_keys=False))


def _partition(workdir: Path, name: str, supervisor: Supervisor, broker: BrokerEndpoint, dsn: str,
               webhook: str) -> Stack:
    folder = workdir / name / "config"
    ports = {p: free_port() for p in ("ws", "opcua", "http", "edge_http", "broker_http")}
    uns_init(folder, {**ports, "mqtt": broker.port})
    _configure(folder, name, SITES[name], broker, dsn, webhook)
    tokens = yaml.safe_load((folder / "stack.yaml").read_text())["tokens"]
    return Stack(folder, broker.port, ports["opcua"], ports["http"], tokens, supervisor,
                 f"acme/{SITES[name]}/packaging/line1", ports["edge_http"])


def _start(stack: Stack, name: str) -> None:
    supervisor = stack.supervisor
    supervisor.start(ServiceSpec(f"simulator-{name}", uns_command("sim", "run", "--host", "127.0.0.1", "--port",
                                                                  str(stack.opcua_port), "--seed", "7"),
                                 ready_ports=[stack.opcua_port]))
    supervisor.start(ServiceSpec(f"adapter-{name}", uns_command("adapter", "run", "--config",
                                                                str(stack.folder / "adapter.yaml")),
                                 ready_ports=[stack.http_port], ready_check=lambda: http_ok(f"{stack.http}/readyz")))
    edge = uns_command("edge", "run", "--config", str(stack.folder / "plant.yaml"))
    supervisor.start(ServiceSpec(f"edge-{name}", edge,
                                 ready_check=lambda: any(line.get("nodes_online") for line in
                                                         (stack.api("GET", "/api/lines", role="viewer")[1] or [])),
                                 ready_timeout=60))


@contextmanager
def two_partitions(workdir: Path, mes: Receiver) -> Iterator[tuple[dict[str, Stack], str]]:
    with ExitStack() as resources:
        pg = resources.enter_context(postgres_server(workdir / "pg-logs"))
        broker = resources.enter_context(mosquitto_broker(workdir))
        supervisor = Supervisor(workdir / "logs")
        resources.callback(supervisor.stop_all)
        stacks = {name: _partition(workdir, name, supervisor, broker, pg.dsn, mes.url) for name in SITES}
        for name, stack in stacks.items():
            _start(stack, name)
        yield stacks, pg.dsn


def _records(stack: Stack, topic: str, start: int, end: int) -> list[tuple[int, Any, str]]:
    query = urllib.parse.urlencode({"topic": topic, "from_ms": start, "to_ms": end, "limit": 10000})
    status, body = stack.api("GET", f"/api/tags/history?{query}", role="viewer")
    assert status == 200 and not body["truncated"], body
    return [(p["ts_ms"], p["value"], p["quality"]) for p in body["points"]]


def _history(stack: Stack, ids: dict[str, Any], start: int, end: int) -> list[tuple[int, Any, str]]:
    status, body = stack.api("GET", "/api/history/raw?" + urllib.parse.urlencode({**ids, "start": start, "end": end}),
                             role="viewer")
    assert status == 200, body
    return [(v["source_ms"], v["value"], v["quality"]) for v in body["values"]]


def _confirmations(stack: Stack, batch_id: str) -> list[dict]:
    status, rows = stack.api("GET", f"/api/confirmations?batch_id={batch_id}", role="viewer")
    assert status == 200, rows
    return [row["confirmation"] for row in rows]


def _report(stack: Stack, line: str, batch_id: str) -> dict[str, Any]:
    status, body = stack.api("GET", f"/api/lines/{line}/batches/{batch_id}/report", role="viewer")
    assert status == 200, body
    return body


def _line_records(stack: Stack, line: str, metric: str, start: int, end: int) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"from_ms": start, "to_ms": end, "metric": metric, "cell": "", "limit": 50_000})
    status, body = stack.api("GET", f"/api/lines/{line}/records?{query}", role="viewer")
    assert status == 200 and not body["truncated"], body
    return body["records"]


def test_two_instances_by_group_share_one_postgres_historian_and_mes_state(tmp_path: Path) -> None:
    with Receiver() as mes, two_partitions(tmp_path, mes) as (stacks, dsn):
        a, b = stacks["a"], stacks["b"]
        batches = {"a": "B-GROUP-A", "b": "B-GROUP-B"}
        start_ms = int(time.time() * 1000)
        before = {name: asyncio.run(simulator_truth(s.opcua)) for name, s in stacks.items()}
        for name, stack in stacks.items():
            status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/start",
                                     {"batch_id": batches[name], "work_order_id": f"WO-{name}", "product_id": "SKU-12"})
            assert status == 201, body
        # an instance takes batch context for its own group's lines only (and ignores B's on the UNS)
        status, body = a.api("POST", f"/api/lines/{b.line}/batch/start",
                             {"batch_id": "B-WRONG", "product_id": "SKU-12"})
        assert (status, body["reason"]) == (422, "LineNotOwnedError"), body
        assert "line acme/plant2/packaging/line1 is in Sparkplug group 'acme:plant2'" in body["detail"]
        time.sleep(0.3)
        for stack in stacks.values():
            asyncio.run(call_method(stack.opcua, "Line1", "Start"))
        time.sleep(2.0)

        # adapter A crashes: its edge node sees its primary host offline (the Will) and buffers
        stop_service(a, "adapter-a", signal.SIGKILL)
        wait_until(lambda: "waiting for primary host 'mes-a' STATE online" in edge_get(a, "/readyz")[1], 30,
                   "edge A waiting for its primary host")
        asyncio.run(call_simulation(a.opcua, "ForceRejects", uint32(3)))
        asyncio.run(call_simulation(b.opcua, "ForceRejects", uint32(2)))
        wait_until(lambda: prom_metric(edge_get(a, "/metrics")[1], "uns_edge_store_depth") > 0, 30,
                   "edge A buffering values")
        assert edge_get(b, "/readyz")[0] == 200  # edge B's host is up: B is unaffected
        time.sleep(2.0)
        start_service(a, "adapter-a")
        wait_until(lambda: edge_get(a, "/readyz")[0] == 200, 60, "edge A born again to mes-a")
        wait_until(lambda: prom_metric(edge_get(a, "/metrics")[1], "uns_edge_store_depth") == 0, 60,
                   "edge A's buffer replayed")
        time.sleep(1.0)
        for stack in stacks.values():
            asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
        time.sleep(0.5)
        after = {name: asyncio.run(simulator_truth(s.opcua)) for name, s in stacks.items()}

        for name, stack in stacks.items():
            good1, reject1 = after[name]

            def counters_arrived(stack: Stack = stack, good1: int = good1, reject1: int = reject1) -> bool:
                _, tags = stack.api("GET", f"/api/tags?line={stack.line}", role="viewer")
                values = {t["name"]: t["value"] for t in tags if t.get("device_id") is None}
                return values.get("GoodCount") == good1 and values.get("RejectCount") == reject1

            wait_until(counters_arrived, 30, f"final counter values in adapter {name}")
            status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/end", {"batch_id": batches[name]})
            assert status == 200, body
        for name, stack in stacks.items():
            wait_until(lambda stack=stack, name=name: any(c["kind"] == "final"
                                                          for c in _confirmations(stack, batches[name])),
                       30, f"final confirmation of line {name}")
            (confirmation,) = _confirmations(stack, batches[name])  # one, counted once (no partials configured)
            produced = confirmation["produced"][0]
            good0, reject0 = before[name]
            good1, reject1 = after[name]
            assert (produced["good"], produced["scrap"]) == (good1 - good0, reject1 - reject0), confirmation
            assert reject1 - reject0 >= {"a": 3, "b": 2}[name]
        # one shared outbox: either instance answers for both lines, and the MES got each confirmation once
        both = {name: _confirmations(stack, batches[name])[0]["confirmation_id"] for name, stack in stacks.items()}
        assert [c["confirmation_id"] for c in _confirmations(a, batches["b"])] == [both["b"]]
        assert [c["confirmation_id"] for c in _confirmations(b, batches["a"])] == [both["a"]]
        # delivered is final: once both say so, no instance posts either again
        wait_until(lambda: all(r["status"] == "delivered"
                               for r in a.api("GET", "/api/confirmations", role="viewer")[1]),
                   30, "both confirmations delivered to the MES")
        assert [r["attempts"] for r in b.api("GET", "/api/confirmations", role="viewer")[1]] == [1, 1]
        assert Counter(r.headers["Idempotency-Key"] for r in mes.requests) == Counter(both.values())

        # the shared MES state: each adapter answers for the other's line exactly as the owner does
        for owner, reader in ((a, b), (b, a)):
            batch_id = batches["a" if owner is a else "b"]
            own, other = _report(owner, owner.line, batch_id), _report(reader, owner.line, batch_id)
            name = "a" if owner is a else "b"
            assert (own["batch"]["good"], own["batch"]["rejects"]) == (after[name][0] - before[name][0],
                                                                       after[name][1] - before[name][1])
            assert other["batch"] == own["batch"] and other["context"] == own["context"]
            assert other["confirmations"] == own["confirmations"] and len(own["confirmations"]) == 1
            assert own["owned_elsewhere"] is None and own["oee"] is not None
            assert other["owned_elsewhere"].startswith(f"line {owner.line} is in Sparkplug group ")
            # what only the owner keeps is null on the reader, not an empty list that reads as "none"
            parts = ("stops", "alarms", "exceptions", "holds", "commands")
            assert [other[k] for k in parts] == [None] * 5 and all(isinstance(own[k], list) for k in parts)
            listed = [s.api("GET", f"/api/batches?line={owner.line}", role="viewer")[1] for s in (owner, reader)]
            assert listed[1] == listed[0] and [row["batch_id"] for row in listed[0]] == [batch_id]
        # ... and so does its dashboard: a's panel opens b's batch report, with b's counts and what only b has
        from playwright.sync_api import expect

        with dashboard(a, "viewer", 900) as page:
            page.goto(f"{a.http}/#report={urllib.parse.quote(b.line, safe='')}|{batches['b']}")
            expect(page.locator("[data-report=owned-elsewhere]")).to_contain_text(
                f"line {b.line} is in Sparkplug group ", timeout=15_000)
            expect(page.locator("[data-report=good]")).to_have_text(str(after["b"][0] - before["b"][0]))
            # what only b keeps is said to be kept there, never shown as "no stops" / "no alarms"
            expect(page.locator("[data-report=kept-elsewhere]")).to_have_count(5)  # OEE, stops, alarms, ...
            for empty in ("no stops", "no alarms during the batch", "no commands during the batch"):
                expect(page.locator("#batch-report")).not_to_contain_text(empty)
            page.screenshot(path=str(ARTIFACTS / "groups-report-of-another-instance.png"), full_page=True)

        # the shared historian: each line's GoodCount values as its adapter recorded them, none doubled
        end_ms = int(time.time() * 1000) + 1
        for name, stack in stacks.items():
            topic, ids = good_count_ids(stack)
            other = b if stack is a else a
            last: list[Any] = [None, None, None]

            def same(stack: Stack = stack, other: Stack = other, topic: str = topic,
                     ids: dict[str, Any] = ids, last: list[Any] = last) -> bool:
                last[:] = [_records(stack, topic, start_ms, end_ms), _history(stack, ids, start_ms, end_ms),
                           _history(other, ids, start_ms, end_ms)]
                return bool(last[0]) and last[0] == last[1] == last[2]
            try:
                wait_until(same, 30, f"history of line {name} equal to its records", interval=0.5)
            except TimeoutError:
                raise AssertionError(f"line {name}\nrecords {last[0]}\nhistorian via own adapter {last[1]}\n"
                                     f"historian via the other adapter {last[2]}") from None
            values = last[1]
            assert len({v[0] for v in values}) == len(values)  # each source time once
            good = [v[1] for v in values if v[2] == "GOOD"]
            assert good[-1] == after[name][0] and good == sorted(good)
            # the shared record table: the same GoodCount rows through either adapter, each value once
            rows = [(r["source_ts_ms"], r["value"], r["quality"])
                    for r in _line_records(stack, stack.line, "GoodCount", start_ms, end_ms)]
            assert rows == values == [(r["source_ts_ms"], r["value"], r["quality"])
                                      for r in _line_records(other, stack.line, "GoodCount", start_ms, end_ms)]
            with psycopg.connect(dsn) as conn:
                stored = conn.execute("SELECT source_ts_ms, value FROM mes_record WHERE line = %s AND cell = ''"
                                      " AND metric = 'GoodCount' AND source_ts_ms >= %s AND source_ts_ms < %s"
                                      " ORDER BY source_ts_ms", (stack.line, start_ms, end_ms)).fetchall()
            assert [(ts, json.loads(v)) for ts, v in stored] == [(ts, v) for ts, v, _ in values]
        with psycopg.connect(dsn) as conn:  # both instances registered their groups (one restarted: its row, once)
            registered = conn.execute("SELECT host_id, groups FROM mes_instance ORDER BY host_id").fetchall()
        assert registered == [("mes-a", ["acme:plant1"]), ("mes-b", ["acme:plant2"])], registered

        # each instance registered whether it holds rejects for QA (neither does here): the reader calls
        # the owner's rejects scrap, as the owner does. With the owner stopped that cannot be told, so
        # the split is null and said to be unknown, never every reject called scrap
        assert [b_row["split_unknown"] for b_row in listed[0] + listed[1]] == [None, None]
        stop_service(b, "adapter-b", signal.SIGINT)  # a clean stop: its registration is released at once
        rows: list[Any] = []

        def unknown() -> bool:
            rows[:] = a.api("GET", f"/api/batches?line={b.line}", role="viewer")[1]
            return bool(rows) and rows[0]["split_unknown"] is not None
        wait_until(unknown, 20, "a's batch list of b's line saying the QA split is not known")
        (row,) = rows
        assert (row["rejects"], row["scrap"], row["rework"], row["accepted"], row["pending_disposition"]) == (
            after["b"][1] - before["b"][1], None, None, None, None), row
        assert row["split_unknown"] == (f"the QA split of these rejects is kept by the adapter instance owning line "
                                        f"{b.line} (no live instance owns it now)")
        with dashboard(a, "viewer", 900) as page:
            page.goto(f"{a.http}/#report={urllib.parse.quote(b.line, safe='')}|{batches['b']}")
            expect(page.locator("[data-report=scrap]")).to_have_text("kept by the owning instance (QA split)",
                                                                     timeout=15_000)
            expect(page.locator("[data-report=rejects]")).to_have_text(str(after["b"][1] - before["b"][1]))
