"""A tiny edge node publishing synthetic counters, for subprocess tests and benchmarks.

    python -m edge_node.demo --broker mqtt://127.0.0.1:1883 --group G --edge E --data-dir /tmp/edge \\
        --rate 50 [--devices 2] [--metrics 3] [--primary-host H] [--count N] [--progress FILE]

Every metric is a counter (Int64) that goes up by one per change, so a test can tell exactly which
changes arrived: each (metric, value) pair is one change. Node metrics are ``Node/C<i>``, device
``D<j>`` metrics ``C<i>``. ``--rate`` is changes per second in total (0 = none, only births).
``--count`` stops submitting after that many changes. ``--progress FILE`` rewrites FILE with a JSON
object of counters every 0.2 s (written atomically), so a test can watch without parsing logs.
SIGTERM/SIGINT stop cleanly (NDEATH, then DISCONNECT); SIGKILL is what the Will is for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path

from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import now_ms

from .model import DeviceOnline, MetricDefinition, MetricUpdate
from .mqtt_client import SparkplugEdgeClient
from .sparkplug_config import EdgeSparkplugConfig


def definitions(devices: int, metrics: int) -> list[MetricDefinition]:
    out = [MetricDefinition(None, f"Node/C{i}", DataType.Int64) for i in range(metrics)]
    for d in range(devices):
        out += [MetricDefinition(f"D{d}", f"C{i}", DataType.Int64, writable=True) for i in range(metrics)]
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edge_node.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--broker", action="append", required=True, help="broker URL; repeat for failover")
    parser.add_argument("--group", default="Demo:Site")
    parser.add_argument("--edge", default="Area:Line")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=50.0, help="changes per second in total")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--metrics", type=int, default=3, help="metrics per device and on the node")
    parser.add_argument("--count", type=int, default=None, help="stop submitting after this many changes")
    parser.add_argument("--primary-host", default=None)
    parser.add_argument("--publish-interval-ms", type=int, default=100)
    parser.add_argument("--mqtt-version", default="5", choices=["5", "3.1.1"])
    parser.add_argument("--reconnect-min-s", type=float, default=0.2)
    parser.add_argument("--reconnect-max-s", type=float, default=2.0)
    parser.add_argument("--rebirth-throttle-s", type=float, default=1.0)
    parser.add_argument("--store-sync", default="FULL", choices=["NORMAL", "FULL"])
    parser.add_argument("--progress", type=Path, default=None)
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, object]:
    config = EdgeSparkplugConfig(
        brokers=args.broker, group_id=args.group, edge_node_id=args.edge, primary_host_id=args.primary_host,
        mqtt_version=args.mqtt_version, publish_interval_ms=args.publish_interval_ms,
        reconnect_min_s=args.reconnect_min_s, reconnect_max_s=args.reconnect_max_s,
        rebirth_throttle_s=args.rebirth_throttle_s, keepalive_s=5,
        store={"synchronous": args.store_sync},
    )
    defs = definitions(args.devices, args.metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    counters = {(d.device_id, d.name): 0 for d in defs}
    keys = list(counters)
    submitted = 0
    async with SparkplugEdgeClient(config, defs, args.data_dir) as client:
        for d in range(args.devices):
            await client.device_online(DeviceOnline(f"D{d}"))

        def progress() -> dict[str, object]:
            return {"pid": os.getpid(), "submitted": submitted, **client.stats.as_dict()}

        async def report() -> None:
            while True:
                if args.progress is not None:
                    tmp = args.progress.with_suffix(".tmp")
                    tmp.write_text(json.dumps(progress()))
                    os.replace(tmp, args.progress)
                await asyncio.sleep(0.2)

        reporter = loop.create_task(report())
        period = 1.0 / args.rate if args.rate > 0 else None
        next_at = loop.time()
        index = 0
        while not stop.is_set():
            if period is None or (args.count is not None and submitted >= args.count):
                await asyncio.wait([loop.create_task(stop.wait())], timeout=0.2)
                continue
            next_at += period
            delay = next_at - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            key = keys[index % len(keys)]
            index += 1
            counters[key] += 1
            client.submit(MetricUpdate(key[0], key[1], counters[key], now_ms()))
            submitted += 1
        reporter.cancel()
        final = progress()
    final = {**final, "stopped": True}
    if args.progress is not None:
        args.progress.write_text(json.dumps(final))
    return final


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
