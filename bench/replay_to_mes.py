"""A store-and-forward replay of 1,000,000 historical values into the MES store, through the real
Sparkplug host on Mosquitto: how many arrive (all of them, or the run fails) and how fast.

Repeat with::

    .venv/bin/python bench/replay_to_mes.py                       # 1,000,000 values, 1,000 per message
    .venv/bin/python bench/replay_to_mes.py --values 200000 --high-water 1000

The adapter's service (host, ingest, records and counter stores on SQLite in a temp dir) runs in
this process; a child process (this file with ``--child``) plays the edge node: NBIRTH + DBIRTH,
then the values as DDATA with ``is_historical`` (two device metrics, one value per millisecond
each, an hour ago). The ingest change stream is lossless with a high-water mark (``--high-water``,
the host's ``change_stream_size``): when ingest is behind, the host's MQTT reader waits instead of
dropping. Printed: values stored / sent, seconds from the first publish to the last row stored,
values/s, and whether the ingest stream ever dropped (it must not). The design target is "none
lost or duplicated at over 50,000 values/s".
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _child(args: argparse.Namespace) -> None:
    from tests.adapter.edge import CELL, DEVICE_METRICS, EDGE, GROUP, Edge
    from uns.sparkplug.codec import encode_payload
    from uns.sparkplug.model import Metric, Payload, now_ms
    from uns.sparkplug.topic import MessageType, node_topic

    half = args.values // 2
    with Edge("127.0.0.1", args.port) as edge:
        edge.birth()
        time.sleep(1.0)
        t0 = args.t0
        print("start", time.time(), flush=True)
        speed, temp = DEVICE_METRICS["Speed"], DEVICE_METRICS["Temperature"]
        for start in range(0, half, args.per_message // 2):
            stop = min(half, start + args.per_message // 2)
            metrics = [Metric(alias=speed[0], datatype=speed[1], value=float(i), timestamp=t0 + i,
                              is_historical=True) for i in range(start, stop)]
            metrics += [Metric(alias=temp[0], datatype=temp[1], value=float(i % 100), timestamp=t0 + i,
                               is_historical=True) for i in range(start, stop)]
            payload = encode_payload(Payload(metrics, timestamp=now_ms(), seq=edge._next()), MessageType.DDATA)  # noqa: SLF001
            edge.client.publish(node_topic(GROUP, MessageType.DDATA, EDGE, CELL), payload, qos=1)
        time.sleep(2.0)


async def _main(args: argparse.Namespace) -> None:
    import yaml

    from mes_adapter.config.application import load_adapter_config
    from mes_adapter.service import AdapterService
    from tests.adapter.edge import LINE
    from tests.adapter.setup import write_files
    from tests.support.mosquitto import mosquitto_broker
    from tests.support.net import free_port

    with tempfile.TemporaryDirectory() as tmp, mosquitto_broker(Path(tmp)) as broker:
        files = write_files(Path(tmp), broker.url, free_port())
        config_file = files.directory / "adapter.yaml"
        config = yaml.safe_load(config_file.read_text())
        config["host"]["change_stream_size"] = args.high_water
        config_file.write_text(yaml.safe_dump(config))
        service = AdapterService(load_adapter_config(config_file))
        await service.start()
        try:
            await service.host.wait_online(15)
            [stream] = [s for s in service.host.model._streams if s.lossless]  # noqa: SLF001
            t0 = int(time.time() * 1000) - 3_600_000
            child = subprocess.Popen([sys.executable, __file__, "--child", "--port", str(broker.port), "--values",
                                      str(args.values), "--per-message", str(args.per_message), "--t0", str(t0)],
                                     stdout=subprocess.PIPE, text=True)
            started = float(child.stdout.readline().split()[1])  # type: ignore[union-attr]
            half = args.values // 2
            stored, deadline = 0, time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                service.ingest.flush()
                stored = service.record_store._conn.execute(  # noqa: SLF001 - a COUNT, not 1M decoded rows
                    "SELECT COUNT(*) FROM record WHERE line = ? AND source_ts_ms >= ? AND source_ts_ms < ?"
                    " AND metric IN ('Speed', 'Temperature')", (LINE, t0, t0 + half)).fetchone()[0]
                if stored >= args.values:
                    break
            elapsed = time.time() - started
            child.wait(timeout=30)
            print(f"values sent            {args.values:>12,}")
            print(f"values stored          {stored:>12,}  ({'complete' if stored == args.values else 'INCOMPLETE'})")
            print(f"seconds (publish→rows) {elapsed:>12.1f}  (resolution 0.5 s)")
            print(f"values/s               {stored / elapsed:>12,.0f}")
            print(f"ingest stream dropped  {stream.dropped:>12,}  (high-water mark {args.high_water:,})")
            print(f"ingest errors          {service.ingest_errors:>12,}")
            if stored != args.values or stream.dropped:
                raise SystemExit(1)
        finally:
            await service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--per-message", type=int, default=1_000)
    parser.add_argument("--high-water", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
    else:
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
