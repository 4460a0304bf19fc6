"""The host driven by an edge node we did not write: Eclipse Tahu's npm ``sparkplug-client``.

tests/interop/tahu-client/edge.js publishes NBIRTH, DBIRTH and DDATA with several datatypes
(Tahu writes UInt32 in long_value, negative Int8/Int32 sign-extended, UInt64 bdSeq, and sends
names and datatypes in DDATA); the mirror must show them with the right values and types.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.host.conftest import latest_json, rebirth_requests, running_host, wait_for
from tests.support.mosquitto import BrokerEndpoint
from tests.support.procs import stop_process
from tests.support.sniffer import Sniffer

pytestmark = [pytest.mark.mosquitto, pytest.mark.node]

TAHU_DIR = Path(__file__).resolve().parents[1] / "interop" / "tahu-client"
GROUP, EDGE, DEVICE = "acme:plant1", "assembly:line2", "press1"
LINE = "acme/plant1/assembly/line2"


def start_tahu(broker: BrokerEndpoint, seconds: int = 30, *, templates: bool = False) -> subprocess.Popen:
    node = shutil.which("node")
    if node is None or not (TAHU_DIR / "node_modules" / "sparkplug-client").is_dir():
        pytest.fail("node or tests/interop/tahu-client/node_modules missing: scripts/test runs npm install")
    extra = [GROUP, EDGE, DEVICE, "templates"] if templates else []
    return subprocess.Popen([node, str(TAHU_DIR / "edge.js"), broker.host, str(broker.port), str(seconds), *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=TAHU_DIR)


async def test_tahu_edge_node_is_mirrored_with_right_values_and_types(mosquitto: BrokerEndpoint,
                                                                      sniffer: Sniffer) -> None:
    async with running_host(mosquitto) as host:
        proc = start_tahu(mosquitto)
        try:
            await wait_for(sniffer, lambda m: m.topic == f"{LINE}/{DEVICE}/Press/Tool"
                           and json.loads(m.payload)["value"] == "T-8", timeout=20)
            expected = {
                "Press/Force": (2345.25, "Double"),
                "Press/Temp": (36.5, "Float"),
                "Press/Step": (-7, "Int8"),
                "Press/Delta": (-100000, "Int32"),
                "Press/Strokes": (4000000001, "UInt32"),
                "Press/Open": (False, "Boolean"),
                "Press/Tool": ("T-8", "String"),
            }
            for name, (value, datatype) in expected.items():
                shown = latest_json(sniffer, f"{LINE}/{DEVICE}/{name}")
                assert (shown["value"], shown["datatype"], shown["quality"]) == (value, datatype, "GOOD"), name
                assert latest_json(sniffer, f"{LINE}/{DEVICE}/{name}/_meta")["datatype"] == datatype
            assert latest_json(sniffer, f"{LINE}/Line/Mode")["value"] == "AUTO"
            assert latest_json(sniffer, f"{LINE}/Line/Uptime") == {**latest_json(sniffer, f"{LINE}/Line/Uptime"),
                                                                     "value": 3600, "datatype": "Int64"}
            node = host.model.node(GROUP, EDGE)
            assert node is not None and node.online and node.bd_seq == 0  # Tahu's UInt64 bdSeq accepted
            assert host.stats.invalid_payloads == 0 and host.stats.seq_gaps == 0
            assert rebirth_requests(sniffer, GROUP, EDGE) == []

            # the host asks Tahu for a rebirth; Tahu answers with births the host accepts
            await host.request_rebirth(GROUP, EDGE)
            await wait_for(sniffer, lambda m: m.topic == f"spBv1.0/{GROUP}/NBIRTH/{EDGE}", count=2, timeout=10)
            await wait_for(sniffer, lambda m: m.topic == f"spBv1.0/{GROUP}/DBIRTH/{EDGE}/{DEVICE}", count=2)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()  # edge.js exits when stdin closes
            stop_process(proc)
        # Tahu publishes its NDEATH on stop (publishDeath): every tag turns STALE
        await wait_for(sniffer, lambda m: m.topic == f"spBv1.0/{GROUP}/NDEATH/{EDGE}")
        await wait_for(sniffer,
                       lambda m: m.topic == f"{LINE}/Line/Mode" and json.loads(m.payload)["quality"] == "STALE")
        assert host.stats.ndeaths == 1, host.stats.violations


async def test_command_client_rebirths_a_tahu_node_with_the_hosts_bytes(mosquitto: BrokerEndpoint,
                                                                        sniffer: Sniffer) -> None:
    """`uns cmd`'s client asks a Tahu node for a rebirth with the very bytes the host sends (one builder,
    uns.sparkplug.control.rebirth_request): NCMD by name, value true, Boolean datatype, no seq, QoS 0
    (tck-id-operational-behavior-data-commands-ncmd-rebirth-verb/-name/-value, tck-id-payloads-ncmd-seq,
    tck-id-payloads-ncmd-qos); the Tahu node answers with a new NBIRTH and DBIRTH."""
    from uns.sparkplug.control import rebirth_request
    from unshub.command_client import CommandClient

    stamp = 1_700_000_000_000
    proc = start_tahu(mosquitto)
    try:
        await wait_for(sniffer, lambda m: m.topic == f"spBv1.0/{GROUP}/DBIRTH/{EDGE}/{DEVICE}", timeout=20)
        async with CommandClient(mosquitto.url, clock=lambda: stamp) as client:
            await client.request_rebirth(GROUP, EDGE)
            await wait_for(sniffer, lambda m: m.topic == f"spBv1.0/{GROUP}/NBIRTH/{EDGE}", count=2, timeout=10)
            await wait_for(sniffer, lambda m: m.topic == f"spBv1.0/{GROUP}/DBIRTH/{EDGE}/{DEVICE}", count=2)
        sent = rebirth_requests(sniffer, GROUP, EDGE)
        assert [m.payload for m in sent] == [rebirth_request(GROUP, EDGE, stamp).payload]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        stop_process(proc)


async def test_a_tahu_template_instance_is_mirrored_as_nested_json(mosquitto: BrokerEndpoint, sniffer: Sniffer) -> None:
    """A template encoded by Tahu: its definition in the NBIRTH under Tahu's own name convention
    (the metric named after the template, tck-id-payloads-template-definition-nbirth-only), an
    instance referring to it in the DBIRTH (tck-id-payloads-template-instance-ref, complete:
    tck-id-payloads-template-instance-members-birth), then a DDATA with one changed member
    (tck-id-payloads-template-instance-members-data): the UNS shows the whole instance, updated."""
    async with running_host(mosquitto) as host:
        proc = start_tahu(mosquitto, templates=True)
        topic = f"{LINE}/{DEVICE}/Press/Motor"
        try:
            await wait_for(sniffer, lambda m: m.topic == f"{LINE}/{DEVICE}/Press/Tool"
                           and json.loads(m.payload)["value"] == "T-8", timeout=20)
            await wait_for(sniffer, lambda m: m.topic == topic and json.loads(m.payload)["value"]["Speed"] == 1500.25)
            shown = latest_json(sniffer, topic)
            assert (shown["value"], shown["datatype"], shown["quality"]) == (
                {"Speed": 1500.25, "Running": True, "Mode": "AUTO", "Starts": 4000000000}, "Template", "GOOD")
            births = [json.loads(m.payload)["value"] for m in sniffer.snapshot(lambda m: m.topic == topic)]
            assert births[0] == {"Speed": 1450.5, "Running": True, "Mode": "AUTO", "Starts": 4000000000}
            assert latest_json(sniffer, f"{topic}/_meta")["template"] == {
                "name": "Motor", "version": "v1",
                "members": {"Speed": "Double", "Running": "Boolean", "Mode": "String", "Starts": "UInt32"}}
            assert sniffer.snapshot(lambda m: m.topic == f"{LINE}/Motor") == []  # a definition is no tag
            assert host.tracker.counters.violations == {} and host.stats.invalid_payloads == 0
            assert rebirth_requests(sniffer, GROUP, EDGE) == []
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            stop_process(proc)
