"""What the UNS shows against what the plant (the simulator) really holds, for the fault suite.

``UnsView`` keeps the latest message per topic on ``<enterprise>/#`` (retained and live), read by a
real MQTT subscriber (the embedded broker's read-only demo access). ``server_values`` reads every
tag of the edge's tag map straight from the simulator over OPC UA, so a test compares the UNS
with the plant, tag by tag, without going through the edge.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from asyncua import Client, ua

from simulator.config import NAMESPACE_URI
from tests.e2e.stack import Stack, wait_until
from tests.support.procs import uns_command
from tests.support.sniffer import Sniffer


@dataclass(frozen=True)
class Tag:
    path: str  # simulator path, e.g. Line1/Filler/Temperature
    cell: str | None
    metric: str

    def topic(self, line: str) -> str:
        return f"{line}/{self.cell}/{self.metric}" if self.cell else f"{line}/{self.metric}"


def plant_tags(stack: Stack) -> list[Tag]:
    """The edge's tag map as `uns init` generated it."""
    plant = yaml.safe_load((stack.folder / "plant.yaml").read_text())
    return [Tag(t["node_id"].split(";s=", 1)[1], t.get("cell"), t["metric"]) for t in plant["tags"]]


class UnsView(Sniffer):
    def __init__(self, stack: Stack) -> None:
        enterprise = stack.line.split("/")[0]
        super().__init__("127.0.0.1", stack.mqtt_port, (f"{enterprise}/#",), mqtt5=False)

    def latest(self) -> dict[str, dict[str, Any]]:
        """The newest payload of every tag topic (``_meta`` and other reserved topics left out)."""
        out: dict[str, dict[str, Any]] = {}
        for message in self.snapshot():
            if "/_" in message.topic:
                continue
            out[message.topic] = json.loads(message.payload)
        return out

    def history(self, topic: str) -> list[dict[str, Any]]:
        """Every payload published on ``topic`` so far, oldest first."""
        return [json.loads(m.payload) for m in self.snapshot() if m.topic == topic]


async def _read(endpoint: str, paths: list[str]) -> dict[str, Any]:
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        nodes = [client.get_node(ua.NodeId(path, ns)) for path in paths]
        values = await client.read_values(nodes)
        return dict(zip(paths, values, strict=True))


def server_values(stack: Stack, paths: list[str]) -> dict[str, Any]:
    """The simulator's current values of ``paths``, read directly over OPC UA."""
    return asyncio.run(_read(stack.opcua, paths))


def truth(stack: Stack) -> tuple[int, int]:
    """The simulator's own cumulative good / reject totals (``Simulation/Truth``)."""
    values = server_values(stack, ["Simulation/Truth/TotalGood", "Simulation/Truth/TotalReject"])
    return int(values["Simulation/Truth/TotalGood"]), int(values["Simulation/Truth/TotalReject"])


def mismatches(stack: Stack, view: UnsView, tags: list[Tag]) -> list[str]:
    """Every tag whose UNS value is not GOOD with the server's current value (empty = the truth)."""
    try:
        server = server_values(stack, [t.path for t in tags])
    except (OSError, TimeoutError, ua.UaError) as exc:  # the server is still down
        return [f"the simulator does not answer: {exc!r}"]
    shown = view.latest()
    wrong: list[str] = []
    for tag in tags:
        payload = shown.get(tag.topic(stack.line))
        expected = server[tag.path]
        if payload is None:
            wrong.append(f"{tag.path}: nothing on the UNS")
        elif payload.get("quality") != "GOOD" or payload.get("value") != expected or "reason" in payload:
            wrong.append(f"{tag.path}: UNS {payload.get('value')!r} {payload.get('quality')} "
                         f"{payload.get('reason', '')}, server {expected!r}")
    return wrong


def wait_truth(stack: Stack, view: UnsView, tags: list[Tag], timeout: float) -> None:
    """Every tag GOOD with the server's value within ``timeout`` (the last mismatch list on failure)."""
    last: list[list[str]] = [[]]

    def matches() -> bool:
        last[0] = mismatches(stack, view, tags)
        return not last[0]
    try:
        wait_until(matches, timeout, "every UNS tag GOOD with the server's value", interval=0.5)
    except TimeoutError:
        raise AssertionError(f"after {timeout} s: {last[0]}") from None


def wait_payload(view: UnsView, topic: str, check: Callable[[dict[str, Any]], bool], timeout: float,
                 what: str) -> dict[str, Any]:
    """The first latest payload of ``topic`` that passes ``check`` (the last one seen on failure)."""
    seen: list[Any] = [None]

    def passes() -> dict[str, Any] | None:
        seen[0] = view.latest().get(topic)
        return seen[0] if seen[0] is not None and check(seen[0]) else None
    try:
        return wait_until(passes, timeout, what, interval=0.1)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout} s; last payload {seen[0]}") from None


def wait_published(view: UnsView, topic: str, after: int, check: Callable[[dict[str, Any]], bool], timeout: float,
                   what: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The first payload published on ``topic`` after its first ``after`` ones that passes ``check``,
    and the one before it: a short episode is found even when it is already over."""
    def found() -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        history = view.history(topic)
        for i in range(after, len(history)):
            if check(history[i]):
                return history[i], (history[i - 1] if i else None)
        return None
    try:
        return wait_until(found, timeout, what, interval=0.1)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout} s; published {view.history(topic)[after:]}") from None


def sim_fault(stack: Stack, *args: str) -> str:
    """``uns sim fault --endpoint <the stack's simulator> <args>``: the real CLI, as an operator runs it."""
    result = subprocess.run(uns_command("sim", "fault", "--endpoint", stack.opcua, *args),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def tag_settings(settings: dict[str, dict[str, Any]]) -> Callable[[dict], None]:
    """An ``edge_overrides`` for :func:`running_stack`: per-tag settings by simulator path."""
    def apply(plant: dict) -> None:
        for tag in plant["tags"]:
            tag.update(settings.get(tag["node_id"].split(";s=", 1)[1], {}))
    return apply
