"""Helpers for the edge node's wire tests: read what the sniffer saw, play the host, run the demo."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_node.sparkplug_config import EdgeSparkplugConfig
from tests.support.procs import REPO, stop_process
from tests.support.sniffer import Captured, Sniffer
from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.state import StatePayload


def payload(message: Captured) -> pb.Payload:
    return pb.Payload.FromString(message.payload)


def kind(message: Captured) -> str:
    parts = message.topic.split("/")
    return parts[2] if len(parts) >= 4 and parts[0] == "spBv1.0" else ""


def edge_messages(sniffer: Sniffer, group: str = "G", edge: str = "E") -> list[Captured]:
    """Every message of one edge node, in arrival order (STATE and other nodes left out)."""
    def mine(m: Captured) -> bool:
        parts = m.topic.split("/")
        return len(parts) >= 4 and parts[1] == group and parts[3] == edge and parts[2] not in ("NCMD", "DCMD")
    return sniffer.snapshot(mine)


def bd_seq(message: Captured) -> int:
    for metric in payload(message).metrics:
        if metric.name == "bdSeq":
            return metric.long_value
    raise AssertionError(f"{message.topic} has no bdSeq")


@dataclass(frozen=True)
class Change:
    device: str | None
    name: str
    value: object
    historical: bool


def changes(messages: list[Captured]) -> list[Change]:
    """Every metric value in NDATA/DDATA, names resolved through the births seen before it."""
    names: dict[int, tuple[str | None, str]] = {}
    out: list[Change] = []
    for message in messages:
        k = kind(message)
        parts = message.topic.split("/")
        device = parts[4] if len(parts) == 5 else None
        body = payload(message)
        if k in ("NBIRTH", "DBIRTH"):
            for metric in body.metrics:
                if metric.HasField("alias"):
                    names[metric.alias] = (device, metric.name)
        elif k in ("NDATA", "DDATA"):
            for metric in body.metrics:
                owner, name = names[metric.alias]
                assert owner == device, f"alias {metric.alias} of {owner} used in {message.topic}"
                value = (metric.long_value if metric.HasField("long_value")
                         else getattr(metric, metric.WhichOneof("value") or "is_null"))
                out.append(Change(device, name, value, metric.is_historical))
    return out


def assert_exactly_once(seen: list[Change], submitted: list[tuple[str | None, str, int]], *,
                        resent_after_host_loss: int = 0) -> None:
    """Every submitted change arrived, none twice; except, after a primary host went offline, the
    ``resent_after_host_loss`` values the edge confirmed just before it (edge rule 15): each of
    those arrived exactly twice, live and then once more as historical for the host's next run."""
    keys = Counter((c.device, c.name, c.value) for c in seen)
    historical = Counter((c.device, c.name, c.value) for c in seen if c.historical)
    resent = {k for k, n in keys.items() if n == 2 and historical[k] == 1}
    duplicates = {k: n for k, n in keys.items() if n > 1 and k not in resent}
    missing = set(submitted) - set(keys)
    extra = set(keys) - set(submitted)
    assert not duplicates, f"{len(duplicates)} changes arrived more than once, e.g. {list(duplicates.items())[:5]}"
    assert len(resent) == resent_after_host_loss, (
        f"{len(resent)} changes arrived live and again as historical; the edge re-sent {resent_after_host_loss} "
        f"after the host loss, e.g. {sorted(resent, key=str)[:5]}")
    assert not missing, f"{len(missing)} of {len(submitted)} changes never arrived, e.g. {sorted(missing, key=str)[:5]}"
    assert not extra, f"unexpected changes {list(extra)[:5]}"


def fast_config(brokers: list[str], **fields: object) -> EdgeSparkplugConfig:
    base: dict[str, object] = {
        "brokers": brokers, "group_id": "G", "edge_node_id": "E", "publish_interval_ms": 50,
        "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "reconnect_jitter": 0.2, "keepalive_s": 5,
        "rebirth_throttle_s": 1.0, "store": {"synchronous": "NORMAL"},
    }
    base.update(fields)
    return EdgeSparkplugConfig.model_validate(base)


class Host:
    """A stand-in primary host / command sender (paho, MQTT 5)."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"host-{os.getpid()}-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
        self.client.connect(host, port)
        self.client.loop_start()

    def state(self, host_id: str, online: bool, timestamp: int) -> None:
        info = self.client.publish(f"spBv1.0/STATE/{host_id}",
                                   StatePayload(online=online, timestamp=timestamp).to_bytes(), qos=1, retain=True)
        info.wait_for_publish(5)

    def publish(self, topic: str, data: bytes) -> None:
        self.client.publish(topic, data, qos=0).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def sniffed(sniffer: Sniffer, predicate: Callable[[Captured], bool], *, count: int = 1,
                  timeout: float = 10.0) -> list[Captured]:
    """``Sniffer.wait_for`` without blocking the event loop the edge client runs on."""
    return await asyncio.to_thread(sniffer.wait_for, predicate, count=count, timeout=timeout)


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@contextmanager
def demo(tmp_path: Path, *args: str, name: str = "demo") -> Iterator[tuple[subprocess.Popen, Path]]:
    """``python -m edge_node.demo`` as our own subprocess (stopped by PID); yields (process, progress file)."""
    progress = tmp_path / f"{name}-progress.json"
    progress.unlink(missing_ok=True)
    log = open(tmp_path / f"{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "edge_node.demo", "--progress", str(progress), *args],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        yield proc, progress
    finally:
        stop_process(proc)
        log.close()


def read_progress(progress: Path) -> dict[str, object]:
    try:
        return json.loads(progress.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
