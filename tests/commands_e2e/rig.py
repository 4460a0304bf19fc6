"""A whole command path on loopback: simulator (asyncua) → edge app (+ executor) → Mosquitto → requester.

Everything real: the OPC UA server is the simulator in-process on a free port, the edge node is
:class:`edge_node.app.EdgeNodeApp` with a ``commands:`` section, results come over the broker,
and values are proven with a separate asyncua Client reading the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from asyncua import Client, ua

from edge_node.app import EdgeNodeApp
from edge_node.config import EdgeConfig
from simulator.catalog import tag_catalog
from simulator.config import NAMESPACE_URI, SimulatorConfig
from simulator.server import SimulatedLineServer
from tests.support.net import free_port
from uns.commands.model import SignatureMeaning
from uns.commands.signing import generate_private_key, public_key_text
from unshub.command_client import CommandClient, Signer
from unshub.simulated_line import simulator_config_dict

GROUP, EDGE = "acme:plant1", "packaging:Line1"
NS = f"nsu={NAMESPACE_URI};s="

ALLOWLIST = f"""\
version: "e2e-1"
lines:
  - group_id: "{GROUP}"
    edge_node_id: "{EDGE}"
    state: {{metric: State}}
    metrics:
      - device_id: Filler
        metric: SpeedSetpoint
        datatype: Double
        min: 0
        max: 600
        allowed_states: [Idle, Execute, Held, Stopped, Complete]
        tolerance: 0.001
        readback_timeout_s: 2
        write: {{node_id: "{NS}Line1/Filler/SpeedSetpoint"}}
      - device_id: Capper
        metric: SpeedSetpoint
        datatype: Double
        min: 0
        max: 600
        rate_limit: {{max_writes: 2, per_s: 60}}
        write: {{node_id: "{NS}Line1/Capper/SpeedSetpoint"}}
      - device_id: Labeler
        metric: SpeedSetpoint
        datatype: Double
        min: 0
        max: 600
        readback_timeout_s: 0.5
        description: deliberately read back from StateCode, so the read-back never matches
        write: {{node_id: "{NS}Line1/Labeler/SpeedSetpoint", readback_node_id: "{NS}Line1/Labeler/StateCode"}}
      - metric: Recipe
        datatype: String
        allowed_states: [Idle, Stopped, Complete]
        critical: true
        write: {{node_id: "{NS}Line1/Recipe"}}
      - metric: StartBatch
        call:
          object_node_id: "{NS}Line1"
          method_node_id: "{NS}Line1/StartBatch"
          args:
            - {{name: Order, datatype: String}}
            - {{name: Product, datatype: String}}
            - {{name: Quantity, datatype: UInt32, min: 0, max: 100000}}
"""

NAMES = {"alice": "Alice Archer", "bob": "Bob Baker"}


@dataclass
class Rig:
    sim: SimulatedLineServer
    app: EdgeNodeApp
    broker_url: str
    data_dir: Path
    audit_db: Path
    keys: dict[str, Any]
    opcua: Client

    def signer(self, user: str, meaning: SignatureMeaning = SignatureMeaning.AUTHORED) -> Signer:
        return Signer(user, NAMES[user], self.keys[user], meaning)

    async def read(self, path: str) -> Any:
        """The value on the OPC UA server itself, read by an independent client."""
        node = self.opcua.get_node(ua.NodeId(path, self.sim.namespace_index))
        return await node.read_value()

    async def reconnect_opcua(self) -> None:
        """A fresh reading client (after a simulator restart the old session is gone)."""
        with contextlib.suppress(Exception):
            await self.opcua.disconnect()
        self.opcua = Client(self.sim.endpoint)
        await self.opcua.connect()

    def audit_events(self, command_id: Any) -> list[dict[str, Any]]:
        """The edge's audit records of one command, in chain order (read-only; the edge is the writer)."""
        db = sqlite3.connect(f"file:{self.audit_db}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT body FROM audit_record WHERE command_id=? ORDER BY seq",
                              (str(command_id),)).fetchall()
        finally:
            db.close()
        return [json.loads(body) for (body,) in rows]

    def describe(self) -> str:
        """What the edge's command side is doing, for a wait that fails: which step stalled."""
        commands = self.app.commands
        executor = commands.executor if commands is not None else None
        parts = [f"edge session: {self.app.client.stats}"]
        if executor is not None:
            parts += [f"executor: {executor.stats.as_dict()}", f"intake backlog + queued: {executor.pending()}",
                      "writers connected: " + ", ".join(f"{n}={w.connected.is_set()}" for n, w in
                                                         executor.writers.items())]
        return "\n".join(parts)

    async def submit(self, client: CommandClient, device: str | None, metric: str, value: Any, *,
                     signers: list[Signer] | None = None, validity_s: float | None = None,
                     timeout: float = 10.0) -> Any:
        return await client.submit(group_id=GROUP, edge_node_id=EDGE, device_id=device, metric=metric, value=value,
                                   requested_by=(signers or [self.signer("alice")])[0].user_id,
                                   reason="e2e test", signers=signers or [self.signer("alice")],
                                   validity_s=validity_s, timeout=timeout)


async def wait_for(predicate: Any, timeout: float = 15.0, *, rig: Rig | None = None,
                   watch: Sequence[asyncio.Task[Any]] = ()) -> None:
    """Poll ``predicate`` every 20 ms until it is true; fail the test after ``timeout`` seconds.

    ``watch``: submissions that must still be waiting; if one ends first (answered early, or a
    client error) the wait fails at once and says how. ``rig``: its :meth:`Rig.describe` goes
    into the failure, so a timing failure in a loaded CI run says which step stalled.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        ended = [t for t in watch if t.done()]
        if ended or loop.time() > deadline:
            why = "condition not met in time" if not ended else "a watched submission ended first"
            ends = [f"{t.get_name()}: {t.exception()!r}" if t.exception() else f"{t.get_name()}: {t.result()!r}"
                    for t in ended]
            raise AssertionError("\n".join([why, *ends] + ([rig.describe()] if rig is not None else [])))
        await asyncio.sleep(0.02)


def write_rules(tmp: Path, keys: dict[str, Any], rules: str = ALLOWLIST) -> tuple[Path, Path]:
    allowlist = tmp / "allowlist.yaml"
    allowlist.write_text(rules)
    users = tmp / "users.yaml"
    users.write_text(yaml.safe_dump({"users": {
        u: {"full_name": NAMES[u], "public_key": public_key_text(k.public_key())} for u, k in keys.items()}}))
    return allowlist, users


def edge_config(sim: SimulatedLineServer, broker_url: str, data_dir: Path, allowlist: Path, users: Path,
                *, commands: bool = True, opcua: dict[str, Any] | None = None,
                extra_tags: list[dict[str, Any]] | None = None) -> EdgeConfig:
    tags = [t.model_dump() for t in tag_catalog(sim.config)]
    raw = simulator_config_dict(sim.endpoint, broker_url, data_dir, tags,
                                sparkplug={"publish_interval_ms": 20, "reconnect_min_s": 0.1, "rebirth_throttle_s": 0.2,
                                           "reconnect_max_s": 0.5})
    raw["opcua"][0].update(keepalive_interval_s=0.2, reconnect_min_s=0.1, reconnect_max_s=0.5,
                           publishing_interval_ms=50, sampling_interval_ms=0, timeout_s=2.0, **(opcua or {}))
    raw["tags"] += extra_tags or []
    if commands:
        raw["commands"] = {"allowlist": str(allowlist), "users": str(users)}
    return EdgeConfig.model_validate(raw)


@contextlib.asynccontextmanager
async def running_rig(tmp: Path, broker_url: str, *, commands: bool = True,
                      sim_config: dict[str, Any] | None = None, rules: str = ALLOWLIST,
                      edge_opcua: dict[str, Any] | None = None,
                      extra_tags: list[dict[str, Any]] | None = None) -> AsyncIterator[Rig]:
    """``rig.app`` may be replaced inside (an edge restart); whatever app is there at the end is stopped."""
    keys = {u: generate_private_key() for u in NAMES}
    allowlist, users = write_rules(tmp, keys, rules)
    sim = SimulatedLineServer(SimulatorConfig(port=free_port(), tick_s=0.1, **(sim_config or {})))
    await sim.start()
    data_dir = tmp / "edge"
    app = EdgeNodeApp(edge_config(sim, broker_url, data_dir, allowlist, users, commands=commands, opcua=edge_opcua,
                                  extra_tags=extra_tags))
    opcua = Client(sim.endpoint)
    rig: Rig | None = None
    try:
        await app.start()
        await app.wait_connected(20)
        assert app.commands is not None
        await app.commands.executor.wait_ready(20)
        await app.client.wait_birthed(20)
        await opcua.connect()
        rig = Rig(sim, app, broker_url, data_dir, data_dir / "audit" / "commands.db", keys, opcua)
        yield rig
    finally:
        # the reading client is ours, not the product's: its goodbye may not hold up the edge's stop
        with contextlib.suppress(Exception):
            await asyncio.wait_for((rig.opcua if rig is not None else opcua).disconnect(), 10)
        await (rig.app if rig is not None else app).stop()
        await sim.stop()
