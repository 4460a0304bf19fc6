"""How fast the Sparkplug host decodes and mirrors, and how late the UNS mirror is, per broker.

Repeat with::

    .venv/bin/python bench/host_mirror_bench.py                 # Mosquitto and embedded, 2,000 and 10,000/s
    .venv/bin/python bench/host_mirror_bench.py --brokers mosquitto --rates 10000 --mirror-qos 0
    .venv/bin/python bench/host_mirror_bench.py --brokers mosquitto --rates 10000 --mirror-json pydantic  # before
    .venv/bin/python bench/host_mirror_bench.py --json-only --repeat 5    # the value JSON alone, four ways
    .venv/bin/python bench/host_mirror_bench.py --pipeline-only --repeat 5  # the host's own path, no sockets
    .venv/bin/python bench/host_mirror_bench.py --pipeline-only --pipeline-conflation-ms 100  # with fast tags

For each broker (started on a free loopback port, stopped by PID) the host runs in this process
(``SparkplugHost``, default config: conflation 100 ms, QoS 1 retained mirror), and a child process
(this file with ``--child``) plays the edge node and the UNS consumer, so publisher and host do
not share a GIL:

1. throughput: NBIRTH + DBIRTH of ``--tags`` Double metrics, then ``--messages`` DDATA of
   ``--per-message`` aliased metrics as fast as paho sends them (QoS 0). Reported: metrics/s
   decoded by the host (first to last data message handled), mirror publishes/s (PUBACKed), and
   how many changes conflation merged.
2. latency, once per rate of ``--rates`` (default 2,000 and 10,000 metrics/s): that many
   metrics/s for ``--seconds`` over ``max(tags, rate × 0.25 s)`` tags, so each tag changes at most
   every 250 ms and the 100 ms conflation never holds a value back; the value is the send time in
   ms. The child first re-births and waits until the mirror is quiet (the birth burst must not
   count as latency), then records receive - send (publisher → broker → host decode
   → mirror publish → broker → subscriber), p50/p99/max, and received/expected.

Numbers depend on the machine; the design target is p99 under 250 ms at 10,000 changes/s
end-to-end on 2 cores (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUP, EDGE, DEVICE = "acme:bench", "area:line", "cell"
MIRROR_PREFIX = "acme/bench/area/line/cell/"


# ------------------------------------------------------------------------------ the child: edge + consumer


def _child(args: argparse.Namespace) -> None:
    import paho.mqtt.client as mqtt

    from uns.sparkplug.codec import encode_payload
    from uns.sparkplug.datatypes import DataType
    from uns.sparkplug.model import Metric, Payload, now_ms
    from uns.sparkplug.topic import MessageType, node_topic

    seq = 0

    def next_seq() -> int:
        nonlocal seq
        seq = (seq + 1) % 256
        return seq

    names = [f"T{i:05d}" for i in range(args.tags)]
    latencies: list[float] = []
    start_ms = [float("inf")]
    last_rx = [time.monotonic()]
    lock = threading.Lock()

    def on_message(client, userdata, msg) -> None:  # noqa: ANN001
        received = time.time() * 1000
        last_rx[0] = time.monotonic()
        try:
            value = json.loads(msg.payload).get("value")
        except ValueError:
            return
        if isinstance(value, float) and value >= start_ms[0]:
            with lock:
                latencies.append(received - value)

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-edge")
    pub.max_inflight_messages_set(1000)
    pub.connect(args.host, args.port)
    pub.loop_start()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-consumer")
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a, **k: subscribed.set()
    sub.connect(args.host, args.port)
    sub.loop_start()
    sub.subscribe(MIRROR_PREFIX + "#", 0)
    subscribed.wait(10)

    ts = now_ms()
    nbirth = Payload([Metric(name="bdSeq", value=0, datatype=DataType.Int64, timestamp=ts),
                      Metric(name="Node Control/Rebirth", value=False, datatype=DataType.Boolean, timestamp=ts)],
                     timestamp=ts, seq=0)
    pub.publish(node_topic(GROUP, "NBIRTH", EDGE), encode_payload(nbirth, MessageType.NBIRTH))
    dbirth = Payload([Metric(name=n, alias=i + 1, value=0.0, datatype=DataType.Double, timestamp=ts)
                      for i, n in enumerate(names)], timestamp=ts, seq=next_seq())
    pub.publish(node_topic(GROUP, "DBIRTH", EDGE, DEVICE), encode_payload(dbirth, MessageType.DBIRTH))
    time.sleep(1.0)
    quiet_by = time.monotonic() + 30  # the birth's value and _meta burst must be mirrored first
    while time.monotonic() < quiet_by and time.monotonic() - last_rx[0] < 0.5:
        time.sleep(0.05)
    ddata_topic = node_topic(GROUP, "DDATA", EDGE, DEVICE)
    cursor = 0

    def ddata(value_ms: float | None) -> bytes:
        nonlocal cursor
        t = now_ms()
        metrics = []
        for _ in range(args.per_message):
            metrics.append(Metric(alias=cursor + 1, value=value_ms if value_ms is not None else float(t % 100000),
                                  datatype=DataType.Double, timestamp=t))
            cursor = (cursor + 1) % args.tags
        return encode_payload(Payload(metrics, timestamp=t, seq=next_seq()), MessageType.DDATA)

    result: dict[str, object] = {}
    if args.child == "throughput":
        began = time.perf_counter()
        info = None
        for _ in range(args.messages):
            info = pub.publish(ddata_topic, ddata(None))
        assert info is not None
        info.wait_for_publish(60)
        result = {"sent_messages": args.messages, "sent_metrics": args.messages * args.per_message,
                  "publish_s": time.perf_counter() - began}
    else:
        start_ms[0] = time.time() * 1000
        interval = args.per_message / args.rate
        deadline = time.perf_counter() + args.seconds
        next_at = time.perf_counter()
        sent = 0
        while time.perf_counter() < deadline:
            pub.publish(ddata_topic, ddata(time.time() * 1000))
            sent += args.per_message
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        time.sleep(1.5)
        with lock:
            values = sorted(latencies)
        result = {"sent_metrics": sent, "received": len(values)}
        if values:
            result.update(p50_ms=round(values[len(values) // 2], 1),
                          p99_ms=round(values[min(len(values) - 1, int(len(values) * 0.99))], 1),
                          max_ms=round(values[-1], 1), mean_ms=round(statistics.fmean(values), 1))
    pub.loop_stop()
    sub.loop_stop()
    print(json.dumps(result), flush=True)


# ------------------------------------------------------------------------------ the parent: host + brokers


async def _run_child(args: argparse.Namespace, host: str, port: int, mode: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", mode, "--host", host, "--port", str(port), "--tags", str(args.tags),
        "--messages", str(args.messages), "--per-message", str(args.per_message), "--rate", str(args.rate or 1),
        "--seconds", str(args.seconds), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


async def _bench_broker(args: argparse.Namespace, kind: str, host: str, port: int) -> dict:
    from mes_adapter.host import HostConfig, SparkplugHost

    settings: dict[str, object] = {"broker_url": f"mqtt://{host}:{port}", "host_id": f"bench-{kind}",
                                   "conflation_interval_ms": args.conflation_ms, "stale_on_shutdown": False}
    if args.mirror_qos is not None:
        settings["mirror_qos"] = args.mirror_qos  # absent from HostConfig before the mirror publisher
    config = HostConfig(**settings)  # type: ignore[arg-type]
    results: dict[str, object] = {"broker": kind}
    async with SparkplugHost(config) as sp_host:
        await sp_host.wait_online(20)
        # 1. throughput
        samples: list[tuple[float, int, int]] = []
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                s = sp_host.stats
                samples.append((time.perf_counter(), s.metrics_decoded, s.mirror_published))
                await asyncio.sleep(0.01)

        sampler = asyncio.create_task(sample())
        child = await _run_child(args, host, port, "throughput")
        expected = args.tags + child["sent_metrics"]  # the DBIRTH's metrics count too
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline and (sp_host.stats.metrics_decoded < expected
                                                  or sp_host.stats.mirror_pending):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        stop.set()
        await sampler
        first = next(s for s in samples if s[1] > args.tags)
        last_decode = next(s for s in samples if s[1] >= samples[-1][1])
        last_mirror = next(s for s in samples if s[2] >= samples[-1][2])
        base_mirror = max(s[2] for s in samples if s[0] <= first[0])
        stats = sp_host.stats
        results["throughput"] = {
            "metrics_sent": child["sent_metrics"], "metrics_decoded": stats.metrics_decoded - args.tags,
            "decoded_per_s": round((last_decode[1] - first[1] + args.per_message)
                                   / max(1e-3, last_decode[0] - first[0])),
            "mirror_published": last_mirror[2] - base_mirror,
            "mirror_published_per_s": round((last_mirror[2] - base_mirror) / max(1e-3, last_mirror[0] - first[0])),
            "conflated": stats.mirror_conflated, "publisher_s": round(child["publish_s"], 2),
            "invalid": stats.invalid_payloads, "seq_gaps": stats.seq_gaps,
        }
        # 2. latency, per rate, each tag changing at most every 250 ms (no conflation)
        results["latency"] = []
        for rate in args.rates:
            tags = max(args.tags, int(rate * 0.25))
            cpu_before = time.process_time()  # this process is the host (+ mirror); the child is not
            decoded_before = sp_host.stats.metrics_decoded
            child = await _run_child(argparse.Namespace(**{**vars(args), "rate": rate, "tags": tags}),
                                     host, port, "latency")
            # a starved host is still working off its backlog: that CPU counts too
            settle_by = time.perf_counter() + 60
            while time.perf_counter() < settle_by and (
                    sp_host.stats.metrics_decoded < decoded_before + tags + child["sent_metrics"]
                    or sp_host.stats.mirror_pending):
                await asyncio.sleep(0.05)
            cpu_s = time.process_time() - cpu_before
            results["latency"].append({"rate_metrics_per_s": rate, "tags": tags, **child,
                                       "host_cpu_us_per_change": round(cpu_s * 1e6 / max(1, child["sent_metrics"]), 1),
                                       "host_mirror_lag_ms": sp_host.stats.mirror_lag_ms})
    return results


async def _publisher_cost(url: str, link: str, messages: int, topics: int) -> float:
    """Host CPU µs per mirror message through :class:`MirrorPublisher` alone (QoS 1, retained):
    ``link`` "wire" is the default (uns.mqtt_wire), "paho" the paho link it replaced (issue 20)."""
    from mes_adapter.host import mirror_publisher as mp
    from mes_adapter.host.mirror import UnsMirror
    from uns.mqtt_url import parse_broker_url

    saved = mp.WireLink
    if link == "paho":
        mp.WireLink = mp._Link  # type: ignore[misc,assignment]  # the bench only: run() picks the link by name
    try:
        publisher = mp.MirrorPublisher(UnsMirror(interval_ms=0), parse_broker_url(url), f"bench-{link}")
        task = asyncio.create_task(publisher.run())
        while not publisher.connected:
            await asyncio.sleep(0.01)
        names = [f"{MIRROR_PREFIX}P{i:05d}" for i in range(topics)]
        rounds = max(1, messages // topics)
        payloads = [json.dumps({"value": float(r), "quality": "GOOD", "timestamp": 1_700_000_000_000 + r}).encode()
                    for r in range(rounds)]
        began = time.process_time()
        for payload in payloads:  # every message is published: each round waits for the previous
            for name in names:
                publisher.mirror._queue(name, payload, 0, 0)
            publisher.wake()
            if not await publisher.flush(60):
                raise SystemExit(f"mirror publisher ({link}) did not confirm a round")
        cpu_s = time.process_time() - began
        await publisher.close(task, flush_s=1)
        return cpu_s * 1e6 / (rounds * topics)
    finally:
        mp.WireLink = saved  # type: ignore[misc]


async def _gmqtt_cost(host: str, port: int, messages: int, topics: int) -> float | None:
    """The same rounds published with gmqtt (if installed; not a dependency): its raw publish and
    PUBACK cost, without the mirror's bookkeeping that the two rows above include."""
    try:
        from gmqtt import Client  # type: ignore[import-not-found]
    except ImportError:
        return None
    client = Client("bench-gmqtt")
    await client.connect(host, port, version=4)
    names = [f"{MIRROR_PREFIX}G{i:05d}" for i in range(topics)]
    rounds = max(1, messages // topics)
    payloads = [json.dumps({"value": float(r), "quality": "GOOD", "timestamp": 1_700_000_000_000 + r}).encode()
                for r in range(rounds)]
    began = time.process_time()
    for payload in payloads:
        for name in names:
            client.publish(name, payload, qos=1, retain=True)
        await client._persistent_storage.wait_empty()  # every PUBACK of the round is in
    cpu_s = time.process_time() - began
    await client.disconnect()
    return cpu_s * 1e6 / (rounds * topics)


def _json_cost(repeat: int, count: int = 20_000) -> None:
    """CPU µs per mirror value payload, built four ways for the same Double states (one process,
    no broker): the pydantic model (before), ``json.dumps`` of a dict, pydantic-core's ``to_json``
    of a dict, and ``value_json`` (the hand-built bytes the mirror uses since issue 20)."""
    from pydantic_core import to_json

    from mes_adapter.host.live_model import MetricState
    from mes_adapter.host.mirror import UnsMirror
    from mes_adapter.host.template_json import uns_value
    from tests.support.mirror_json import model_value_payload
    from uns.conventions import Quality

    states = [MetricState(GROUP, EDGE, DEVICE, f"T{i:05d}", 1_764_700_000_000 + i * 0.125, "Double", Quality.GOOD,
                          1_764_700_000_000 + i, 1_764_700_000_000 + i, 1_764_700_000_000 + i, status_code=0,
                          unit="degC") for i in range(count)]

    def fields(s: MetricState) -> dict:
        return {"value": uns_value(s.value), "timestamp_ms": s.timestamp_ms, "quality": s.quality.value,
                "status_code": s.status_code, "datatype": s.datatype, "unit": s.unit,
                "is_historical": False, "future_timestamp": s.future_timestamp}

    builders = {
        "pydantic UnsValue (before)": model_value_payload,
        "json.dumps of a dict": lambda s: json.dumps(fields(s), separators=(",", ":"), ensure_ascii=False).encode(),
        "pydantic_core.to_json of a dict": lambda s: to_json(fields(s)),
        "value_json (hand-built, now)": UnsMirror.value_payload,
    }
    reference = [model_value_payload(s) for s in states]
    print(f"\nmirror value JSON, CPU µs per payload ({count} Double states, {repeat} runs, median; "
          "'same bytes' compares with the pydantic model)")
    for name, build in builders.items():
        runs = []
        for _ in range(repeat):
            began = time.process_time()
            out = [build(s) for s in states]
            runs.append((time.process_time() - began) * 1e6 / count)
        print(f"  {name:<32} median {statistics.median(runs):5.2f}  range {min(runs):.2f}-{max(runs):.2f}"
              f"  same bytes: {out == reference}")


def _pipeline_cost(args: argparse.Namespace) -> None:
    """CPU µs per change of the host's own per-change path, without sockets or the event loop:
    ``SparkplugHost.handle_message`` (tracker with decode, live model, mirror offer) for DDATA of
    ``--per-message`` Double metrics over ``--tags`` aliases, then ``UnsMirror.take`` and the
    mirror's PUBLISH bytes (``PublisherConnection.publish_batch``, QoS 1) with their PUBACKs fed
    back. Repeatable on a busy machine where the end-to-end figure is noise; sockets, asyncio and
    the broker are what the end-to-end figure adds. ``--pipeline-conflation-ms`` (default 0: every
    change is sent) sets the mirror's conflation interval; the clock moves 1 ms per message, so
    with 2,500 tags and 50 per message each tag changes every 50 ms and 100 ms conflates about
    half of the changes (what is still held at the end is taken and counted too)."""
    from mes_adapter.host import HostConfig, SparkplugHost
    from uns.mqtt_wire import PublisherConnection
    from uns.sparkplug.codec import encode_payload
    from uns.sparkplug.datatypes import DataType
    from uns.sparkplug.model import Metric, Payload
    from uns.sparkplug.topic import MessageType, node_topic

    tags, per = args.tags, args.per_message
    host = SparkplugHost(HostConfig(broker_url="mqtt://127.0.0.1:1", host_id="bench-pipeline",
                                    conflation_interval_ms=args.pipeline_conflation_ms))
    clock = [1_764_700_000_000]
    host._clock = lambda: clock[0]  # the bench only: a clock that moves by the message
    ts = clock[0]
    births = [
        (node_topic(GROUP, "NBIRTH", EDGE), encode_payload(Payload(
            [Metric(name="bdSeq", value=0, datatype=DataType.Int64, timestamp=ts)], timestamp=ts, seq=0),
            MessageType.NBIRTH)),
        (node_topic(GROUP, "DBIRTH", EDGE, DEVICE), encode_payload(Payload(
            [Metric(name=f"T{i:05d}", alias=i + 1, value=0.0, datatype=DataType.Double, timestamp=ts)
             for i in range(tags)], timestamp=ts, seq=1), MessageType.DBIRTH)),
    ]
    rounds = max(1, args.messages * per // tags)
    topic = node_topic(GROUP, "DDATA", EDGE, DEVICE)
    data = []
    seq, cursor = 1, 0
    for r in range(rounds * tags // per):
        seq = (seq + 1) % 256
        metrics = [Metric(alias=(cursor + k) % tags + 1, value=r + k / 1000, datatype=DataType.Double,
                          timestamp=ts + r + 1) for k in range(per)]
        cursor = (cursor + per) % tags
        data.append(encode_payload(Payload(metrics, timestamp=ts + r + 1, seq=seq), MessageType.DDATA))
    runs = []
    for _ in range(args.repeat):
        conn = PublisherConnection()
        conn.connect("bench-pipeline")
        conn.receive_data(b"\x20\x02\x00\x00")
        for birth_topic, payload in births:
            host.handle_message(birth_topic, payload)
        host.mirror.take(clock[0])
        began = time.process_time()
        for payload in data:
            clock[0] += 1
            host.handle_message(topic, payload)
            batch = host.mirror.take(clock[0])
            out, _ = conn.publish_batch(batch, 1)
            conn.receive_data(b"".join(b"\x40\x02" + pid.to_bytes(2, "big") for pid in list(conn.in_flight)))
        clock[0] += args.pipeline_conflation_ms  # what conflation still holds goes out too
        while (batch := host.mirror.take(clock[0], conn.room)):
            out, _ = conn.publish_batch(batch, 1)
            conn.receive_data(b"".join(b"\x40\x02" + pid.to_bytes(2, "big") for pid in list(conn.in_flight)))
        runs.append((time.process_time() - began) * 1e6 / (len(data) * per))
        host.tracker.host_disconnected(clock[0])
    print(f"\nhost per-change path without sockets (decode, model, mirror, PUBLISH bytes), CPU µs per change "
          f"({len(data) * per} changes over {tags} tags, conflation {args.pipeline_conflation_ms} ms, "
          f"{host.mirror.counters.conflated} conflated, {args.repeat} runs): median {statistics.median(runs):.2f}  "
          f"range {min(runs):.2f}-{max(runs):.2f}")


async def _main_publisher(args: argparse.Namespace) -> None:
    from tests.support.mosquitto import mosquitto_broker

    with tempfile.TemporaryDirectory(prefix="host-bench-") as tmp, mosquitto_broker(Path(tmp)) as broker:
        costs: dict[str, list[float]] = {"paho": [], "wire": []}
        raw: list[float] = []
        for _ in range(args.repeat):
            for link in costs:
                costs[link].append(await _publisher_cost(broker.url, link, args.messages * 25, args.tags))
            gmqtt = await _gmqtt_cost(broker.host, broker.port, args.messages * 25, args.tags)
            if gmqtt is not None:
                raw.append(gmqtt)
        if raw:
            costs["gmqtt (raw publish only)"] = raw
    print("\nmirror publisher alone on Mosquitto, host CPU µs per message (QoS 1 retained; "
          f"{args.messages * 25} messages over {args.tags} topics, {args.repeat} runs)")
    for link, values in costs.items():
        print(f"  {link:<24} median {statistics.median(values):6.1f}  runs {', '.join(f'{v:.1f}' for v in values)}")


async def _main(args: argparse.Namespace) -> list[dict]:
    from tests.support.mosquitto import mosquitto_broker

    out = []
    with tempfile.TemporaryDirectory(prefix="host-bench-") as tmp:
        for kind in args.brokers.split(","):
            with ExitStack() as stack:
                workdir = Path(tmp) / kind
                workdir.mkdir()
                if kind == "mosquitto":
                    broker = stack.enter_context(mosquitto_broker(workdir))
                elif kind == "embedded":
                    try:
                        from tests.support.embedded_broker import embedded_broker
                    except ImportError:
                        print("embedded broker not available (tests/support/embedded_broker.py)", file=sys.stderr)
                        continue
                    broker = stack.enter_context(embedded_broker(workdir, websocket=False))
                else:
                    raise SystemExit(f"unknown broker {kind!r}")
                result = await _bench_broker(args, kind, broker.host, broker.port)
                print(json.dumps(result), flush=True)
                out.append(result)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="mosquitto,embedded")
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--per-message", type=int, default=50)
    parser.add_argument("--rates", default="2000,10000", help="metrics/s of each latency phase, comma-separated")
    parser.add_argument("--rate", type=int, help="one latency phase at this rate (instead of --rates)")
    parser.add_argument("--mirror-qos", type=int, choices=[0, 1], help="HostConfig.mirror_qos (default: the host's)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conflation-ms", type=int, default=100)
    parser.add_argument("--mirror-link", choices=["wire", "paho"], default="wire",
                        help="the mirror's MQTT link: wire (default, uns.mqtt_wire) or paho (before issue 20)")
    parser.add_argument("--mirror-json", choices=["fast", "pydantic"], default="fast",
                        help="how the mirror builds each value JSON: fast (default, uns.uns_payload.value_json) "
                             "or the pydantic model it replaced (before issue 20's JSON change; same bytes)")
    parser.add_argument("--json-only", action="store_true",
                        help="only the cost of building the mirror's value JSON, four ways (no broker)")
    parser.add_argument("--publisher-only", action="store_true",
                        help="only the mirror publisher's own cost, wire vs paho link, on Mosquitto")
    parser.add_argument("--pipeline-only", action="store_true",
                        help="only the host's per-change path without sockets (decode, model, mirror, PUBLISH bytes)")
    parser.add_argument("--pipeline-conflation-ms", type=int, default=0,
                        help="the mirror's conflation interval in --pipeline-only (0: every change sent)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of --publisher-only / --json-only / --pipeline-only (median printed)")
    parser.add_argument("--child", choices=["throughput", "latency"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    if args.publisher_only:
        asyncio.run(_main_publisher(args))
        return
    if args.json_only:
        _json_cost(args.repeat)
        return
    if args.pipeline_only:
        _pipeline_cost(args)
        return
    args.rates = [args.rate] if args.rate else [int(r) for r in args.rates.split(",")]
    if args.mirror_link == "paho":
        from mes_adapter.host import mirror_publisher as mp
        mp.WireLink = mp._Link  # type: ignore[misc,assignment]  # the bench only: run() picks the link by name
    if args.mirror_json == "pydantic":
        from mes_adapter.host.mirror import UnsMirror
        from tests.support.mirror_json import model_value_payload
        UnsMirror.value_payload = staticmethod(model_value_payload)  # type: ignore[method-assign]  # the bench only
    results = asyncio.run(_main(args))
    print("\nbroker     decoded/s  mirrored/s  conflated | rate/s  latency p50/p99/max ms  received/expected"
          "  host CPU µs/change (target <= 20 at 10,000/s)")
    for r in results:
        t = r["throughput"]
        for i, lat in enumerate(r["latency"]):
            head = (f"{r['broker']:<10} {t['decoded_per_s']:>9}  {t['mirror_published_per_s']:>10}  {t['conflated']:>9}"
                    if i == 0 else " " * 43)
            print(f"{head} | {lat['rate_metrics_per_s']:>6}  "
                  f"{lat.get('p50_ms')}/{lat.get('p99_ms')}/{lat.get('max_ms'):<12}"
                  f"  {lat['received']}/{lat['sent_metrics']}  {lat['host_cpu_us_per_change']}")


if __name__ == "__main__":
    main()
