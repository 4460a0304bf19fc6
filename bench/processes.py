"""What every benchmark that starts processes needs: a free loopback port, waiting until something
listens on it, stopping a process it started, by PID (SIGKILL if it does not exit in time), and a
paho subscriber in a thread of its own.

Benchmarks do not import the test suite's helpers (``tests/support``): they are run by hand from
a checkout where the tests need not be importable, so they keep this small copy of their own.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    """Until 127.0.0.1:``port`` accepts a connection; fails early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[:3]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def paho_subscriber(port: int, topic: str, on_message: Callable[..., None], client_id: str) -> Any:
    """A paho client on 127.0.0.1:``port`` subscribed (QoS 1) to ``topic``, its loop running in a
    thread; returns once the SUBACK came. Stop it with ``loop_stop()`` and ``disconnect()``."""
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.on_message = on_message
    subscribed = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, 1)
    client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    if not subscribed.wait(10):
        raise TimeoutError(f"subscriber did not subscribe to {topic}")
    return client
