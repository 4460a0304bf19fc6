"""docs/tutorial-own-plc.md, followed command by command against a real OPC UA server (issue 17).

The tutorial's ``sh`` blocks are the commands this test runs, in their order, in a fresh folder
(relative paths as written): ``uns init`` (plus free ports), the browse with ``--stack``, ``uns
check``, ``uns up -c``. The PLC is the uns-hub simulator served in-process with sensor noise off
(the tutorial's ``uns sim run --port 4841``, on a free port), so every value the UNS shows can be
compared exactly with the simulator's own: every browsed tag reaches the UNS mirror with the
simulator's value, GOOD quality, its unit and its range. Then the line is renamed without a broker
user for it: `uns check` names the line and `uns up` says, in the tutorial's words, that the
broker refused the edge node. The ``lines:`` example is the one `uns init` writes.

Section 6 and 7: a second simulator (line ``Line2``, other node ids) browsed without ``--stack``,
its line named and its ``sparkplug`` section deleted as the tutorial says; the real ``uns up -c``
prints what it filled in (the tutorial's lines), the edge connects with the user it created, every
tag reaches the UNS with the simulator's values, and the adapter has the derived line (its state
and speed signals). On the same running stack (one start, to spare the suite's time): the edge
SIGKILLed by the PID in uns up's pid file is restarted and every value turns STALE then GOOD again;
then its config is broken and the edge killed once more: it ends again at each restart and uns up
gives up with exit code 1 and the message.
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


def _quiet_simulator(line: str) -> Iterator[tuple[SimulatedLineServer, asyncio.AbstractEventLoop]]:
    """The simulator without sensor noise, on its own event loop thread (the CLI runs beside it)."""
    cells = [cell.model_copy(update={"temperature_noise_c": 0.0, "speed_noise": 0.0}) for cell in default_cells()]
    sim = SimulatedLineServer(SimulatorConfig(port=free_port(), line=line, cells=cells))
    with served_in_thread(sim) as loop:
        yield sim, loop


@pytest.fixture
def plc() -> Iterator[tuple[SimulatedLineServer, asyncio.AbstractEventLoop]]:
    yield from _quiet_simulator("Line1")


@pytest.fixture
def plc2() -> Iterator[tuple[SimulatedLineServer, asyncio.AbstractEventLoop]]:
    yield from _quiet_simulator("Line2")


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


def expected_topics(tag_map: dict, line_topic: str) -> dict[str, dict]:
    topics = {f"{line_topic}/{tag['cell'] + '/' if 'cell' in tag else ''}{tag['metric']}": tag
              for tag in tag_map["tags"]}
    assert len(topics) == len(tag_map["tags"])
    return topics


def wait_mirrored(sniffer: Sniffer, topics: dict[str, dict]) -> None:
    deadline = time.monotonic() + 60
    while not set(topics) <= set(latest(sniffer)):
        assert time.monotonic() < deadline, sorted(set(topics) - set(latest(sniffer)))
        time.sleep(0.5)
    time.sleep(1.0)  # the idle line's values are constant: let the last conflated ones arrive


def assert_the_uns_shows_the_server(mirrored: dict[str, dict], topics: dict[str, dict], truth: dict[str, Any],
                                    sim: SimulatedLineServer, line_topic: str) -> None:
    """Every browsed tag, and nothing else, GOOD with the simulator's value, unit and range."""
    catalog = {spec.path: spec for spec in tag_catalog(sim.config)}
    values = {topic: body for topic, body in mirrored.items()
              if not any(level.startswith("_") for level in topic[len(line_topic) + 1:].split("/"))}
    assert set(values) == set(topics)
    for topic, tag in topics.items():
        path = tag["node_id"].split(";s=", 1)[1].replace("Faceplate.", "")  # a faceplate shows its cell's tag
        body, meta = values[topic], mirrored[f"{topic}/_meta"]
        assert (body["value"], body["quality"], body.get("unit")) == (truth[path], "GOOD", tag.get("unit")), topic
        spec = catalog.get(tag["node_id"].split(";s=", 1)[1])
        if spec is not None:  # a tag of the simulator's catalog: its unit and range, as the server said
            assert (body.get("unit"), meta.get("eng_low"), meta.get("eng_high")) == (
                spec.unit, spec.eu_low, spec.eu_high), topic
    assert sum(1 for t in topics if catalog.get(topics[t]["node_id"].split(";s=")[1])) == len(catalog)


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


def test_the_tutorial_connects_a_server_to_the_uns_with_values_units_and_ranges(plc, plc2, tmp_path: Path) -> None:
    sim, loop = plc
    init, sim_run, browse, check, up, sim_run2, browse2, up2 = commands()
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

    expected = expected_topics(tag_map, LINE_TOPIC)
    proc, log_path = start_up(tmp_path, up[1:])
    try:
        with Sniffer("127.0.0.1", int(ports["--mqtt-port"]), (f"{LINE_TOPIC}/#",), mqtt5=False) as sniffer:
            wait_mirrored(sniffer, expected)
            mirrored, truth = latest(sniffer), sim_values(sim, loop)
        assert_the_uns_shows_the_server(mirrored, expected, truth, sim, LINE_TOPIC)
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

    # 6. a second server for another line, with no broker user and no MES line written by hand
    sim2, loop2 = plc2
    url2 = "opc.tcp://127.0.0.1:4842"
    assert (sim_run2, browse2, up2) == (["uns", "sim", "run", "--port", "4842", "--line", "Line2"],
                                        ["uns", "edge", "browse", url2, "--out", "uns-data/config/plant-line2.yaml"],
                                        ["uns", "up", "-c", "uns-data/config/plant-line2.yaml"])
    done = run([arg.replace(url2, sim2.endpoint) for arg in browse2[1:]] + ["--data-dir", str(tmp_path / "b2")],
               tmp_path)
    assert done.returncode == 0, done.stderr
    line2 = tmp_path / "uns-data" / "config" / "plant-line2.yaml"
    tag_map2 = yaml.safe_load(line2.read_text())
    tag_map2["line"] = {"enterprise": "acme", "site": "plant1", "area": "packaging", "line": "line2"}
    del tag_map2["sparkplug"]  # as the tutorial says: uns up fills it in
    line2.write_text(yaml.safe_dump(tag_map2, sort_keys=False))
    line2_topic = "acme/plant1/packaging/line2"
    expected2 = expected_topics(tag_map2, line2_topic)

    proc, log_path = start_up(tmp_path, [*up2[1:], "--restart-limit", "3"])
    try:
        output = log_path.read_text()
        for promised in fenced("text")[1].strip().splitlines():  # what the tutorial says uns up prints
            pattern = re.escape(promised).replace(re.escape("<time>"), r"\d{8}T\d{6}Z(-\d+)?")
            assert re.search(rf"^  {pattern}$", output, re.M), (promised, output)
        stack = yaml.safe_load((tmp_path / "uns-data" / "config" / "stack.yaml").read_text())
        status, state = api_get(int(ports["--http-port"]), stack["tokens"]["viewer"], f"/api/lines/{line2_topic}/state")
        truth2 = sim_values(sim2, loop2)
        assert status == 200 and state["configured"] is True, state
        assert (state["machine_state"]["metric"], state["machine_state"]["value"], state["machine_state"]["quality"],
                state["speed"]["metric"], state["speed"]["value"]) == (
            "State", truth2["Line2/State"], "GOOD", "Speed", truth2["Line2/Speed"])
        derived = yaml.safe_load((tmp_path / "uns-data" / "config" / "adapter.uns-up.yaml").read_text())
        assert derived["mes"]["lines"][-1] == {
            "line": line2_topic,
            "counters": [{"metric": "GoodCount", "role": "good", "modulus": 2**32},
                         {"metric": "RejectCount", "role": "reject", "modulus": 2**32}],
            "state": {"metric": "State"}, "batch": {"metric": "CurrentBatch"}, "speed": {"metric": "Speed"}}

        with Sniffer("127.0.0.1", int(ports["--mqtt-port"]), (f"{line2_topic}/#",), mqtt5=False) as sniffer:
            wait_mirrored(sniffer, expected2)
            assert_the_uns_shows_the_server(latest(sniffer), expected2, sim_values(sim2, loop2), sim2, line2_topic)

            # 7. the edge killed: restarted, and its values turn STALE, then GOOD again
            pid_file = tmp_path / "uns-data" / "run" / "edge.pid"
            pid = int(pid_file.read_text())
            assert re.search(rf"^  edge +pid {pid}$", log_path.read_text(), re.M)
            mark = len(sniffer.snapshot())
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 90
            while True:
                after = [m for m in sniffer.snapshot()[mark:] if m.payload]
                qualities = {topic: [json.loads(m.payload)["quality"] for m in after if m.topic == topic]
                             for topic in expected2}
                if all("STALE" in q and q[-1] == "GOOD" and q.index("STALE") < len(q) - 1 for q in qualities.values()):
                    break
                assert time.monotonic() < deadline, (qualities, log_path.read_text())
                time.sleep(0.5)
            wait_mirrored(sniffer, expected2)
            assert_the_uns_shows_the_server(latest(sniffer), expected2, sim_values(sim2, loop2), sim2, line2_topic)
        output = log_path.read_text()
        restarted = int(re.search(r"^  edge +restarted \(pid (\d+)\)$", output, re.M).group(1))
        assert restarted == int(pid_file.read_text()) != pid
        assert ("  edge       ended unexpectedly with exit code -9 (SIGKILL); last lines of uns-data/logs/edge.log:"
                in output), output

        # a service that keeps ending: its config broken, the edge killed once more; it ends at each restart
        derived_map = tmp_path / "uns-data" / "config" / "plant-line2.uns-up.yaml"
        derived_map.write_text(derived_map.read_text().replace("opcua:", "opcua_servers:", 1))
        os.kill(restarted, signal.SIGKILL)
        assert proc.wait(timeout=120) == 1, log_path.read_text()
        output = log_path.read_text()
        assert ("uns up: edge ended 3 times within 300s (last: exit code 2); not restarting it again, stopping the "
                "stack. See uns-data/logs/edge.log") in output, output
        assert "opcua_servers" in output.split("ended unexpectedly with exit code 2")[-1]  # the log tail says why
    finally:
        stop_process(proc, sig=signal.SIGINT)


def api_get(port: int, token: str, path: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
