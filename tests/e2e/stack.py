"""The whole stack as real processes for end-to-end tests: broker, simulator, adapter, edge.

Configs come from `uns init` (the generator `uns up` and docker-compose use) on free loopback
ports; services are the very `uns <service> run` commands, started and stopped by
:class:`unshub.supervisor.Supervisor` (reverse order, SIGINT, by PID).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.mosquitto import mosquitto_binary
from tests.support.net import free_port
from tests.support.procs import uns_command
from unshub.supervisor import ServiceSpec, Supervisor, http_ok


@dataclass
class Stack:
    folder: Path
    mqtt_port: int
    opcua_port: int
    http_port: int
    tokens: dict[str, str]
    supervisor: Supervisor
    line: str
    #: the edge node's /metrics, /healthz, /readyz
    edge_http_port: int = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def opcua(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.opcua_port}"

    def api(self, method: str, path: str, body: Any = None, role: str = "operator") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.http}{path}", data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.tokens[role]}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached after {timeout}s")


def fast_confirmations(adapter: dict) -> None:
    """Adapter overrides (``running_stack(adapter_overrides=...)``) for tests that end a batch and
    read its confirmation: a 1 s grace, no partials, the outbox planned every 0.5 s."""
    adapter["mes"]["confirmation_grace_s"] = 1
    adapter["mes"]["partial_interval_s"] = None
    adapter["confirmations_every_s"] = 0.5


def wait_final_confirmation(stack: Stack, batch_id: str, timeout: float = 30.0) -> dict:
    """The batch's final confirmation as the adapter's REST API lists it, once there (a batch has
    exactly one final; partials and late supplements are ignored here)."""
    def final() -> dict | None:
        _, rows = stack.api("GET", "/api/confirmations", role="viewer")
        finals = [r["confirmation"] for r in rows or [] if r["batch_id"] == batch_id and r["kind"] == "final"]
        return finals[0] if finals else None

    return wait_until(final, timeout, f"final confirmation of {batch_id}")


def uns_init(folder: Path, ports: dict[str, int], *, alarms: bool = False) -> None:
    """`uns init` into ``folder`` with the given ports (keys mqtt, ws, opcua, http, edge_http, broker_http);
    ``alarms``: `uns init --alarms` (every simulator condition subscribed and acknowledgeable).

    The real command, run in this process through its Typer app: a subprocess cost about a second
    of CPU per stack in imports, on a CPU-bound suite (the tutorial and deploy tests still run the
    `uns` console script itself)."""
    from typer.testing import CliRunner

    from unshub.cli.main import app

    result = CliRunner().invoke(app, ["init", "--out", str(folder), "--mqtt-port", str(ports["mqtt"]),
                                      "--ws-port", str(ports["ws"]), "--opcua-port", str(ports["opcua"]),
                                      "--http-port", str(ports["http"]),
                                      "--edge-metrics-port", str(ports["edge_http"]),
                                      "--broker-metrics-port", str(ports["broker_http"]),
                                      *(["--alarms"] if alarms else [])])
    assert result.exit_code == 0, (result.output, result.exception)


@contextmanager
def running_stack(workdir: Path, *, adapter_overrides: Callable[[dict], None] | None = None,
                  edge_overrides: Callable[[dict], None] | None = None, broker: str = "embedded",
                  alarms: bool = False) -> Iterator[Stack]:
    """``broker="mosquitto"`` runs Debian's Mosquitto with the config `uns init` generated for it
    (same users and ACL) instead of ``uns broker run``: nothing else changes, which is the point."""
    if broker == "mosquitto":
        # Mosquitto started as root drops to the `mosquitto` user, which cannot enter pytest's
        # 0700 tmp folders: keep the config in a folder it can traverse
        workdir = Path(tempfile.mkdtemp(prefix="uns-stack-"))
        workdir.chmod(0o755)
    folder = workdir / "config"
    ports = {name: free_port() for name in ("mqtt", "ws", "opcua", "http", "edge_http", "broker_http")}
    uns_init(folder, ports, alarms=alarms)
    for name, override in (("adapter.yaml", adapter_overrides), ("plant.yaml", edge_overrides)):
        if override is not None:  # a test's change to the generated config of one service
            config_file = folder / name
            config = yaml.safe_load(config_file.read_text())
            override(config)
            config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    summary = yaml.safe_load((folder / "stack.yaml").read_text())
    supervisor = Supervisor(workdir / "logs")
    stack = Stack(folder, ports["mqtt"], ports["opcua"], ports["http"], summary["tokens"], supervisor,
                  summary["line"], ports["edge_http"])
    try:
        if broker == "mosquitto":
            binary = mosquitto_binary()
            assert binary, "mosquitto is missing: scripts/test installs it"
            broker_spec = ServiceSpec("broker", [binary, "-c", str(folder / "mosquitto.conf")],
                                      ready_ports=[ports["mqtt"]])
        else:
            broker_spec = ServiceSpec("broker", uns_command("broker", "run", "--config", str(folder / "broker.yaml")),
                                      ready_ports=[ports["mqtt"]])
        # two stages whose members start at once: the broker and the simulator need nothing; the
        # adapter and the edge need the broker (the edge waits for the adapter's STATE by itself)
        supervisor.start_together([
            broker_spec,
            ServiceSpec("simulator", uns_command("sim", "run", "--host", "127.0.0.1", "--port",
                                                 str(ports["opcua"]), "--seed", "7"),
                        ready_ports=[ports["opcua"]]),
        ])
        supervisor.start_together([
            ServiceSpec("adapter", uns_command("adapter", "run", "--config", str(folder / "adapter.yaml")),
                        ready_ports=[ports["http"]], ready_check=lambda: http_ok(f"{stack.http}/readyz")),
            ServiceSpec("edge", uns_command("edge", "run", "--config", str(folder / "plant.yaml")),
                        ready_ports=[ports["http"]],  # its readiness is asked of the adapter's API
                        ready_check=lambda: any(line.get("nodes_online") for line in
                                                (stack.api("GET", "/api/lines", role="viewer")[1] or [])),
                        ready_timeout=60),
        ])
        yield stack
    finally:
        supervisor.stop_all()
        if broker == "mosquitto":
            shutil.rmtree(workdir, ignore_errors=True)


def stop_service(stack: Stack, name: str) -> None:
    """Stop one of the stack's services (an injected outage): SIGINT to the PID the supervisor
    started, then wait; the rest keeps running and ``stop_all`` skips the stopped one."""
    for spec, proc in stack.supervisor.running:
        if spec.name == name and proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=spec.stop_timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            return
    raise AssertionError(f"no running service {name!r} in the stack")


async def simulator_truth(endpoint: str) -> tuple[int, int]:
    """The simulator's own good and reject totals (``Simulation/Truth``): what counts must equal."""
    from asyncua import Client, ua

    from simulator.config import NAMESPACE_URI

    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        good = await client.get_node(ua.NodeId("Simulation/Truth/TotalGood", ns)).read_value()
        reject = await client.get_node(ua.NodeId("Simulation/Truth/TotalReject", ns)).read_value()
        return int(good), int(reject)


def edge_get(stack: Stack, path: str) -> tuple[int, str]:
    """GET the edge node's own HTTP endpoint (/readyz, /metrics): status and body, errors included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.edge_http_port}{path}", timeout=5) as r:  # noqa: S310
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def prom_metric(text: str, name: str) -> float:
    """One unlabelled sample of a Prometheus text exposition."""
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name} ")]
    assert values, f"{name} not in /metrics"
    return values[0]


def good_count_ids(stack: Stack) -> tuple[str, dict[str, Any]]:
    """The line-level GoodCount tag's UNS topic and Sparkplug ids, from the adapter's live tags."""
    def found() -> tuple[str, dict[str, Any]] | None:
        status, tags = stack.api("GET", "/api/tags?" + urllib.parse.urlencode({"line": stack.line}), role="viewer")
        assert status == 200, tags
        for t in tags:
            if t["name"] == "GoodCount" and t["device_id"] is None:
                return t["topic"], {"group": t["group_id"], "edge": t["edge_node_id"], "metric": "GoodCount"}
        return None
    result: tuple[str, dict[str, Any]] = wait_until(found, 60, f"GoodCount of {stack.line} on /api/tags")
    return result
