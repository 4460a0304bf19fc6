"""Store-and-forward replay speed: a million buffered values written, then replayed, none lost or doubled.

Target (bench/README.md): 1,000,000 buffered values replayed at over 50,000 values/s
with none lost or duplicated. The replay here is the whole edge-side path except the socket:
:class:`edge_node.store.SparkplugStore` reads batches in source-time order, the
:class:`edge_node.session.EdgeSession` encodes them as ``is_historical`` DDATA/NDATA (codec
included), and each message is confirmed at once (as a broker echo would) so its rows are deleted
by id range. Every published payload is decoded again at the end to check that each buffered
value appears exactly once. The clock is the real one; ticks are driven as fast as possible, so
the figure is the CPU-bound ceiling (the client paces to ``replay_values_per_tick`` per interval).

Writes go through :meth:`SparkplugStore.append` in batches of one publish interval's worth
(``--batch``), like the live edge node does while disconnected.

Repeat with::

    .venv/bin/python bench/edge_store_replay.py                  # 1,000,000 values, synchronous=FULL
    .venv/bin/python bench/edge_store_replay.py --values 100000 --sync NORMAL
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_node.model import DeviceOnline, MetricDefinition, MetricUpdate  # noqa: E402
from edge_node.session import (  # noqa: E402
    ConnectStarted,
    DataConfirmed,
    EdgeSession,
    FetchHistory,
    HistoryFetched,
    MqttConnected,
    Publish,
    SessionSettings,
    StoreDelete,
    Tick,
)
from edge_node.store import SparkplugStore  # noqa: E402
from uns.sparkplug import sparkplug_b_pb2 as pb  # noqa: E402
from uns.sparkplug.datatypes import DataType  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--metrics", type=int, default=100, help="metrics per device (4 devices)")
    parser.add_argument("--batch", type=int, default=2_000, help="values per store write")
    parser.add_argument("--per-tick", type=int, default=10_000, help="replay_values_per_tick")
    parser.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"])
    args = parser.parse_args()

    devices = [f"D{i}" for i in range(4)]
    defs = [MetricDefinition(d, f"M{i}", DataType.Double) for d in devices for i in range(args.metrics)]
    keys = [(d.device_id, d.name) for d in defs]
    datatype = {k: DataType.Double for k in keys}

    with tempfile.TemporaryDirectory() as tmp:
        store = SparkplugStore(Path(tmp) / "store.sqlite", max_values=args.values + 1, synchronous=args.sync)
        t0 = time.perf_counter()
        batch: list[MetricUpdate] = []
        base = 1_700_000_000_000
        for i in range(args.values):
            device, name = keys[i % len(keys)]
            batch.append(MetricUpdate(device, name, float(i), base + i))
            if len(batch) >= args.batch:
                store.append(batch, lambda d, n: datatype[(d, n)])
                batch = []
        if batch:
            store.append(batch, lambda d, n: datatype[(d, n)])
        write_s = time.perf_counter() - t0
        assert store.depth == args.values

        settings = SessionSettings("Bench", "Edge", replay_values_per_tick=args.per_tick,
                                   replay_max_in_flight=args.per_tick * 2, max_metrics_per_message=1000)
        session = EdgeSession(settings, defs, has_backlog=True)
        for device in devices:
            session.send(DeviceOnline(device))
        session.send(ConnectStarted())
        session.send(MqttConnected())
        seen = bytearray(args.values)  # one flag per value (value i == float(i))
        published = 0
        t0 = time.perf_counter()
        ticks = 0
        while store.depth > 0:
            ticks += 1
            queue = list(session.send(Tick()))
            while queue:
                action = queue.pop(0)
                if isinstance(action, FetchHistory):
                    rows = store.fetch(action.limit, after=action.after, devices=action.devices)
                    queue += session.send(HistoryFetched(rows, exhausted=len(rows) < action.limit))
                elif isinstance(action, Publish):
                    if action.seq is not None and action.message_type.value.endswith("DATA"):
                        for metric in pb.Payload.FromString(action.payload).metrics:
                            index = int(metric.double_value)
                            seen[index] += 1
                            published += 1
                        queue += session.send(DataConfirmed(action.seq, action.connection))
                elif isinstance(action, StoreDelete):
                    store.delete(action.ids)
            if ticks > args.values:
                raise SystemExit("replay does not converge")
        replay_s = time.perf_counter() - t0
        lost = seen.count(0)
        doubled = sum(1 for flag in seen if flag > 1)
        store.close()

    print(f"values            {args.values:,} ({len(keys)} metrics on {len(devices)} devices), synchronous={args.sync}")
    print(f"write             {write_s:.2f} s  = {args.values / write_s:,.0f} values/s (batches of {args.batch})")
    print(f"replay            {replay_s:.2f} s  = {args.values / replay_s:,.0f} values/s "
          f"({ticks} ticks of <= {args.per_tick}; read + encode + confirm + ranged delete)")
    print(f"published         {published:,}; lost {lost}; duplicated {doubled}")
    ok = lost == 0 and doubled == 0 and args.values / replay_s > 50_000
    print("target            > 50,000 values/s, zero loss, zero duplicates:", "PASS" if ok else "FAIL")
    if lost or doubled:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
