"""Fault rig on top of :mod:`tests.e2e.stack`: stop and start one service of a running stack by PID,
read the retained UNS tree as a fresh MQTT client sees it, and read the adapter's readiness.

Why a restart keeps the service's place in the supervisor's list: the stack stops in reverse
start order (edge first, broker last) so the edge's NDEATH and the host's STATE offline still
reach a broker; a restarted broker appended at the end would be stopped first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

import paho.mqtt.client as paho

from tests.e2e.stack import Stack
from unshub.supervisor import ServiceSpec


def _entry(stack: Stack, name: str) -> tuple[int, ServiceSpec, subprocess.Popen]:
    for index, (spec, proc) in enumerate(stack.supervisor.running):
        if spec.name == name:
            return index, spec, proc
    raise KeyError(f"no service {name!r} in the stack")


def stop_service(stack: Stack, name: str, sig: int = signal.SIGTERM) -> None:
    """Stop one service by its PID (SIGTERM/SIGINT: a clean stop; SIGKILL: a crash) and wait for it.

    A service that overstays its ``stop_timeout`` after a clean-stop signal is killed (nothing
    leaks) and the test fails: a hang on shutdown is a defect, not something to paper over."""
    _, spec, proc = _entry(stack, name)
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=spec.stop_timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        raise AssertionError(f"{name} (pid {proc.pid}) did not stop within {spec.stop_timeout}s of "
                             f"{signal.Signals(sig).name}") from None


def start_service(stack: Stack, name: str, *, wait: bool = True) -> None:
    """Start a stopped service again with its original command, in its original place.

    ``wait=False`` does not wait for it to be ready (e.g. an edge node started while its broker
    is down); the supervisor's list keeps the original spec, ready checks included."""
    index, spec, proc = _entry(stack, name)
    assert proc.poll() is not None, f"{name} is still running (pid {proc.pid})"
    supervisor = stack.supervisor
    supervisor.start(spec if wait else dataclasses.replace(spec, ready_ports=[], ready_check=None))  # appended
    supervisor.running[index] = (spec, supervisor.running.pop()[1])


def restart(stack: Stack, name: str, *, down_s: float = 0.0, sig: int = signal.SIGTERM) -> None:
    """Stop, stay down ``down_s`` seconds, start again."""
    stop_service(stack, name, sig)
    time.sleep(down_s)
    start_service(stack, name)


@dataclass(frozen=True)
class Ready:
    status: int
    failing: frozenset[str]
    detail: str


def adapter_ready(stack: Stack) -> Ready:
    try:
        with urllib.request.urlopen(f"{stack.http}/readyz", timeout=5) as response:  # noqa: S310 - loopback
            body, status = json.loads(response.read()), response.status
    except urllib.error.HTTPError as exc:
        body, status = json.loads(exc.read()), exc.code
    return Ready(status, frozenset(body.get("failing", [])), body.get("detail", ""))


def adapter_metrics(stack: Stack) -> str:
    with urllib.request.urlopen(f"{stack.http}/metrics", timeout=5) as response:  # noqa: S310 - loopback
        return response.read().decode()


def retained_tree(port: int, root: str, settle_s: float = 1.0, timeout: float = 10.0) -> dict[str, dict]:
    """Every retained message under ``root/#`` as an anonymous MQTT 3.1.1 client sees it on subscribe
    (the broker sets the retain flag only on those), topic -> decoded JSON payload.

    Collects until no new retained message came for ``settle_s`` seconds."""
    lock = threading.Lock()
    tree: dict[str, dict] = {}
    last = [time.monotonic()]
    subscribed = threading.Event()

    def on_connect(client: paho.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        client.subscribe(f"{root}/#", qos=1)

    def on_subscribe(*_: object) -> None:
        last[0] = time.monotonic()
        subscribed.set()

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        if not message.retain:
            return
        with lock:
            tree[message.topic] = json.loads(message.payload) if message.payload else {}
            last[0] = time.monotonic()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"retained-{uuid.uuid4().hex[:8]}",
                         protocol=paho.MQTTv311)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise TimeoutError(f"no SUBACK from the broker on port {port}")
        deadline = time.monotonic() + timeout
        while time.monotonic() - last[0] < settle_s and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        return dict(tree)
