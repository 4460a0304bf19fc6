"""docs/tutorial-own-plc.md, followed command by command against a real OPC UA server (issue 17).

The tutorial's ``sh`` blocks are the commands this test runs, in their order, in a fresh folder
(relative paths as written): ``uns init`` (plus free ports), the browse with ``--stack``, ``uns
check``, ``uns up -c``. The PLC is the uns-hub simulator served in-process with sensor noise off
(the tutorial's ``uns sim run --port 4841``, on a free port), so every value the UNS shows can be
compared exactly with the simulator's own: every browsed tag reaches the UNS mirror with the
simulator's value, GOOD quality, its unit and its range. Then the line is renamed without a broker
user for it: `uns check` names the line and `uns up` says, in the tutorial's words, that the
broker refused the edge node. The ``lines:`` example is the one `uns init` writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.catalog import tag_catalog
from simulator.config import SimulatorConfig, default_cells
from simulator.server import SimulatedLineServer
from tests.support.loop_thread import served_in_thread
from tests.support.net import free_port
from tests.support.procs import REPO, stop_process, uns_command
from tests.support.sniffer import Sniffer

pytestmark = pytest.mark.timeout(420)

TUTORIAL = (REPO / "docs" / "tutorial-own-plc.md").read_text()
TUTORIAL_URL = "opc.tcp://127.0.0.1:4841"
LINE_TOPIC = "acme/plant1/packaging/line1"


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TUTORIAL, flags=re.S)


def commands() -> list[list[str]]:
    return [line.split() for block in fenced("sh") for line in block.splitlines() if line.strip()]


@pytest.fixture
def plc() -> Iterator[tuple[SimulatedLineServer, asyncio.AbstractEventLoop]]:
    """The simulator without sensor noise, on its own event loop thread (the CLI runs beside it)."""
    cells = [cell.model_copy(update={"temperature_noise_c": 0.0, "speed_noise": 0.0}) for cell in default_cells()]
    sim = SimulatedLineServer(SimulatorConfig(port=free_port(), cells=cells))
    with served_in_thread(sim) as loop:
        yield sim, loop


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(uns_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def sim_values(sim: SimulatedLineServer, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        return {path: sample.value for path, sample in sim.model.samples().items()}
    return asyncio.run_coroutine_threadsafe(read(), loop).result(10)


def latest(sniffer: Sniffer) -> dict[str, dict]:
    """The last JSON message of every retained topic seen (empty payloads: deleted topics)."""
    out: dict[str, dict] = {}
    for message in sniffer.snapshot(lambda m: True):
        if message.payload:
            out[message.topic] = json.loads(message.payload)
    return out


def start_up(cwd: Path, args: list[str]) -> tuple[subprocess.Popen, Path]:
    log_path = cwd / "up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(uns_command(*args), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 150
    while "Press Ctrl-C to stop." not in log_path.read_text(errors="replace"):
        assert proc.poll() is None, log_path.read_text(errors="replace")
        assert time.monotonic() < deadline, log_path.read_text(errors="replace")
        time.sleep(0.3)
    return proc, log_path


def test_the_tutorial_connects_a_server_to_the_uns_with_values_units_and_ranges(plc, tmp_path: Path) -> None:
    sim, loop = plc
    init, sim_run, browse, check, up = commands()
    assert (init, sim_run) == (["uns", "init", "--out", "uns-data/config"], ["uns", "sim", "run", "--port", "4841"])
    assert browse == ["uns", "edge", "browse", TUTORIAL_URL, "--stack", "uns-data",
                      "--out", "uns-data/config/plant-own.yaml"]
    assert (check, up) == (["uns", "check", "uns-data/config"], ["uns", "up", "-c", "uns-data/config/plant-own.yaml"])

    ports = {option: str(free_port()) for option in ("--mqtt-port", "--ws-port", "--opcua-port", "--http-port",
                                                     "--edge-metrics-port", "--broker-metrics-port")}
    done = run([*init[1:], *(part for item in ports.items() for part in item)], tmp_path)
    assert done.returncode == 0, done.stderr
    done = run([arg.replace(TUTORIAL_URL, sim.endpoint) for arg in browse[1:]]
               + ["--data-dir", str(tmp_path / "browse")], tmp_path)
    assert done.returncode == 0, done.stderr
    own = tmp_path / "uns-data" / "config" / "plant-own.yaml"
    tag_map = yaml.safe_load(own.read_text())
    assert "PLACEHOLDER" not in own.read_text()
    done = run(check[1:], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok  uns-data/config/plant-own.yaml (edge node tag map)" in done.stdout

    # the lines: example is what `uns init` wrote for this line
    adapter = yaml.safe_load((tmp_path / "uns-data" / "config" / "adapter.yaml").read_text())
    assert [yaml.safe_load(block)["mes"]["lines"] for block in fenced("yaml")] == [adapter["mes"]["lines"]]

    catalog = {spec.path: spec for spec in tag_catalog(sim.config)}
    expected_topics = {f"{LINE_TOPIC}/{tag['cell'] + '/' if 'cell' in tag else ''}{tag['metric']}": tag
                       for tag in tag_map["tags"]}
    assert len(expected_topics) == len(tag_map["tags"])
    proc, log_path = start_up(tmp_path, up[1:])
    try:
        with Sniffer("127.0.0.1", int(ports["--mqtt-port"]), (f"{LINE_TOPIC}/#",), mqtt5=False) as sniffer:
            deadline = time.monotonic() + 60
            while not set(expected_topics) <= set(latest(sniffer)):
                assert time.monotonic() < deadline, sorted(set(expected_topics) - set(latest(sniffer)))
                time.sleep(0.5)
            time.sleep(1.0)  # the idle line's values are constant: let the last conflated ones arrive
            mirrored, truth = latest(sniffer), sim_values(sim, loop)
        values = {topic: body for topic, body in mirrored.items()
                  if not any(level.startswith("_") for level in topic[len(LINE_TOPIC) + 1:].split("/"))}
        assert set(values) == set(expected_topics)  # every browsed tag, and nothing else
        for topic, tag in expected_topics.items():
            path = tag["node_id"].split(";s=", 1)[1].replace("Faceplate.", "")  # a faceplate shows its cell's tag
            body, meta = values[topic], mirrored[f"{topic}/_meta"]
            assert (body["value"], body["quality"], body.get("unit")) == (truth[path], "GOOD", tag.get("unit")), topic
            spec = catalog.get(tag["node_id"].split(";s=", 1)[1])
            if spec is not None:  # a tag of the simulator's catalog: its unit and range, as the server said
                assert (body.get("unit"), meta.get("eng_low"), meta.get("eng_high")) == (
                    spec.unit, spec.eu_low, spec.eu_high), topic
        assert sum(1 for t in expected_topics if catalog.get(expected_topics[t]["node_id"].split(";s=")[1])) == \
            len(catalog)
    finally:
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=90) == 0, log_path.read_text(errors="replace")
        stop_process(proc, sig=signal.SIGINT)

    # the line renamed without a broker user for it: refused by `uns check` and by the broker, in words
    own.write_text(own.read_text().replace("  line: line1\n", "  line: line2\n"))
    done = run(check[1:], tmp_path)
    assert done.returncode == 2 and "may publish for acme:plant1/packaging:line1 only" in done.stdout
    done = run(up[1:], tmp_path, timeout=150)
    assert done.returncode == 1, done.stdout + done.stderr
    refusal = next(line for line in done.stdout.splitlines() if "refused by the broker" in line)
    assert refusal == fenced("text")[0].strip()
