"""Issue 17 item 4: the demo starts consistently when `uns up` runs again on the same data folder.

The adapter's context store survives a restart; the simulator does not (a second `uns up` starts
it idle, with no batch). Two consecutive real `uns up` runs on one folder: the second must say in
words that the previous run's batch was ended because the line restarted without it, start its
own demo batch (no "HTTP 409"), and the API must then show exactly two batches: the old one ended
at the moment the adapter reported, the new one running and the line's current batch.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from tests.support.net import free_port
from tests.support.procs import stop_process, uns_command

OPTIONS = ("--mqtt-port", "--ws-port", "--opcua-port", "--http-port", "--edge-metrics-port", "--broker-metrics-port")
LINE = "acme/plant1/packaging/line1"
DEMO = re.compile(r"demo batch (DEMO-\d{8}-\d{6}) running")


def _start(data: Path, ports: list[str], log_path: Path) -> subprocess.Popen:
    args = [arg for option, port in zip(OPTIONS, ports, strict=True) for arg in (option, port)]
    with open(log_path, "wb") as log:
        return subprocess.Popen(uns_command("up", "--data-dir", str(data), *args), stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_running(proc: subprocess.Popen, log_path: Path, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while "Press Ctrl-C to stop." not in (text := log_path.read_text(errors="replace")):
        assert proc.poll() is None, text
        assert time.monotonic() < deadline, text
        time.sleep(0.3)
    return text


def _assert_readable_logs(logs: Path, bd_seq: int) -> None:
    """Issue 17 item 10: births and deaths at INFO on both sides, and nothing alarming for a normal
    start and stop: `uns up`'s readiness probe no longer leaves ERROR lines and a WebSocket
    traceback in broker.log, and the edge's own disconnect after NDEATH is not a warning."""
    broker = (logs / "broker.log").read_text()
    assert "ERROR" not in broker and "Traceback" not in broker, broker
    edge = (logs / "edge.log").read_text()
    assert "WARNING" not in edge and "ERROR" not in edge and "Traceback" not in edge, edge
    node, group = "packaging:line1", "acme:plant1"
    lifecycle = re.findall(r"INFO    edge_node\.mqtt_client: (\w+) published on (\S+) \(bdSeq (\d+)\)", edge)
    assert lifecycle == [("NBIRTH", f"spBv1.0/{group}/NBIRTH/{node}", str(bd_seq))] + [
        ("DBIRTH", f"spBv1.0/{group}/DBIRTH/{node}/{cell}", str(bd_seq)) for cell in ("Capper", "Filler", "Labeler")
    ] + [("NDEATH", f"spBv1.0/{group}/NDEATH/{node}", str(bd_seq))]
    host = [line.split("uns.host: ", 1)[1] for line in (logs / "adapter.log").read_text().splitlines()
            if " INFO " in line and "uns.host: " in line and (" born" in line or " dead " in line)]
    assert host == [f"host uns-mes: edge node {group}/{node} born (bdSeq {bd_seq})"] + [
        f"host uns-mes: device {group}/{node}/{cell} born" for cell in ("Capper", "Filler", "Labeler")
    ] + [f"host uns-mes: edge node {group}/{node} dead (ndeath, bdSeq {bd_seq}); its tags are STALE"]


def _get(http_port: str, token: str, path: str) -> object:
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def test_second_up_ends_the_previous_runs_batch_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "uns-data"
    ports = [str(free_port()) for _ in OPTIONS]

    first_log = tmp_path / "first.log"
    first = _start(data, ports, first_log)
    try:
        output = _wait_running(first, first_log)
        assert "MES context: no batch open from an earlier run; nothing to reconcile" in output
        match = DEMO.search(output)
        assert match, output
        previous = match.group(1)
        os.kill(first.pid, signal.SIGINT)  # Ctrl-C: the MES still shows the batch open
        assert first.wait(timeout=90) == 0, first_log.read_text()
    finally:
        stop_process(first, sig=signal.SIGINT, timeout=60)
    _assert_readable_logs(data / "logs", bd_seq=0)
    first_run = {name: (data / "logs" / name).read_text() for name in ("broker.log", "edge.log", "adapter.log")}

    time.sleep(1.1)  # demo batch ids have a one-second resolution
    second_log = tmp_path / "second.log"
    second = _start(data, ports, second_log)
    try:
        output = _wait_running(second, second_log)
        assert "HTTP 409" not in output and "not started" not in output, output
        said = re.search(rf"MES context: batch {previous} from the previous run was still open, but the simulated "
                         r"line restarted without it, so the adapter ended it at (\d\d:\d\d:\d\d) UTC", output)
        assert said, output
        match = DEMO.search(output)
        assert match, output
        current = match.group(1)
        assert current != previous

        token = yaml.safe_load((data / "config" / "stack.yaml").read_text())["tokens"]["viewer"]
        http = ports[3]
        done = _get(http, token, f"/api/lines/{LINE}/batch/reconciliation")
        assert done["action"] == "ended" and done["batch_id"] == previous
        assert time.strftime("%H:%M:%S", time.gmtime(done["end_ms"] / 1000)) == said.group(1)
        batches = _get(http, token, f"/api/batches?line={LINE}")
        assert [(b["batch_id"], b["running"]) for b in batches] == [(current, True), (previous, False)]
        assert batches[1]["end_ms"] == done["end_ms"]
        assert batches[0]["end_ms"] is None and batches[0]["work_order_id"] == "WO-DEMO"
        lines = _get(http, token, "/api/lines")
        assert [line["current_batch"] for line in lines if line["line"] == LINE] == [current]
        os.kill(second.pid, signal.SIGINT)
        assert second.wait(timeout=90) == 0, second_log.read_text()
    finally:
        stop_process(second, sig=signal.SIGINT, timeout=60)
    for name in ("broker.log", "edge.log", "adapter.log"):  # the second run's lines only
        log = data / "logs" / name
        log.write_text(log.read_text().split(first_run[name], 1)[1])
    _assert_readable_logs(data / "logs", bd_seq=1)
