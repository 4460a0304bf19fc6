"""The edge node as a separate process (``python -m edge_node.demo``): death by SIGKILL, restarts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.mosquitto import BrokerEndpoint
from tests.support.sniffer import Sniffer

from .sparkplug_wire import bd_seq, demo, edge_messages, kind, payload

pytestmark = pytest.mark.mosquitto


def test_sigkill_fires_the_will_and_bdseq_goes_up_across_restarts(mosquitto: BrokerEndpoint, tmp_path: Path) -> None:
    """The Will is the NDEATH (QoS 1, retain 0) with the bdSeq of the NBIRTH; a restart persists bdSeq.

    tck-id-payloads-ndeath-will-message, -qos, -retain, tck-id-topics-ndeath-payload, tck-id-topics-ndeath-seq,
    tck-id-topics-nbirth-bdseq-matching, tck-id-topics-nbirth-bdseq-increment.
    """
    args = ("--broker", mosquitto.url, "--group", "G", "--edge", "E", "--data-dir", str(tmp_path / "edge"),
            "--rate", "20", "--devices", "1")
    with Sniffer(mosquitto.host, mosquitto.port) as sniffer:
        with demo(tmp_path, *args, name="first") as (proc, _):
            sniffer.wait_for(lambda m: kind(m) == "DDATA", timeout=20)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            sniffer.wait_for(lambda m: kind(m) == "NDEATH", timeout=15)
        with demo(tmp_path, *args, name="second"):
            sniffer.wait_for(lambda m: kind(m) == "NBIRTH", count=2, timeout=20)
        sniffer.wait_for(lambda m: kind(m) == "NDEATH", count=2, timeout=15)
        messages = edge_messages(sniffer)
    births = [m for m in messages if kind(m) == "NBIRTH"]
    deaths = [m for m in messages if kind(m) == "NDEATH"]
    will = deaths[0]
    assert (will.qos, will.retain) == (1, False)
    assert not payload(will).HasField("seq") and [m.name for m in payload(will).metrics] == ["bdSeq"]
    assert payload(will).metrics[0].datatype == 4  # Int64
    assert bd_seq(will) == bd_seq(births[0]) == 0
    assert bd_seq(births[1]) == 1  # persisted in the data dir across the SIGKILL
    assert all(bd_seq(d) == 1 for d in deaths[1:])  # the clean stop of the second process
    # nothing of the first process after its Will
    assert messages.index(will) < messages.index(births[1])
