"""kill -9 of an edge node that is buffering: what it accepted is in SQLite, and is replayed on restart."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support.mosquitto import mosquitto_broker
from tests.support.net import free_port
from tests.support.sniffer import Sniffer

from .sparkplug_wire import changes, demo, edge_messages, read_progress, wait_until

pytestmark = pytest.mark.mosquitto


def test_accepted_values_survive_sigkill_and_are_replayed_as_historical(tmp_path: Path) -> None:
    data_dir = tmp_path / "edge"
    dead_port = free_port()  # nothing listens: every change is store-and-forwarded
    args = ("--group", "G", "--edge", "E", "--data-dir", str(data_dir), "--devices", "1", "--metrics", "2")
    with demo(tmp_path, "--broker", f"mqtt://127.0.0.1:{dead_port}", "--rate", "400", *args,
              name="buffering") as (proc, progress):
        wait_until(lambda: int(read_progress(progress).get("store_depth", 0)) >= 300, timeout=30,
                   what="300 values in the store")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    submitted_before_kill = int(read_progress(progress)["submitted"])

    db = sqlite3.connect(data_dir / "sparkplug-store.sqlite")
    rows = db.execute("SELECT device, name, value FROM buffer ORDER BY id").fetchall()
    db.close()
    assert len(rows) >= 300
    per_metric: dict[tuple[str, str], list[int]] = defaultdict(list)
    for device, name, value in rows:
        per_metric[(device, name)].append(value)
    for key, values in per_metric.items():  # counters: an accepted value is never missing in the middle
        assert sorted(values) == list(range(1, len(values) + 1)), key
    assert len(rows) <= submitted_before_kill + 400  # the file holds no more than was submitted

    with mosquitto_broker(tmp_path) as broker, Sniffer(broker.host, broker.port) as sniffer:
        with demo(tmp_path, "--broker", broker.url, "--rate", "0", *args, name="replaying") as (_, progress):
            wait_until(lambda: sum(1 for c in changes(edge_messages(sniffer)) if c.historical) >= len(rows),
                       timeout=30, what=f"{len(rows)} historical values")
            wait_until(lambda: read_progress(progress).get("store_depth") == 0, timeout=10, what="an empty store")
        replayed = [c for c in changes(edge_messages(sniffer)) if c.historical]
    expected = sorted((d, n, v) for d, n, v in rows)  # '' = node level in the store
    assert sorted((c.device or "", c.name, c.value) for c in replayed) == expected
