"""The supervisor: its readiness probe and its restart rules (issue 17 items 2 and 10).

A connect-and-close probe is a client that never speaks: the embedded broker logged an ERROR and
its WebSocket listener a traceback for it on every `uns up` start. The whole-stack check (no ERROR
or traceback in broker.log) is in tests/e2e/test_up_twice.py; this is the probe's own contract.

The restart rules are checked on the pure policy and on real child processes that exit; the
whole stack (the edge SIGKILLed and restarted, its values GOOD again, then given up on) is in
tests/docs/test_tutorial_own_plc.py, the broker in tests/deploy/test_up_mosquitto.py.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

from tests.support.net import free_port
from unshub.supervisor import RestartPolicy, ServiceSpec, Supervisor, _port_answers, exit_text


def test_a_listener_is_found_and_never_sees_a_connection() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        assert _port_answers(port) is True
        assert _port_answers(port) is True
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing in the backlog: the probe never connected


def test_a_free_port_is_not_ready() -> None:
    assert _port_answers(free_port()) is False


def test_the_restart_delay_doubles_up_to_its_bound_and_the_policy_gives_up_at_the_limit_in_the_window() -> None:
    policy = RestartPolicy(limit=4, window_s=60, first_delay_s=1, max_delay_s=3)
    assert [policy.delay_s([0.0] * n, 0.0) for n in (1, 2, 3, 4)] == [1, 2, 3, None]
    assert policy.delay_s([0.0, 1.0, 2.0, 70.0], 70.0) == 1  # the first three fell out of the window
    assert RestartPolicy(limit=1).delay_s([5.0], 5.0) is None  # 1: never restart
    assert (exit_text(2), exit_text(-9), exit_text(0)) == ("exit code 2", "exit code -9 (SIGKILL)", "exit code 0")


def test_a_child_that_keeps_ending_is_restarted_with_its_log_tail_then_given_up_on(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    supervisor = Supervisor(tmp_path / "logs", lambda name, text: events.append((name, text)), run_dir=tmp_path / "run")
    code = "import sys, time; print('config broken at line 3', flush=True); time.sleep(0.3); sys.exit(2)"
    proc = supervisor.start(ServiceSpec("edge", [sys.executable, "-c", code]))
    assert (tmp_path / "run" / "edge.pid").read_text() == f"{proc.pid}\n"
    gave_up = supervisor.watch(threading.Event(), None, RestartPolicy(limit=3, first_delay_s=0.05))
    log = tmp_path / "logs" / "edge.log"
    assert gave_up == (f"edge ended 3 times within 300s (last: exit code 2); not restarting it again, stopping the "
                       f"stack. See {log}")
    texts = [text for name, text in events if name == "edge"]
    tail = "\n      | config broken at line 3"
    ended = f"ended unexpectedly with exit code 2; last lines of {log}:"
    assert [t.split(" (pid")[0] for t in texts] == [
        "starting", f"pid {proc.pid}", "ready",
        f"{ended}{tail}\n    restarting in 0s (end 1; giving up at 3 within 300s)", "restarted", "ready",
        f"{ended}{tail * 2}\n    restarting in 0s (end 2; giving up at 3 within 300s)", "restarted", "ready",
        f"{ended}{tail * 3}"]
    assert log.read_text().count("config broken at line 3") == 3  # one log, appended by every run
    assert not (tmp_path / "run" / "edge.pid").exists()
    supervisor.stop_all()
    assert events[-1] == ("edge", "stopped (exit 2)")


def test_a_restarted_child_is_ready_only_when_it_listens_and_one_that_never_does_is_ended_and_counted(
        tmp_path: Path) -> None:
    """A restart is checked like a start: "ready" only once its port has a listener; a restarted
    child that runs but never listens (a hung start) is SIGKILLed at its ready timeout and counted
    as an end by the restart policy, so a stack does not report a hung service as running."""
    events: list[tuple[str, str]] = []
    supervisor = Supervisor(tmp_path / "logs", lambda name, text: events.append((name, text)), run_dir=tmp_path / "run")
    port, marker = free_port(), tmp_path / "started-once"
    # the first run listens, then exits 3; every later run sleeps without listening
    code = (f"import os, socket, sys, time\nif not os.path.exists({str(marker)!r}):\n"
            f"    open({str(marker)!r}, 'w').close(); s = socket.socket(); s.bind(('127.0.0.1', {port})); "
            "s.listen(); time.sleep(0.5); sys.exit(3)\ntime.sleep(60)")
    proc = supervisor.start(ServiceSpec("adapter", [sys.executable, "-c", code], ready_ports=[port], ready_timeout=1.0))
    gave_up = supervisor.watch(threading.Event(), None, RestartPolicy(limit=2, first_delay_s=0.05))
    assert gave_up is not None
    assert gave_up.startswith("adapter ended 2 times within 300s (last: exit code -9 (SIGKILL))")
    texts = [text.split(";")[0].split(" (pid")[0] for name, text in events if name == "adapter"]
    assert texts == ["starting", f"pid {proc.pid}", "ready", "ended unexpectedly with exit code 3", "restarted",
                     "not ready 1s after its restart", "ended unexpectedly with exit code -9 (SIGKILL)"]
    supervisor.stop_all()
