"""Condition alarms end to end: `SimulatedLineServer` (asyncua) → edge node → Mosquitto → MES adapter → REST.

The simulator raises a real limit alarm (``SetDisturbance``: a cooling failure drives the Filler
above setpoint + 5 °C, then + 10 °C) and a Jam (``RaiseAlarm``); the edge relays each event as the
``Alarms/<Name>/...`` metric group; the adapter journals every change with the batch and phase
running at source time, publishes it retained on ``<line>/_alarms/<cell>/_conditions/<Name>``
(``kind: condition``) and lists it on ``/api/alarms``. Every EventId asserted is the simulator's
own; the journal's count per condition equals the simulator's truth counter for it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_node.app import EdgeNodeApp
from edge_node.config import loads_edge_config
from mes_adapter.alarms import BatchHold, release_hash
from simulator.client import boolean, call_simulation, double, string
from simulator.config import NAMESPACE_URI, CellConfig, SimulatorConfig
from simulator.server import SimulatedLineServer
from tests.adapter.conftest import RunningAdapter, eventually, serve
from tests.adapter.setup import USERS, auth, write_files
from tests.mes.receiver import Receiver
from tests.support.embedded_broker import embedded_broker
from tests.support.mosquitto import BrokerEndpoint, mosquitto_broker
from tests.support.net import free_port
from uns.audit.ed25519 import key_id
from uns.commands.model import Signature, SignatureMeaning
from uns.commands.signing import signed_bytes

#: what the alarm rules write into the audit chain (exception, hold, release and their refusals)
_ALARM_RULE_EVENTS = frozenset({"exception_opened", "exception_closed", "batch_held", "batch_released", "refused",
                                "alarm_shelved"})

pytestmark = [pytest.mark.timeout(300)]
BROKERS = ["embedded", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]

LINE = "acme/plant1/packaging/line1"
TOPIC_ROOT = f"{LINE}/_alarms"


def plant(broker_port: int, sim: SimulatedLineServer, data_dir: Path) -> str:
    return f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo  # loopback test server with security policy None
data_dir: {data_dir}
sparkplug:
  group_id: "acme:plant1"
  edge_node_id: "packaging:line1"
  brokers: [mqtt://127.0.0.1:{broker_port}]
  publish_interval_ms: 50
  reconnect_min_s: 1.0
  reconnect_max_s: 2.0
  reconnect_jitter: 0.0
  store: {{synchronous: NORMAL}}
opcua:
  - name: sim
    url: {sim.endpoint}
    publishing_interval_ms: 50
    keepalive_interval_s: 0.5
    reconnect_min_s: 0.5
    reconnect_max_s: 1.0
    alarms:
      conditions:
        - {{cell: Filler, name: TemperatureAlarm}}
        - {{cell: Filler, name: Jam}}
tags:
  - {{node_id: "nsu={NAMESPACE_URI};s=Line1/Filler/Temperature", metric: Temperature, cell: Filler,
      eng_low: -50.0, eng_high: 150.0}}
quality_alarms: true
"""


def sim_config() -> SimulatorConfig:
    # no sensor noise, short lag: the temperature crosses each limit once
    return SimulatorConfig(port=free_port(), tick_s=0.05, seed=3, cells=[
        CellConfig(name="Filler", temperature_c=20.0, temperature_noise_c=0.0, temperature_tau_s=0.5)])


class Retained:
    """Subscribes to ``<line>/_alarms/#`` and ``<line>/_context/#``; keeps the last message per topic."""

    def __init__(self, broker: BrokerEndpoint) -> None:
        self.last: dict[str, dict] = {}
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"alarms-reader-{free_port()}")
        topics = [(f"{TOPIC_ROOT}/#", 1), (f"{LINE}/_context/#", 1)]
        self.client.on_connect = lambda c, *_: (c.subscribe(topics), self._ready.set())
        self.client.on_message = lambda c, u, m: self.last.__setitem__(m.topic, json.loads(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def condition(sim: SimulatedLineServer, name: str):  # type: ignore[no-untyped-def]
    """The simulator's own condition object (its event count and last EventId are the truth)."""
    return sim.model.alarms.condition(f"Line1/Filler/{name}")


@contextlib.asynccontextmanager
async def chain(tmp_path: Path, mes: dict | None = None, broker_kind: str = "mosquitto") -> AsyncIterator[Chain]:
    """A broker (Mosquitto, or ``uns broker run`` for ``broker_kind="embedded"``), the simulator, an
    edge node (not started: the test starts it once its batch runs), the adapter (``mes`` merged into
    its ``mes:`` section) and a reader of ``_alarms`` / ``_context``."""
    brokers = {"embedded": lambda: embedded_broker(tmp_path / "broker", websocket=False),
               "mosquitto": lambda: mosquitto_broker(tmp_path)}
    with brokers[broker_kind]() as broker:
        sim = SimulatedLineServer(sim_config())
        await sim.start()
        edge = EdgeNodeApp(loads_edge_config(plant(broker.port, sim, tmp_path / "edge")))
        files = write_files(tmp_path, broker.url, free_port())
        if mes:
            files.config["mes"].update(mes)
            (files.directory / "adapter.yaml").write_text(yaml.safe_dump(files.config, sort_keys=False))
        reader = Retained(broker)
        try:
            async with serve(files, broker) as adapter:
                yield Chain(sim, edge, adapter, reader)
        finally:
            reader.close()
            await edge.stop()
            await sim.stop()


@dataclass
class Chain:
    sim: SimulatedLineServer
    edge: EdgeNodeApp
    adapter: RunningAdapter
    reader: Retained


async def start_batch(client: httpx.AsyncClient, batch_id: str, phase: str) -> None:
    started = await client.post(f"/api/lines/{LINE}/batch/start", json={"batch_id": batch_id},
                                headers=auth("operator"))
    assert started.status_code == 201
    phased = await client.post(f"/api/lines/{LINE}/batch/phase", json={"phase": phase}, headers=auth("operator"))
    assert phased.status_code == 200


@pytest.mark.mosquitto
async def test_limit_alarm_and_jam_are_journaled_with_the_batch_and_retained_on_alarms(tmp_path: Path) -> None:
    async with chain(tmp_path) as c:
        sim, edge, adapter, reader = c.sim, c.edge, c.adapter, c.reader
        client = adapter.client
        await start_batch(client, "B-7", "filling")
        await edge.start()
        topic_t = f"{TOPIC_ROOT}/Filler/_conditions/TemperatureAlarm"
        topic_j = f"{TOPIC_ROOT}/Filler/_conditions/Jam"
        # the births state both conditions as never raised
        born = await eventually(lambda: _async(reader.last.get(topic_j)), timeout=30)
        assert (born["kind"], born["active"], born["acked"], born["confirmed"], born["retain"],
                born["severity"], born["stale"]) == ("condition", False, True, True, False, 0, False)

        await call_simulation(sim.endpoint, "SetDisturbance", string("Filler"), double(15.0))
        high_high = await eventually(
            lambda: _async((m := reader.last.get(topic_t)) and m["state"] == "HighHigh" and m), timeout=30)
        assert (high_high["active"], high_high["acked"], high_high["severity"], high_high["line"],
                high_high["cell"], high_high["batch_id"], high_high["phase"]) == (
            True, False, 800, LINE, "Filler", "B-7", "filling")
        assert high_high["condition_id"] == f"ns={sim.namespace_index};s=Line1/Filler/TemperatureAlarm"
        assert high_high["event_id"] == condition(sim, "TemperatureAlarm").last_event.event_id.hex()
        assert high_high["source_ts_ms"] <= high_high["received_ms"]

        await call_simulation(sim.endpoint, "RaiseAlarm", string("Filler"), string("Jam"), boolean(True))
        jam = await eventually(lambda: _async((m := reader.last.get(topic_j)) and m["active"] and m))
        assert (jam["severity"], jam["batch_id"], jam["phase"], jam["acked"]) == (600, "B-7", "filling", False)
        await call_simulation(sim.endpoint, "RaiseAlarm", string("Filler"), string("Jam"), boolean(False))
        cleared = await eventually(lambda: _async((m := reader.last.get(topic_j)) and not m["active"] and m))
        # cleared but not acknowledged: still retained on the server, so still listed as an alarm
        assert (cleared["retain"], cleared["acked"]) == (True, False)
        assert cleared["event_id"] != jam["event_id"]

        active = (await client.get("/api/alarms", params={"line": LINE}, headers=auth("viewer"))).json()
        assert sorted((a["condition"], a["active"], a["state"]) for a in active) == [
            ("Jam", False, ""), ("TemperatureAlarm", True, "HighHigh")]
        history = (await client.get("/api/alarms/history", params={"batch_id": "B-7", "condition": "Jam"},
                                    headers=auth("viewer"))).json()
        # the birth's "never raised" statement is the first row (no EventId), then one row per event
        assert [(h["active"], h["event_id"]) for h in history] == [
            (False, ""), (True, jam["event_id"]), (False, cleared["event_id"])]
        temperature = (await client.get("/api/alarms/history", params={
            "line": LINE, "phase": "filling", "condition": "TemperatureAlarm"},
            headers=auth("viewer"))).json()
        assert [h["state"] for h in temperature] == ["", "High", "HighHigh"]
        # every raised event of the batch is journaled once: the simulator's own event counts
        assert len([h for h in history if h["event_id"]]) == condition(sim, "Jam").events == 2
        assert len([h for h in temperature if h["event_id"]]) == condition(sim, "TemperatureAlarm").events == 2

        # a burst of 2,000 condition events, as fast as the simulator fires them (20,000/s: ~1,000
        # per tick, many events of one condition share a source time): every Jam event is one journal
        # row, the unconfigured DoorOpen/EStop ones are counted by the edge; nothing lost, nothing silent
        stats = edge.sources[0].alarms.book.stats
        journal = adapter.service.alarms.journal.connection
        jam_rows = "SELECT count(*), count(DISTINCT event_id) FROM alarm_event WHERE condition = 'Jam' " \
                   "AND event_id != ''"
        rows_before, distinct_before = journal.execute(jam_rows).fetchone()
        received_before, unknown_before = stats.received, stats.unknown_conditions
        truth_before = {n: condition(sim, n).events for n in ("Jam", "DoorOpen", "EStop")}
        await call_simulation(sim.endpoint, "AlarmFlood", double(20_000.0), double(0.1))
        await eventually(lambda: _async(not sim.model.alarms.flooding))
        fired = {n: condition(sim, n).events - truth_before[n] for n in truth_before}
        assert sum(fired.values()) == 2000
        await eventually(lambda: _async(journal.execute(jam_rows).fetchone()[0] - rows_before >= fired["Jam"]),
                         timeout=120)
        await eventually(lambda: _async(stats.received - received_before >= 2000))
        assert stats.received - received_before == 2000
        assert stats.unknown_conditions - unknown_before == fired["DoorOpen"] + fired["EStop"]
        assert stats.queue_overflows == 0
        rows, distinct = journal.execute(jam_rows).fetchone()
        assert rows - rows_before == distinct - distinct_before == fired["Jam"]
        last = await eventually(lambda: _async((m := reader.last.get(topic_j)) and m["event_id"] == condition(
            sim, "Jam").last_event.event_id.hex() and m))
        assert last["active"] is condition(sim, "Jam").active

        # the edge's own data-quality events on the same channel: an out-of-range spike and a Bad
        # status episode of the Temperature, each active while it lasts and cleared at its end
        history_of = ("SELECT active, retain, acked, severity, state, event_id != '', batch_id, phase "
                      "FROM alarm_event WHERE condition = ? ORDER BY id")
        for fault, kind, severity in (("spike", "OutOfRange", 600), ("bad_status", "BadQuality", 700)):
            topic = f"{TOPIC_ROOT}/Filler/_conditions/DataQuality/Temperature/{kind}"
            await call_simulation(sim.endpoint, "InjectFault", string(fault), string("Line1/Filler/Temperature"),
                                  double(0.3), double(float("nan")))
            raised = await eventually(lambda t=topic: _async((m := reader.last.get(t)) and m["active"] and m),
                                      timeout=30)
            assert (raised["kind"], raised["condition"], raised["retain"], raised["acked"], raised["severity"],
                    raised["state"], raised["batch_id"], raised["phase"], raised["condition_id"]) == (
                "condition", f"DataQuality/Temperature/{kind}", True, True, severity, kind, "B-7", "filling", "")
            ended = await eventually(lambda t=topic: _async((m := reader.last.get(t)) and not m["active"] and m),
                                     timeout=30)
            assert (ended["retain"], ended["state"], ended["severity"], ended["batch_id"]) == (False, "", severity,
                                                                                           "B-7")
            assert ended["event_id"] != raised["event_id"] and ended["source_ts_ms"] >= raised["source_ts_ms"]
            # the journal: the birth's "never raised", the start, the end; nothing else
            assert journal.execute(history_of, (f"DataQuality/Temperature/{kind}",)).fetchall() == [
                (0, 0, 1, severity, "", 0, "B-7", "filling"), (1, 1, 1, severity, kind, 1, "B-7", "filling"),
                (0, 0, 1, severity, "", 1, "B-7", "filling")]

        # the edge goes away: the retained alarms turn stale, their state kept
        await edge.stop()
        stale = await eventually(lambda: _async((m := reader.last.get(topic_t)) and m["stale"] and m),
                                 timeout=30)
        assert (stale["active"], stale["state"], stale["event_id"]) == (
            True, "HighHigh", high_high["event_id"])

        bad = await client.get("/api/alarms/history", params={"from_ms": 10, "to_ms": 5},
                               headers=auth("viewer"))
        assert bad.status_code == 422 and bad.json()["reason"] == "bad_range"
        unknown = await client.get("/api/alarms", params={"line": "acme/plant1/packaging/nope"},
                                   headers=auth("viewer"))
        assert unknown.status_code == 404 and unknown.json()["reason"] == "unknown_line"


async def _async(value):  # type: ignore[no-untyped-def]
    return value



def sign_release(key: Ed25519PrivateKey, role: str, hold: dict, comment: str) -> dict:
    """What `uns adapter sign` would produce: the user's Ed25519 signature over the release hash."""
    user_id, name = USERS[role]
    unsigned = Signature(user_id=user_id, full_name=name, meaning=SignatureMeaning.APPROVED,
                         signed_at_ms=hold["held_ms"] + 1, command_hash=release_hash(BatchHold(**hold), comment),
                         key_id=key_id(key.public_key()), value="-")
    value = base64.b64encode(key.sign(signed_bytes(unsigned))).decode()
    return unsigned.model_copy(update={"value": value}).model_dump(mode="json")


RULES = {"rules": [
    {"condition": "TemperatureAlarm", "min_severity": 800, "owner": "QA", "action": "check the product temperature",
     "hold": True},
    {"condition": "Jam", "owner": "maintenance", "action": "clear the jam", "cause": "bottle jam"},
]}


@pytest.mark.parametrize("broker_kind", BROKERS)
async def test_highhigh_opens_exceptions_holds_the_batch_and_only_a_signed_supervisor_release_confirms(
        tmp_path: Path, broker_kind: str) -> None:
    with Receiver() as mes_receiver:
        async with chain(tmp_path, {"alarms": RULES, "webhook": {"url": mes_receiver.url}}, broker_kind) as c:
            client, service = c.adapter.client, c.adapter.service
            await start_batch(client, "B-9", "filling")
            await c.edge.start()
            await call_simulation(c.sim.endpoint, "RaiseAlarm", string("Filler"), string("Jam"), boolean(True))

            async def opened() -> list[dict]:
                return (await client.get("/api/exceptions", params={"line": LINE, "open": "true"},
                                         headers=auth("viewer"))).json()

            [jam] = await eventually(opened, timeout=30)
            # an exception rule without hold: the batch goes on
            assert (jam["owner"], jam["cause"], jam["severity"], jam["batch_id"], jam["phase"]) == (
                "maintenance", "bottle jam", 600, "B-9", "filling")
            assert (await client.get("/api/holds", headers=auth("viewer"))).json() == []
            await call_simulation(c.sim.endpoint, "SetDisturbance", string("Filler"), double(15.0))

            async def held() -> list[dict]:
                return (await client.get("/api/holds", params={"held": "true"}, headers=auth("viewer"))).json()

            [hold] = await eventually(held, timeout=30)
            exceptions = (await client.get("/api/exceptions", params={"line": LINE, "open": "true"},
                                           headers=auth("viewer"))).json()
            # High (500) matches no rule; HighHigh (800) opens the QA exception, which holds B-9
            assert [(e["owner"], e["severity"], e["batch_id"], e["phase"], e["action"]) for e in exceptions] == [
                ("maintenance", 600, "B-9", "filling", "clear the jam"),
                ("QA", 800, "B-9", "filling", "check the product temperature")]
            qa = exceptions[1]
            # the rules' counters on /metrics: two exceptions, one hold, nothing suppressed
            scraped = (await client.get("/metrics")).text
            assert "uns_adapter_alarm_events_not_journaled_total 0.0" in scraped.splitlines()
            assert [line for line in scraped.splitlines() if line.startswith("uns_adapter_alarm_")
                    and not line.startswith("uns_adapter_alarm_events_")] == [
                "uns_adapter_alarm_exceptions_opened_total 2.0", "uns_adapter_alarm_holds_total 1.0",
                'uns_adapter_alarm_rule_suppressed_total{why="debounce"} 0.0',
                'uns_adapter_alarm_rule_suppressed_total{why="rate"} 0.0',
                'uns_adapter_alarm_rule_suppressed_total{why="shelved"} 0.0', "uns_adapter_alarm_rule_errors_total 0.0"]
            assert (hold["line"], hold["batch_id"], hold["exception_id"], hold["held"]) == (LINE, "B-9", qa["id"], True)
            assert hold["reason"].startswith("TemperatureAlarm on Filler (severity 800): ")
            on_context = await eventually(lambda: _async(c.reader.last.get(f"{LINE}/_context/hold")))
            assert (on_context["batch_id"], on_context["held"], on_context["hold_id"]) == ("B-9", True, hold["id"])

            ended = await client.post(f"/api/lines/{LINE}/batch/end", json={"batch_id": "B-9"},
                                      headers=auth("operator"))
            assert ended.status_code == 200
            # the confirmation run, now (its loop does the same every 0.5 s): a held batch gets no final confirmation
            assert service.run_confirmations() == 0
            finals = (await client.get("/api/confirmations", params={"batch_id": "B-9"},
                                       headers=auth("viewer"))).json()
            assert finals == [] and mes_receiver.requests == []

            comment = "product temperature checked, within specification"
            keys = c.adapter.files.keys
            refusals = [
                # an operator may not release, even with a valid signature of their own
                ("operator", sign_release(keys["operator"], "operator", hold, comment), comment,
                 "role_not_allowed"),
                # a supervisor presenting the operator's signature
                ("supervisor", sign_release(keys["operator"], "operator", hold, comment), comment,
                 "signer_not_caller"),
                # a signature over another comment (the comment was changed after signing)
                ("supervisor", sign_release(keys["supervisor"], "supervisor", hold, "ok"), comment,
                 "signature_invalid"),
                # signed by the supervisor's name with the operator's key
                ("supervisor", {**sign_release(keys["operator"], "supervisor", hold, comment)}, comment,
                 "signature_invalid"),
            ]
            for role, signature, text, reason in refusals:
                refused = await client.post(f"/api/holds/{hold['id']}/release", headers=auth(role),
                                            json={"comment": text, "signature": signature})
                assert (refused.status_code, refused.json()["reason"]) == (403, reason), refused.json()
            assert len(await held()) == 1  # nothing of the hold changed
            unknown = await client.post("/api/holds/999/release", headers=auth("supervisor"), json={
                "comment": comment, "signature": sign_release(keys["supervisor"], "supervisor", hold, comment)})
            assert (unknown.status_code, unknown.json()["reason"]) == (404, "unknown_hold")

            released = await client.post(f"/api/holds/{hold['id']}/release", headers=auth("supervisor"), json={
                "comment": comment, "signature": sign_release(keys["supervisor"], "supervisor", hold, comment)})
            assert released.status_code == 200, released.json()
            body = released.json()
            assert (body["held"], body["released_by"], body["release_comment"]) == (False, "bob", comment)
            again = await client.post(f"/api/holds/{hold['id']}/release", headers=auth("supervisor"), json={
                "comment": comment, "signature": sign_release(keys["supervisor"], "supervisor", hold, comment)})
            assert (again.status_code, again.json()["reason"]) == (409, "already_released")
            after = await eventually(lambda: _async((m := c.reader.last.get(f"{LINE}/_context/hold"))
                                                    and not m["held"] and m))
            assert (after["hold_id"], after["released_by"]) == (hold["id"], "bob")

            # released: the final confirmation is built and reaches the MES receiver
            async def posted() -> list[dict]:
                return [json.loads(r.body) for r in mes_receiver.requests]

            [final] = await eventually(posted, timeout=20)
            assert (final["batch_id"], final["kind"]) == ("B-9", "final")

            closed = await client.post(f"/api/exceptions/{qa['id']}/close", headers=auth("operator"),
                                       json={"comment": "cooling valve replaced"})
            assert (closed.status_code, closed.json()["open"], closed.json()["closed_by"]) == (200, False, "alice")
            twice = await client.post(f"/api/exceptions/{qa['id']}/close", headers=auth("operator"),
                                      json={"comment": "again"})
            assert (twice.status_code, twice.json()["reason"]) == (409, "already_closed")

            audit_path = service.audit.path
        with sqlite3.connect(audit_path) as db:
            # the alarm rules' records; the chain also holds the batch decisions of this run (the config
            # files loaded at start, the context that started B-9), asserted by their own tests
            trail = [(event, json.loads(body)) for event, body in
                     db.execute("SELECT event, body FROM audit_record ORDER BY seq").fetchall()
                     if event in _ALARM_RULE_EVENTS]
        kinds = [event for event, _ in trail]
        assert kinds == ["exception_opened", "exception_opened", "batch_held", "refused", "refused", "refused",
                         "refused", "batch_released", "exception_closed"]
        assert [b["reason_code"] for e, b in trail if e == "refused"] == [
            "role_not_allowed", "signer_not_caller", "signature_invalid", "signature_invalid"]
        [release] = [b for e, b in trail if e == "batch_released"]
        assert (release["actor_user_id"], release["batch_id"], release["auth_method"]) == (
            "bob", "B-9", "ed25519-signature")
