"""Run a stack of ``uns`` services as child processes: start in order, keep them running, stop in reverse.

``uns up`` and the docker-compose file run the very same ``uns <service>`` commands, so what the
native tests exercise is what a plant deploys. Children get SIGINT on shutdown (each service
turns it into a clean Sparkplug exit: NDEATH for the edge node, STATE offline for the host) and
SIGKILL only if they overstay ``stop_timeout``.

This is the one home of the services' lifecycle (:meth:`Supervisor.watch`): once the stack is
up, a service that ends without being asked to (a crash, a kill, even exit code 0) is started
again after a growing delay (:class:`RestartPolicy`: 1 s, 2 s, 4 s ... at most 30 s), and each
end is reported with its exit code and the last lines of the service's log. A service that ends
``limit`` times within ``window_s`` is not restarted again: :meth:`watch` returns why, and ``uns up``
stops the stack and exits non-zero (a service that cannot stay up is a fault to fix, not to hide).
Each child's PID is in ``<run_dir>/<name>.pid`` while it runs (and printed at its start), so an
operator or a test can signal one service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from uns.config_checks import PortInUseError, port_in_use
from unshub.errors import HubError

__all__ = ["PortInUseError", "RestartPolicy", "ServiceFailedError", "ServiceSpec", "Supervisor", "check_ports_free",
           "http_ok", "port_is_free"]


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


@dataclass(frozen=True)
class RestartPolicy:
    """When a service that ended on its own is started again, and when the supervisor gives up."""

    #: this many ends within ``window_s`` and the service is not started again
    limit: int = 5
    window_s: float = 300.0
    #: wait before the first restart; doubled for each further end within the window
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay_s(self, ends: list[float], now: float) -> float | None:
        """Seconds to wait before starting a service whose ends (monotonic times, the latest
        included) are ``ends``; None: give up."""
        recent = [t for t in ends if now - t <= self.window_s]
        if len(recent) >= self.limit:
            return None
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, len(recent) - 1))


def exit_text(code: int | None) -> str:
    """``exit code 2``, or ``exit code -9 (SIGKILL)`` for a child ended by a signal."""
    if code is not None and code < 0:
        try:
            return f"exit code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exit code {code}"


def log_tail(path: Path, lines: int = 5) -> list[str]:
    """The last ``lines`` lines of a service's log (what an operator reads first after a crash)."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


class Supervisor:
    def __init__(self, log_dir: Path, on_event: Callable[[str, str], None] | None = None,
                 run_dir: Path | None = None) -> None:
        self.log_dir = log_dir
        self.run_dir = run_dir or log_dir
        self.on_event = on_event or (lambda name, text: None)
        self.running: list[tuple[ServiceSpec, subprocess.Popen]] = []
        self._ends: dict[str, list[float]] = {}
        self._restart_at: dict[str, float] = {}
        #: restarted services not yet ready, with their deadline: a restart is checked like a start
        self._readying: dict[str, float] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _spawn(self, spec: ServiceSpec) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path(spec.name), "ab")
        env = {**os.environ, **spec.env}
        proc = subprocess.Popen(spec.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # our Ctrl-C is forwarded by us, in order
        log.close()
        self.pid_path(spec.name).write_text(f"{proc.pid}\n", encoding="utf-8")
        return proc

    def start(self, spec: ServiceSpec) -> subprocess.Popen:
        """Start a service and wait until it is ready; :class:`ServiceFailedError` if it ends first."""
        return self.start_together([spec])[0]

    def start_together(self, specs: list[ServiceSpec]) -> list[subprocess.Popen]:
        """Start services that do not need each other (e.g. the broker and the simulator) at once
        and wait until every one is ready: their start-up times overlap instead of adding up.
        :class:`ServiceFailedError` names the first that ends or is not ready in its time."""
        started: list[tuple[ServiceSpec, subprocess.Popen, float]] = []
        for spec in specs:
            self.on_event(spec.name, "starting")
            proc = self._spawn(spec)
            self.on_event(spec.name, f"pid {proc.pid}")
            self.running.append((spec, proc))
            started.append((spec, proc, time.monotonic() + spec.ready_timeout))
        waiting = list(started)
        while waiting:
            for item in list(waiting):
                spec, proc, deadline = item
                if proc.poll() is not None:
                    raise ServiceFailedError(
                        f"{spec.name} exited with {exit_text(proc.returncode)} while starting; "
                        f"see {self.log_path(spec.name)}"
                    )
                if all(_port_answers(p) for p in spec.ready_ports) and (spec.ready_check is None or spec.ready_check()):
                    self.on_event(spec.name, "ready")
                    waiting.remove(item)
                elif time.monotonic() >= deadline:
                    raise ServiceFailedError(f"{spec.name} was not ready after {spec.ready_timeout:.0f}s; "
                                             f"see {self.log_path(spec.name)}")
            if waiting:
                time.sleep(0.1)
        return [proc for _, proc, _ in started]

    def failed(self) -> list[tuple[str, int]]:
        """Services that exited on their own (name, exit code)."""
        return [(spec.name, proc.returncode) for spec, proc in self.running if proc.poll() is not None]

    def watch(self, stop: threading.Event, until: float | None = None,
              policy: RestartPolicy = RestartPolicy()) -> str | None:
        """Keep the started services running until ``stop`` is set or the monotonic time ``until``:
        a service that ends is started again after the policy's delay. Returns None on a normal
        stop, or why it gave up (a service ended ``policy.limit`` times within the window)."""
        while not stop.is_set() and (until is None or time.monotonic() < until):
            now = time.monotonic()
            for index, (spec, proc) in enumerate(self.running):
                due = self._restart_at.get(spec.name)
                if due is not None:
                    if now >= due:
                        del self._restart_at[spec.name]
                        proc = self._spawn(spec)
                        self.running[index] = (spec, proc)
                        self.on_event(spec.name, f"restarted (pid {proc.pid})")
                        self._readying[spec.name] = now + spec.ready_timeout
                elif proc.poll() is not None:
                    self._readying.pop(spec.name, None)
                    gave_up = self._ended(spec, proc, now, policy)
                    if gave_up is not None:
                        return gave_up
                elif spec.name in self._readying:
                    self._check_restarted(spec, proc, now)
            stop.wait(0.2)
        return None

    def _check_restarted(self, spec: ServiceSpec, proc: subprocess.Popen, now: float) -> None:
        """A restarted service is ready by the same test as at start, or is ended (SIGKILL) when its
        time is up: a child that runs but never listens (a hung start) is a failure the restart policy
        counts like an exit, not a service `uns up` reports as running."""
        if all(_port_answers(p) for p in spec.ready_ports) and (spec.ready_check is None or spec.ready_check()):
            del self._readying[spec.name]
            self.on_event(spec.name, "ready")
        elif now >= self._readying[spec.name]:
            del self._readying[spec.name]
            self.on_event(spec.name, f"not ready {spec.ready_timeout:.0f}s after its restart; ending it (SIGKILL)")
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)  # the next turn sees the end and applies the restart policy

    def _ended(self, spec: ServiceSpec, proc: subprocess.Popen, now: float, policy: RestartPolicy) -> str | None:
        """Report an unexpected end and schedule the restart; the give-up message, if it is time."""
        self.pid_path(spec.name).unlink(missing_ok=True)
        ends = self._ends.setdefault(spec.name, [])
        ends.append(now)
        tail = "".join(f"\n      | {line}" for line in log_tail(self.log_path(spec.name)))
        ended = f"ended unexpectedly with {exit_text(proc.returncode)}; last lines of {self.log_path(spec.name)}:{tail}"
        delay = policy.delay_s(ends, now)
        if delay is None:
            self.on_event(spec.name, ended)
            recent = sum(1 for t in ends if now - t <= policy.window_s)
            return (f"{spec.name} ended {recent} times within {policy.window_s:.0f}s (last: "
                    f"{exit_text(proc.returncode)}); not restarting it again, stopping the stack. "
                    f"See {self.log_path(spec.name)}")
        self._restart_at[spec.name] = now + delay
        self.on_event(spec.name, f"{ended}\n    restarting in {delay:.0f}s (end {len(ends)}; "
                                 f"giving up at {policy.limit} within {policy.window_s:.0f}s)")
        return None

    def stop_all(self) -> None:
        """Stop children in reverse start order: SIGINT, wait, then SIGKILL."""
        self._restart_at.clear()
        self._readying.clear()
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
            self.pid_path(spec.name).unlink(missing_ok=True)
            self.on_event(spec.name, f"stopped (exit {proc.returncode})")
