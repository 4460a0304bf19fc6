"""Loopback-only networking helpers for tests: free ports and waiting for a listener."""

from __future__ import annotations

import os
import random
import socket
import time

#: below Linux's ephemeral range (32768-60999): a port handed out here is never taken meanwhile by
#: an outgoing connection of another process, which is what made a server's bind fail now and then
#: ("address already in use" in a full run) when the port came from bind(0) in that same range
_FIRST, _LAST = 20_000, 32_767
#: each xdist worker draws from its own slice, so two workers never hand out the same port
_SLICE = 3_000
_given: set[int] = set()
#: its own generator: a test that seeds the module-level one must not make the draws repeat
_draw = random.Random()


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = _FIRST + (index * _SLICE) % (_LAST - _FIRST - _SLICE)
    return range(start, start + _SLICE)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, not handed out before by this
    process, outside the kernel's ephemeral range and in this worker's own slice."""
    candidates = _slice()
    for _ in range(200):
        port = _draw.choice(candidates)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        if len(_given) > _SLICE // 2:  # a long session: start over; the early ones are closed by now
            _given.clear()
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # the slice is busy: any free port
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_for_port_free(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    """Wait until ``port`` can be bound again: a process killed with SIGKILL keeps its listening
    socket until the kernel has reaped it, and a broker restarted on the same port in that window
    fails to bind and exits while the dying one still answers ``wait_for_port``."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{host}:{port} is still taken after {timeout}s") from None
        time.sleep(0.05)
