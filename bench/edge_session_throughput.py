"""Changes per second through the edge session and the Sparkplug codec (no network): CPU µs per change.

Target: <= 50 µs of CPU per change (the design's 20,000 OPC UA changes/s through one edge node on
2 cores leaves about that for the Sparkplug side). Each change goes ``submit`` → batch at the
``Tick`` → timestamp sort → ``Metric`` objects → :func:`uns.sparkplug.codec.encode_payload` →
``Publish`` action → confirmation (as the broker echo would). The MQTT client's own cost
(aiomqtt ≈ 95 µs of CPU per *message*) is per message, not per change, and is
amortised over the batch: at the default 100 ms interval a message carries hundreds of changes.

Workload: ``--tags`` Double tags spread over ``--devices`` devices, ``--rate`` changes per tick
(one publish interval), every change a new value with its own source timestamp.

Repeat with::

    .venv/bin/python bench/edge_session_throughput.py                       # 2,000 changes per tick
    .venv/bin/python bench/edge_session_throughput.py --per-tick 200 --ticks 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_node.model import DeviceOnline, MetricDefinition, MetricUpdate  # noqa: E402
from edge_node.session import (  # noqa: E402
    ConnectStarted,
    DataConfirmed,
    EdgeSession,
    MqttConnected,
    Publish,
    SessionSettings,
    Tick,
)
from uns.sparkplug.datatypes import DataType  # noqa: E402
from uns.sparkplug.model import now_ms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--per-tick", type=int, default=2_000, help="changes per publish interval")
    parser.add_argument("--ticks", type=int, default=500)
    args = parser.parse_args()

    devices = [f"Cell{i}" for i in range(args.devices)]
    defs = [MetricDefinition(devices[i % args.devices], f"Tag/{i}", DataType.Double) for i in range(args.tags)]
    keys = [(d.device_id, d.name) for d in defs]
    session = EdgeSession(SessionSettings("Bench", "Edge"), defs)
    for device in devices:
        session.send(DeviceOnline(device))
    session.send(ConnectStarted())
    session.send(MqttConnected())
    # pre-build the updates so the figure is the session + codec, not the benchmark's own loop
    base = now_ms()
    batches = [[MetricUpdate(*keys[(t * args.per_tick + j) % len(keys)], float(j), base + t)
                for j in range(args.per_tick)] for t in range(min(args.ticks, 50))]
    messages = values = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for t in range(args.ticks):
        submit = session.submit
        for update in batches[t % len(batches)]:
            submit(update)
        for action in session.send(Tick()):
            if isinstance(action, Publish) and action.seq is not None:
                messages += 1
                values += action.values
                session.send(DataConfirmed(action.seq, action.connection))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    changes = args.ticks * args.per_tick
    assert values == changes, (values, changes)
    print(f"changes           {changes:,} ({args.per_tick} per tick over {args.tags:,} tags on {args.devices} devices)")
    print(f"messages          {messages:,} ({changes / messages:.0f} changes per message)")
    print(f"throughput        {changes / wall:,.0f} changes/s (wall)")
    per_change = cpu / changes * 1e6
    print(f"CPU per change    {per_change:.1f} µs  (target <= 50 µs: {'PASS' if per_change <= 50 else 'FAIL'})")


if __name__ == "__main__":
    main()
