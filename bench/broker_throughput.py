"""Embedded-broker throughput beside Mosquitto (and plain amqtt 0.12.1) in the same run.

Method: one paho publisher process sends
``--count`` messages of ``--size`` bytes to one topic as fast as paho accepts them (QoS 1 with
paho's default window of 20 messages in flight, or ``--inflight N``: at QoS 1 the publisher waits
for PUBACKs, so the window, not the broker, can set the rate); one paho subscriber process,
subscribed with the same QoS, counts them. Runs alternate between the brokers (run 1 of each, then
run 2 of each ...) so a change in the machine's load falls on all of them alike. The clock
(CLOCK_MONOTONIC, system-wide) runs from just before the first publish to the last message received.
Broker CPU is psutil user+sys of the broker PID over the run. Every broker listens on a free
127.0.0.1 port and is stopped by its PID.

Repeat::

    .venv/bin/python bench/broker_throughput.py                    # 50,000 msgs, QoS 0 and 1, 1 run
    .venv/bin/python bench/broker_throughput.py --count 20000 --runs 3 --brokers embedded mosquitto
    .venv/bin/python bench/broker_throughput.py --count 20000 --runs 3 --qos 1 --inflight 100

Needs Debian's ``mosquitto`` (``apt-get install mosquitto``); brokers that are missing are skipped.
An earlier run on the 2-core project machine (50,000 msgs; latest figures in bench/README.md):
plain amqtt ~5,700 msg/s QoS 0 and ~3,100 QoS 1;
Mosquitto ~30,000 QoS 0 (bound by the Python subscriber) and ~7,000 QoS 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from processes import free_port, stop, wait_for_port  # bench/processes.py

REPO = Path(__file__).resolve().parents[1]
TOPIC = "bench/throughput"
IDLE_TIMEOUT = 15.0
TARGET_MSGS = {0: 25_000, 1: 12_000}  # issue 20, paho clients, this 2-core machine
TARGET_RATIO = 0.5  # embedded / Mosquitto in the same run

PLAIN_AMQTT = """
import asyncio, sys
from amqtt.broker import Broker
async def main():
    b = Broker({"listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:%d"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
    await b.start()
    await asyncio.Event().wait()
asyncio.run(main())
"""


@contextmanager
def broker(kind: str, workdir: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    if kind == "embedded":
        conf = workdir / f"embedded-{port}.yaml"
        conf.write_text(f"tcp: {{host: 127.0.0.1, port: {port}}}\nwebsocket: null\n"
                        "demo_anonymous: read-write\nsys_interval: 0\n")
        cmd = [str(Path(sys.executable).parent / "uns"), "--log-level", "WARNING",
               "broker", "run", "--config", str(conf)]
    elif kind == "mosquitto":
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = workdir / f"mosquitto-{port}.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 0\nmax_inflight_messages 0\n")
        cmd = [binary, "-c", str(conf)]
    elif kind == "amqtt":
        cmd = [sys.executable, "-c", PLAIN_AMQTT % port]
    else:
        raise ValueError(kind)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_for_port(port)
        yield port, proc
    finally:
        stop(proc)


def run_subscriber(port: int, qos: int, count: int) -> None:
    import paho.mqtt.client as paho

    received = 0
    last = time.monotonic()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}")

    def on_message(c: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        nonlocal received, last
        received += 1
        last = time.monotonic()
        if received >= count:
            c.disconnect()

    client.on_message = on_message
    client.on_subscribe = lambda c, u, mid, rc, p: print("READY", flush=True)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos)
    client.connect("127.0.0.1", port, keepalive=60)
    while client.loop(timeout=0.5) == paho.MQTT_ERR_SUCCESS:
        if received and time.monotonic() - last > IDLE_TIMEOUT:
            break
    print(f"DONE {received} {last!r}", flush=True)


def run_publisher(port: int, qos: int, count: int, size: int, inflight: int) -> None:
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    client.max_inflight_messages_set(inflight)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    payload = b"x" * size
    started = time.monotonic()
    info = None
    for _ in range(count):
        info = client.publish(TOPIC, payload, qos=qos)
    if info is not None:
        info.wait_for_publish(120)
    print(f"START {started!r}", flush=True)
    client.disconnect()
    client.loop_stop()


def measure(kind: str, qos: int, count: int, size: int, inflight: int, workdir: Path) -> dict[str, float]:
    import psutil

    me = [sys.executable, str(Path(__file__).resolve())]
    with broker(kind, workdir) as (port, proc):
        broker_ps = psutil.Process(proc.pid)
        sub = subprocess.Popen([*me, "--role", "sub", "--port", str(port), "--qos", str(qos), "--count", str(count)],
                               stdout=subprocess.PIPE, text=True)
        try:
            assert sub.stdout is not None
            if sub.stdout.readline().strip() != "READY":
                raise RuntimeError(f"{kind}: subscriber did not subscribe")
            cpu0 = sum(broker_ps.cpu_times()[:2])
            pub = subprocess.run([*me, "--role", "pub", "--port", str(port), "--qos", str(qos), "--count", str(count),
                                  "--size", str(size), "--inflight", str(inflight)],
                                 capture_output=True, text=True, timeout=600)
            started = float(pub.stdout.split("START ", 1)[1].split()[0])
            done = sub.stdout.readline().split()
            sub.wait(30)
            cpu1 = sum(broker_ps.cpu_times()[:2])
        finally:
            stop(sub)
    received, last = int(done[1]), float(done[2])
    elapsed = max(last - started, 1e-9)
    return {"msgs": received / elapsed, "loss": 1 - received / count, "cpu_us": (cpu1 - cpu0) / max(received, 1) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["bench", "sub", "pub"], default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--qos", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--inflight", type=int, default=20, help="the publisher's QoS 1 window (paho's default 20)")
    parser.add_argument("--brokers", nargs="+", default=["embedded", "mosquitto", "amqtt"],
                        choices=["embedded", "mosquitto", "amqtt"])
    args = parser.parse_args()
    if args.role == "sub":
        return run_subscriber(args.port, args.qos[0], args.count)
    if args.role == "pub":
        return run_publisher(args.port, args.qos[0], args.count, args.size, args.inflight)

    brokers = [b for b in args.brokers
               if b != "mosquitto" or shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()]
    print(f"{args.count} messages of {args.size} B, one paho publisher (QoS 1 window {args.inflight}) and one paho "
          f"subscriber process, {args.runs} run(s) alternating between the brokers, median shown")
    print(f"{'broker':<10} {'QoS':>3} {'msg/s':>9} {'loss':>6} {'broker CPU/msg':>15}  runs (msg/s)")
    with tempfile.TemporaryDirectory() as tmp:
        for qos in args.qos:
            medians: dict[str, float] = {}
            done: dict[str, list[dict[str, float]]] = {kind: [] for kind in brokers}
            for _ in range(args.runs):
                for kind in brokers:
                    done[kind].append(measure(kind, qos, args.count, args.size, args.inflight, Path(tmp)))
            for kind in brokers:
                results = done[kind]
                rate = statistics.median(r["msgs"] for r in results)
                runs = " / ".join(f"{r['msgs']:,.0f}" for r in results)
                medians[kind] = rate
                print(f"{kind:<10} {qos:>3} {rate:>9,.0f} {max(r['loss'] for r in results):>6.1%} "
                      f"{statistics.median(r['cpu_us'] for r in results):>12,.0f} µs  "
                      f"{runs}", flush=True)
            if "embedded" in medians and "mosquitto" in medians:
                print(f"    QoS {qos}: mosquitto / embedded = {medians['mosquitto'] / medians['embedded']:.1f}x",
                      end="")
                if "amqtt" in medians:
                    print(f"; embedded / plain amqtt = {medians['embedded'] / medians['amqtt']:.2f}x", end="")
                print(flush=True)
            if "embedded" in medians and qos in TARGET_MSGS:
                print(f"    {target_line(qos, medians['embedded'], medians.get('mosquitto'))}", flush=True)


def target_line(qos: int, embedded: float, mosquitto: float | None) -> str:
    """Issue 20's target beside the measured figure (a benchmark, not a test: it prints)."""
    target = TARGET_MSGS[qos]
    ratio = embedded / mosquitto if mosquitto else None
    met = embedded >= target and (ratio is None or ratio >= TARGET_RATIO)
    shown = f", {ratio:.2f}x Mosquitto" if ratio is not None else ""
    return (f"target QoS {qos}: embedded >= {target:,} msg/s and >= {TARGET_RATIO}x Mosquitto; "
            f"measured {embedded:,.0f} msg/s{shown} -> {'met' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
