"""Issue 20 item 2: `uns up --broker-engine mosquitto` runs the packaged Mosquitto, supervised.

Through the real `uns up` command: the stack comes up on Mosquitto (the generated config, users
and ACL), every tag of the simulated line reaches the UNS mirror with the simulator's own value
(the retained JSON read by an anonymous subscriber, the read-only demo access), the demo batch's
counts in the adapter equal the simulator's totals, and when `uns up` stops, the Mosquitto
process it started is gone (its PID, found in /proc). A missing Mosquitto, a bad stored engine or
both broker options are refused with exit 2 before anything is written.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from simulator.client import call_method
from tests.e2e.stack import Stack, simulator_truth, wait_until
from tests.faults.truth import UnsView, plant_tags, sim_fault, wait_truth
from tests.support.mosquitto import mosquitto_binary
from tests.support.net import free_port
from tests.support.procs import stop_process, uns_command

PORT_OPTIONS = {"mqtt": "--mqtt-port", "ws": "--ws-port", "opcua": "--opcua-port", "http": "--http-port",
                "edge_http": "--edge-metrics-port", "broker_http": "--broker-metrics-port"}


def _pids_running(conf: Path) -> list[tuple[int, int]]:
    """(pid, parent pid) of every live process whose command line is ``<mosquitto> -c <conf>``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue  # gone meanwhile
        if argv[1:3] == [b"-c", str(conf).encode()] and "\nState:\tZ" not in status:
            found.append((int(entry.name), int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))))
    return found


def _batch_counts(stack: Stack, batch_id: str) -> tuple[float, float] | None:
    _, batches = stack.api("GET", f"/api/batches?line={stack.line}", role="viewer")
    return next(((b["good"], b["scrap"]) for b in batches or [] if b["batch_id"] == batch_id), None)


@dataclass
class Up:
    """A `uns up --broker-engine mosquitto` the test started, with its folders and ports."""

    proc: subprocess.Popen
    base: Path
    ports: dict[str, int]

    @property
    def data(self) -> Path:
        return self.base / "uns-data"

    @property
    def conf(self) -> Path:
        return self.data / "config" / "mosquitto.conf"

    def output(self) -> str:
        return (self.base / "up.log").read_text(errors="replace")


@contextmanager
def up_on_mosquitto(*args: str) -> Iterator[Up]:
    """The real `uns up` on free ports until its summary is printed; stopped (SIGINT) and cleaned up after."""
    # Mosquitto started as root runs as the `mosquitto` user, which cannot enter pytest's 0700 tmp
    # folders (uns up refuses such a folder: test_mosquitto_engine.py): a folder it can traverse
    base = Path(tempfile.mkdtemp(prefix="uns-up-mosquitto-"))
    base.chmod(0o755)
    ports = {name: free_port() for name in PORT_OPTIONS}
    with open(base / "up.log", "wb") as log:
        proc = subprocess.Popen(
            uns_command("up", "--data-dir", str(base / "uns-data"), "--broker-engine", "mosquitto", *args,
                        *[arg for name, option in PORT_OPTIONS.items() for arg in (option, str(ports[name]))]),
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    up = Up(proc, base, ports)
    try:
        deadline = time.monotonic() + 150
        while "Press Ctrl-C to stop." not in up.output():
            assert proc.poll() is None, up.output()
            assert time.monotonic() < deadline, up.output()
            time.sleep(0.3)
        yield up
    finally:
        stop_process(proc, sig=signal.SIGINT, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def test_uns_up_runs_the_stack_on_mosquitto_and_leaves_no_broker_behind() -> None:
    binary = mosquitto_binary()
    assert binary, "mosquitto is missing: scripts/test installs it"
    with up_on_mosquitto() as up:
        proc, data, conf, ports, log_path = up.proc, up.data, up.conf, up.ports, up.base / "up.log"
        output = log_path.read_text(errors="replace")
        assert f"  Broker           mosquitto version 2.0.11 ({binary} -c {conf})" in output, output
        assert "no broker /metrics with Mosquitto" in output and f":{ports['broker_http']}/" not in output
        assert yaml.safe_load((data / "config" / "stack.yaml").read_text())["broker_engine"] == "mosquitto"
        [(pid, parent)] = _pids_running(conf)
        assert parent == proc.pid  # supervised by this `uns up`, not a stray broker
        batch_id = re.search(r"demo batch (DEMO-\S+) running", output).group(1)

        summary = yaml.safe_load((data / "config" / "stack.yaml").read_text())
        stack = Stack(data / "config", ports["mqtt"], ports["opcua"], ports["http"], summary["tokens"],
                      None, summary["line"], ports["edge_http"])  # type: ignore[arg-type]  # no supervisor here
        wait_until(lambda: (_batch_counts(stack, batch_id) or (0, 0))[0] >= 10, 60, "the demo batch producing")
        asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
        for cell in ("Filler", "Capper", "Labeler"):  # measurement noise would keep the values moving
            sim_fault(stack, "freeze", "--tag", f"Line1/{cell}/Temperature", "--duration", "300")
        time.sleep(0.5)
        # the simulated line started idle at 0 parts, so its own totals are the demo batch's counts
        good, reject = asyncio.run(simulator_truth(stack.opcua))
        assert good >= 10
        wait_until(lambda: _batch_counts(stack, batch_id) == (good, reject), 30,
                   f"batch {batch_id} counts {(good, reject)} in the adapter")

        with UnsView(stack) as view:  # anonymous: the read-only access the generated mosquitto.acl gives
            tags = plant_tags(stack)
            assert len(tags) > 20
            wait_truth(stack, view, tags, 30)  # every tag GOOD with the simulator's value (a stopped line)
            retained = {m.topic for m in view.snapshot() if m.retain}
            assert {t.topic(stack.line) for t in tags} <= retained  # the mirror's values are retained

        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log_path.read_text(errors="replace")
        output = log_path.read_text(errors="replace")
        assert re.search(r"broker\s+stopped \(exit 0\)", output), output
        assert _pids_running(conf) == []
        assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie or an orphan


def test_a_mosquitto_that_dies_is_reported_and_the_stack_stops() -> None:
    """Supervised like the other services: a broker that ends is named with its exit code and its log;
    with --restart-limit 1 (never restart) uns up gives up at once, stops the rest and exits 1."""
    with up_on_mosquitto("--no-demo-batch", "--restart-limit", "1") as up:
        [(pid, parent)] = _pids_running(up.conf)
        assert parent == up.proc.pid
        assert (up.data / "run" / "broker.pid").read_text() == f"{pid}\n"  # uns up's pid file names it
        os.kill(pid, signal.SIGKILL)  # the broker `uns up` started for this test, by its PID
        assert up.proc.wait(timeout=60) == 1
        output = up.output()
        log = up.data / "logs" / "broker.log"
        assert f"broker     ended unexpectedly with exit code -9 (SIGKILL); last lines of {log}:" in output, output
        assert (f"uns up: broker ended 1 times within 300s (last: exit code -9 (SIGKILL)); not restarting it "
                f"again, stopping the stack. See {log}") in output, output
        for name in ("edge", "adapter", "simulator"):
            assert re.search(rf"{name}\s+stopped \(exit 0\)", output), output
        assert "uns-hub stopped" in output


def _up_without_mosquitto(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`uns up` where no Mosquitto can be found: PATH without it, and (this machine has the Debian
    package) the fallback list emptied in the process before the real command runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    code = ("import unshub.mosquitto as m; m.FALLBACK_PATHS = ('/nonexistent/sbin/mosquitto',); "
            "import sys; from unshub.cli.main import main; sys.argv[0] = 'uns'; main()")
    return subprocess.run([sys.executable, "-c", code, "up", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": str(bin_dir)})


def test_missing_mosquitto_is_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    data = tmp_path / "uns-data"
    done = _up_without_mosquitto(tmp_path, "--data-dir", str(data), "--broker-engine", "mosquitto")
    assert done.returncode == 2, done.stdout + done.stderr
    assert ("uns up: --broker-engine mosquitto needs the mosquitto broker, which is not installed (looked in "
            "PATH, /nonexistent/sbin/mosquitto). Install the Debian/Ubuntu package `mosquitto` "
            "(sudo apt-get install mosquitto;") in done.stderr
    assert "or run with --broker-engine embedded. Nothing was written." in done.stderr
    assert not data.exists()


def test_stored_engine_is_used_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    """``broker_engine`` in stack.yaml is the default of --broker-engine (read before anything else)."""
    data = tmp_path / "uns-data"
    (data / "config").mkdir(parents=True)
    stack_yaml = data / "config" / "stack.yaml"
    stack_yaml.write_text("broker_engine: mosquitto\n")
    done = _up_without_mosquitto(tmp_path, "--data-dir", str(data))
    assert done.returncode == 2 and "needs the mosquitto broker" in done.stderr, done.stderr

    stack_yaml.write_text("broker_engine: rabbitmq\n")
    done = subprocess.run(uns_command("up", "--data-dir", str(data)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert (f"uns up: {stack_yaml}: broker_engine: 'rabbitmq' is not one of embedded, mosquitto. "
            "Nothing was written.") in done.stderr
    assert stack_yaml.read_text() == "broker_engine: rabbitmq\n"


def test_external_broker_and_broker_engine_together_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "uns-data"
    done = subprocess.run(uns_command("up", "--data-dir", str(data), "--broker", "mqtt://127.0.0.1:1",
                                      "--broker-engine", "mosquitto"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--broker uses a broker that is already running and --broker-engine starts one" in done.stderr
    assert not data.exists()
