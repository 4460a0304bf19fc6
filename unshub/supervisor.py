"""Run a stack of ``uns`` services as child processes: start in order, stop in reverse.

``uns up`` and the docker-compose file run the very same ``uns <service>`` commands, so what the
native tests exercise is what a plant deploys. Children get SIGINT on shutdown (each service
turns it into a clean Sparkplug exit: NDEATH for the edge node, STATE offline for the host) and
SIGKILL only if they overstay ``stop_timeout``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from uns.config_checks import PortInUseError, port_in_use
from unshub.errors import HubError

__all__ = ["PortInUseError", "ServiceFailedError", "ServiceSpec", "Supervisor", "check_ports_free", "http_ok",
           "port_is_free"]


class ServiceFailedError(HubError, RuntimeError):
    """A child process exited or did not become ready."""


@dataclass
class ServiceSpec:
    name: str
    command: list[str]
    #: TCP ports on 127.0.0.1 that must have a listener before the service counts as ready (found by a
    #: bind attempt, never a connection: see _port_answers)
    ready_ports: list[int] = field(default_factory=list)
    #: extra readiness check run after the ports answer (e.g. an HTTP /readyz probe)
    ready_check: Callable[[], bool] | None = None
    ready_timeout: float = 60.0
    stop_timeout: float = 15.0
    env: dict[str, str] = field(default_factory=dict)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on ``host:port`` (the same test every service's config check makes)."""
    return not port_in_use(host, port)


def check_ports_free(ports: dict[int, str], host: str = "127.0.0.1") -> None:
    """Raise :class:`PortInUseError` naming every taken port and what it was meant for."""
    taken = [f"{port} ({purpose})" for port, purpose in sorted(ports.items()) if not port_is_free(port, host)]
    if taken:
        raise PortInUseError(
            "port(s) already in use on " + host + ": " + ", ".join(taken)
            + ". Stop whatever holds them, or choose other ports (see `uns up --help`)."
        )


def http_ok(url: str) -> bool:
    """A readiness probe: the URL answers 2xx within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - a loopback URL of ours
            return 200 <= response.status < 300
    except OSError:
        return False


def _port_answers(port: int, host: str = "127.0.0.1") -> bool:
    """Something listens on ``host:port``, found without connecting to it.

    A connect-and-close probe is a client that never speaks: the broker logged it as an ERROR
    ("No data to decode MQTT packet fixed header") and the WebSocket listener as a failed handshake
    with a traceback, on every start. A bind attempt is refused (EADDRINUSE) exactly when a
    listener holds the port, and the service never sees it."""
    return port_in_use(host, port)


class Supervisor:
    def __init__(self, log_dir: Path, on_event: Callable[[str, str], None] | None = None) -> None:
        self.log_dir = log_dir
        self.on_event = on_event or (lambda name, text: None)
        self.running: list[tuple[ServiceSpec, subprocess.Popen]] = []

    def start(self, spec: ServiceSpec) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{spec.name}.log", "ab")
        env = {**os.environ, **spec.env}
        self.on_event(spec.name, "starting")
        proc = subprocess.Popen(spec.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # our Ctrl-C is forwarded by us, in order
        log.close()
        self.running.append((spec, proc))
        deadline = time.monotonic() + spec.ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceFailedError(
                    f"{spec.name} exited with code {proc.returncode} while starting; "
                    f"see {self.log_dir / (spec.name + '.log')}"
                )
            if all(_port_answers(p) for p in spec.ready_ports) and (spec.ready_check is None or spec.ready_check()):
                self.on_event(spec.name, "ready")
                return proc
            time.sleep(0.1)
        raise ServiceFailedError(f"{spec.name} was not ready after {spec.ready_timeout:.0f}s; "
                                 f"see {self.log_dir / (spec.name + '.log')}")

    def failed(self) -> list[tuple[str, int]]:
        """Services that exited on their own (name, exit code)."""
        return [(spec.name, proc.returncode) for spec, proc in self.running if proc.poll() is not None]

    def stop_all(self) -> None:
        """Stop children in reverse start order: SIGINT, wait, then SIGKILL."""
        while self.running:
            spec, proc = self.running.pop()
            if proc.poll() is None:
                self.on_event(spec.name, "stopping")
                try:
                    os.kill(proc.pid, signal.SIGINT)
                    proc.wait(timeout=spec.stop_timeout)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
                except ProcessLookupError:
                    pass
            self.on_event(spec.name, f"stopped (exit {proc.returncode})")
