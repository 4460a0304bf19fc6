"""Issue "One command to a running plant": `./scripts/up` exactly as the README says.

Runs the README's main command as a subprocess (on free ports, its own data folder), waits for
it, checks the births on the broker (the embedded broker's retained ``$sparkplug/certificates``),
the UNS mirror topics, the dashboard and ``/docs``; then stops it with SIGINT and sees the edge
node's NDEATH and the host's STATE offline on the wire.
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

from tests.support.net import free_port, wait_for_port
from tests.support.procs import REPO, stop_process
from tests.support.sniffer import Sniffer
from uns.sparkplug.codec import decode_payload
from uns.sparkplug.topic import MessageType

README = (REPO / "README.md").read_text()
GROUP, EDGE, HOST_ID = "acme:plant1", "packaging:line1", "uns-mes"


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return response.status, response.read()


def test_scripts_up_runs_the_plant_and_stops_cleanly(tmp_path: Path) -> None:
    assert "    ./scripts/up\n" in README, "the README's main command changed: update this test"
    ports = {name: free_port() for name in ("mqtt", "ws", "opcua", "http", "edge_metrics", "broker_metrics")}
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(REPO / "scripts" / "up"), "--data-dir", str(tmp_path / "uns-data"),
             "--mqtt-port", str(ports["mqtt"]), "--ws-port", str(ports["ws"]),
             "--opcua-port", str(ports["opcua"]), "--http-port", str(ports["http"]),
             "--edge-metrics-port", str(ports["edge_metrics"]), "--broker-metrics-port", str(ports["broker_metrics"])],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 150
        while "Press Ctrl-C to stop." not in log_path.read_text(errors="replace"):  # the whole block printed
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.3)
        output = log_path.read_text(errors="replace")
        http = f"http://127.0.0.1:{ports['http']}"
        assert f"{http}/docs" in output and f"mqtt://127.0.0.1:{ports['mqtt']}" in output
        assert "MQTT Explorer" in output
        wait_for_port(ports["mqtt"])

        # anonymous MQTT is the read-only demo access MQTT Explorer uses; amqtt speaks 3.1.1
        with Sniffer("127.0.0.1", ports["mqtt"], ("#", "$sparkplug/#"), mqtt5=False) as sniffer:
            nbirth = sniffer.wait_topic(f"$sparkplug/certificates/spBv1.0/{GROUP}/NBIRTH/{EDGE}")[0]
            births = decode_payload(nbirth.payload, MessageType.NBIRTH)
            assert births.seq == 0 and any(m.name == "bdSeq" for m in births.metrics)
            for cell in ("Filler", "Capper", "Labeler"):
                sniffer.wait_topic(f"$sparkplug/certificates/spBv1.0/{GROUP}/DBIRTH/{EDGE}/{cell}")
            mirror = sniffer.wait_topic("acme/plant1/packaging/line1/Filler/Temperature")[0]
            value = json.loads(mirror.payload)
            assert value["quality"] == "GOOD" and isinstance(value["value"], float)
            sniffer.wait_topic("acme/plant1/packaging/line1/Filler/Temperature/_meta")

            status, page = _get(f"{http}/")
            assert status == 200 and b"uns-hub" in page
            status, docs = _get(f"{http}/docs")
            assert status == 200 and b"swagger" in docs.lower()

            os.kill(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=60) == 0, log_path.read_text(errors="replace")

            ndeath = sniffer.wait_topic(f"spBv1.0/{GROUP}/NDEATH/{EDGE}", timeout=5)[0]
            death = decode_payload(ndeath.payload, MessageType.NDEATH)
            assert death.seq is None and [m.name for m in death.metrics] == ["bdSeq"]
            assert [m.value for m in death.metrics] == [m.value for m in births.metrics if m.name == "bdSeq"]
            states = [json.loads(m.payload) for m in sniffer.snapshot(lambda m: m.topic == f"spBv1.0/STATE/{HOST_ID}")]
            assert states and states[-1]["online"] is False
        output = log_path.read_text(errors="replace")
        assert re.search(r"edge\s+stopped \(exit 0\)", output), output
        assert "uns-hub stopped" in output
    finally:
        stop_process(proc, sig=signal.SIGINT, timeout=60)
