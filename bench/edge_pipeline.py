"""The whole edge pipeline as real processes: OPC UA changes/s carried to the broker, CPU, RSS, latency.

What it measures, per scenario (``--tags``, default 1,000 and 10,000):

* one Mosquitto (free loopback port, ``max_queued_messages 0``, no persistence);
* ``--simulators`` OPC UA load servers, the tags split evenly between them, each its own endpoint on
  a free port. Every synthetic Double changes every ``1/R`` s; all tags of one server share the
  step's SourceTimestamp. ``--source`` picks the server per scenario:

  - ``node-opcua`` (default): ``bench/loadgen/opcua_load_server.js`` (installed with ``npm ci`` on
    first use). It serves the same namespace, node ids and values as ``uns sim``; 10,000 tags at
    2 Hz cost it ~0.25 core, so on a 2-core machine the edge node gets the other core;
  - ``asyncua``: ``uns sim run --extra-tags N --extra-rate-hz R``, our own simulator. An asyncua
    server saturates near 16,000 changes/s per process; four of them for 10,000 tags at 2 Hz took
    1.6 of the 2 cores, which starved the edge node (kept as a reference);
* one ``uns edge run --config plant.yaml``: the generated tag map covers every synthetic tag, one
  endpoint per server, one Sparkplug device per server (``Sim0``, ``Sim1``...),
  ``publish_interval_ms`` 100, no primary host, every other setting at its default
  (``confirm_delivery`` on, store-and-forward SQLite ``synchronous FULL``), except
  ``sampling_interval_ms: 0`` against node-opcua (report every change as written: node-opcua
  samples with a timer per item, which at 10,000 items costs the load server a core);
* a paho subscriber (a thread of this process) on ``spBv1.0/#`` that stores each message with its
  receive time (``time.time()``, the same clock the simulators stamp with). Decoding happens after the
  run with :class:`uns.sparkplug.EdgeNodeCatalog`, so the subscriber costs next to nothing while the
  window runs.

After the births and a ``--warmup`` the steady window of ``--seconds`` starts, then ``--drain`` s
let late values arrive. Reported:

* **offered** changes/s: tags x rate (what the simulators are asked for);
* **produced** changes/s: the simulator steps whose SourceTimestamp lies in the window (a step's
  number is recovered from any delivered value of it, see ``simulator.model.synthetic_value``)
  x tags per simulator. A simulator that cannot keep up skips steps, so produced < offered;
* **in** changes/s: distinct (device, metric, SourceTimestamp) delivered whose timestamp lies in the
  window; **loss** = 1 - in / produced. A change can be lost before the edge: the edge's monitored
  items have ``QueueSize 1`` per 100 ms publishing interval, so two changes of one tag in one
  interval are conflated by the OPC UA server (by design: the newest wins);
* **out** changes/s: data metrics received by the subscriber in the window (by receive time);
* **edge CPU µs/change**: psutil user+sys of the edge PID over the window / metrics received in it;
  also the CPU of the simulators, Mosquitto and this process, to show how loaded the machine was;
* **edge RSS** at the end of the window (and its peak over 1 s samples);
* **latency** p50/p95/p99/max of receive time - metric timestamp (= OPC UA SourceTimestamp). It
  includes the simulator's own write loop (the timestamp is taken before the step's writes),
  the OPC UA publishing interval (100 ms) and the edge publish interval (100 ms);
* health of the run: OPC UA sessions the edge lost (its log) and DBIRTHs seen in the window (each
  is a re-subscription of a whole simulator); how long each simulator takes to answer a read, from a
  separate probe client (asyncua's Client drops a session whose server takes over 1 s to answer its
  health read, see ``--asyncua-watchdog-s``); produced changes/s read from the simulators directly;
  CPU of other processes on the machine ("others").

Targets (bench/README.md, the edge node issue): at most 50 µs of edge CPU per change
(20,000 changes/s on one core); RSS under 150 MB at 10,000 tags. One asyncua server saturates near
16,000 changes/s per process, hence several simulators. Every process runs on
the same machine (2 cores in CI): simulators, broker and edge compete for the cores, so the numbers
are a floor, not the edge node's ceiling.

Repeat with::

    .venv/bin/python bench/edge_pipeline.py                                  # 1,000 and 10,000 tags
    .venv/bin/python bench/edge_pipeline.py --tags 1000 1000 10000 --source asyncua node-opcua node-opcua
    .venv/bin/python bench/edge_pipeline.py --tags 10000 --source asyncua --simulators 4 --rate-hz 2
    .venv/bin/python bench/edge_pipeline.py --tags 1000 --rate-hz 10 --keep   # keep logs and config
    .venv/bin/python bench/edge_pipeline.py --tags 10000 --asyncua-watchdog-s 30   # diagnosis, see below

Needs Debian's ``mosquitto``. Loopback only; every process is started here and stopped by its PID.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from processes import free_port, paho_subscriber, stop, wait_for_port  # bench/processes.py

from simulator.catalog import tag_catalog
from simulator.config import SimulatorConfig
from uns.sparkplug.catalog import EdgeNodeCatalog
from uns.sparkplug.topic import MessageType, SparkplugTopic, parse_topic
from unshub.simulated_line import simulator_config_dict

UNS = str(Path(sys.executable).parent / "uns")
logging.getLogger("asyncua").setLevel(logging.ERROR)  # the probe client's chatter
LINE = "Line1"
SYNTH = "Synthetic/Tag"  # metric name prefix of the simulators' synthetic tags
#: load servers and rate per tag when not given, per ``--source``: each asyncua simulator well under
#: asyncua's ~16k changes/s; one node-opcua load server carries 20,000 changes/s at ~0.3 core
DEFAULTS = {"asyncua": {1_000: (1, 4.0), 10_000: (4, 2.0)},
            "node-opcua": {1_000: (1, 4.0), 10_000: (1, 2.0)}}
LOADGEN = ROOT / "bench" / "loadgen"
TARGET_CPU_US = 50.0
TARGET_RSS_MB = 150.0
#: issue 20 item 4: CPU per change at 10,000 tags; at 50,000 tags and 20,000 changes/s: RSS, births, p99
TARGET_CPU_US_10K = 15.0
TARGET_50K = {"rss_mb": 200.0, "birth_s": 5.0, "p99_ms": 500.0}


# --------------------------------------------------------------------------- processes


class Processes:
    """The processes of one scenario, stopped in reverse order (edge first: it sends NDEATH)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self._logs: list = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            stop(proc, signal.SIGINT if proc.args[0] in (UNS, sys.executable) else signal.SIGTERM, timeout=15.0)
        for log in self._logs:
            log.close()


#: ``--asyncua-watchdog-s`` (diagnosis only, not how the edge runs): start the edge with asyncua's
#: Client default ``watchdog_intervall`` raised. asyncua's connection supervisor reads ServerStatus
#: every ``watchdog_intervall`` s and declares the session lost when the answer takes longer than
#: ``min(session_timeout / 2, watchdog_intervall)``, i.e. 1 s by default.
EDGE_WITH_WATCHDOG = """
import sys
from asyncua.client import client as m
_init = m.Client.__init__
def _patched(self, *a, watchdog_intervall=%r, **k):
    _init(self, *a, watchdog_intervall=watchdog_intervall, **k)
m.Client.__init__ = _patched
from unshub.cli.main import main
sys.argv = ["uns", *sys.argv[1:]]
sys.exit(main())
"""

#: ``--profile-edge FILE`` (diagnosis only): the edge under cProfile; SIGUSR1 (sent once every DBIRTH
#: was seen) stops the profiler and writes its stats to FILE (read them with ``pstats``)
EDGE_PROFILED = """
import cProfile, signal, sys
profiler = cProfile.Profile()
def _dump(signum, frame):
    profiler.disable()
    profiler.dump_stats(%r)
signal.signal(signal.SIGUSR1, _dump)
from unshub.cli.main import main
sys.argv = ["uns", *sys.argv[1:]]
profiler.enable()
sys.exit(main())
"""


# --------------------------------------------------------------------------- subscriber


@dataclass
class Capture:
    """Raw messages with their receive time; decoded after the run."""

    births: list[tuple[float, str, bytes]] = field(default_factory=list)
    data: list[tuple[float, str, bytes]] = field(default_factory=list)
    keep_data_from: float = math.inf
    seen_births: set[str] = field(default_factory=set)
    data_messages: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client, userdata, message) -> None:
        now = time.time()
        topic = message.topic
        kind = topic.split("/", 3)[2] if topic.count("/") >= 3 else ""
        if kind in ("DDATA", "NDATA"):
            self.data_messages += 1
            if now >= self.keep_data_from:
                self.data.append((now, topic, message.payload))
        elif kind in ("NBIRTH", "DBIRTH", "NDEATH", "DDEATH"):
            with self.lock:
                self.births.append((now, topic, message.payload))
                self.seen_births.add(topic)


def start_subscriber(port: int, capture: Capture):
    return paho_subscriber(port, "spBv1.0/#", capture.on_message, f"bench-pipeline-{os.getpid()}")


# --------------------------------------------------------------------------- OPC UA probe


class SimulatorProbe:
    """An OPC UA client per simulator in a thread of its own: how fast each server answers a read
    (is the load generator itself saturated?) and which step its synthetic tag 0 is at."""

    def __init__(self, ports: list[int], interval: float = 0.25) -> None:
        import asyncio

        self.ports = ports
        self.interval = interval
        self.loop = asyncio.new_event_loop()
        self.recording = False
        self.read_ms: list[float] = []
        self.failures = 0
        self._clients: list = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="opcua-probe", daemon=True)
        self._thread.start()
        self._call(self._start())

    def _call(self, coro, timeout: float = 120):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> bool:
        import asyncio

        from asyncua import Client

        for port in self.ports:
            # watchdog_intervall: asyncua's own health probe would drop the session after 1 s without an answer
            client = Client(f"opc.tcp://127.0.0.1:{port}", timeout=30, watchdog_intervall=600)
            await client.connect()
            self._clients.append(client)
        self._poller = asyncio.ensure_future(self._poll())
        return True

    async def _poll(self) -> None:
        import asyncio

        from asyncua import ua

        state = ua.NodeId(ua.ObjectIds.Server_ServerStatus_State)
        while True:
            await asyncio.sleep(self.interval)
            for client in self._clients:
                t = time.perf_counter()
                try:
                    await asyncio.wait_for(client.uaclient.read_attributes([state], ua.AttributeIds.Value), 30)
                except Exception:  # noqa: BLE001 - counted, the bench goes on
                    self.failures += self.recording
                    continue
                if self.recording:
                    self.read_ms.append((time.perf_counter() - t) * 1000)

    async def _steps(self) -> list[tuple[int, int]]:
        from asyncua import ua

        out = []
        for client in self._clients:
            node = client.get_node(ua.NodeId(f"{LINE}/Synthetic/Tag00000", 2))
            dv = await node.read_data_value()
            ts_ms = int(dv.SourceTimestamp.timestamp() * 1000)
            out.append((step_of(float(dv.Value.Value), 0), ts_ms))
        return out

    def steps(self) -> list[tuple[int, int]]:
        """(step mod 2000, SourceTimestamp ms) of synthetic tag 0, per simulator."""
        return self._call(self._steps())

    async def _close(self) -> None:
        self._poller.cancel()
        for client in self._clients:
            try:
                await client.disconnect()
            except Exception:  # noqa: BLE001, S110 - the process is stopped next anyway
                pass

    def close(self) -> None:
        try:
            self._call(self._close(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


# --------------------------------------------------------------------------- config


def plant_yaml(broker_port: int, sim_ports: list[int], tags_per_sim: list[int], data_dir: Path,
               log_level: str = "WARNING", sampling_interval_ms: float | None = None) -> str:
    """One endpoint and one device (cell ``Sim<k>``) per simulator, every synthetic tag of each.

    ``sampling_interval_ms`` 0 (node-opcua source) asks the server to report each change as it is
    written instead of sampling every tag every 100 ms: node-opcua samples with a timer per
    monitored item, which at 10,000 tags costs the load server a whole core."""
    merged: dict | None = None
    for k, (port, count) in enumerate(zip(sim_ports, tags_per_sim, strict=True)):
        catalog = [t.model_dump() for t in tag_catalog(SimulatorConfig(line=LINE, extra_tags=count),
                                                        include_synthetic=True)]
        raw = simulator_config_dict(f"opc.tcp://127.0.0.1:{port}", f"mqtt://127.0.0.1:{broker_port}", data_dir,
                                    catalog, groups=("synthetic",), sim_line=LINE,
                                    sparkplug={"publish_interval_ms": 100})
        raw["opcua"][0]["name"] = f"sim{k}"
        if sampling_interval_ms is not None:
            raw["opcua"][0]["sampling_interval_ms"] = sampling_interval_ms
        for tag in raw["tags"]:
            tag["endpoint"] = f"sim{k}"
            tag["cell"] = f"Sim{k}"
        if merged is None:
            merged = raw
        else:
            merged["opcua"].extend(raw["opcua"])
            merged["tags"].extend(raw["tags"])
    assert merged is not None
    merged["log_level"] = log_level
    return yaml.safe_dump(merged, sort_keys=False, width=120)


# --------------------------------------------------------------------------- analysis


def step_of(value: float, index: int) -> int:
    """The simulator step (mod 2000) that produced ``value`` for synthetic tag ``index``."""
    odd = 1 if (value * 4) % 2 else 0  # x.25 / x.75 only on odd steps
    x = round((value - 0.25 * odd) / 0.5) + 1000
    step = (x - 7 * index) % 2000
    assert step % 2 == odd, (value, index, step)
    return step


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    pos = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[pos]


@dataclass
class Result:
    tags: int
    simulators: int
    rate_hz: float
    seconds: float
    offered: float = 0.0
    source: str = "node-opcua"
    produced: float = 0.0
    arrived_in: float = 0.0
    out: float = 0.0
    loss: float = 0.0
    duplicates: int = 0
    historical: int = 0
    edge_cpu_us: float = 0.0
    edge_cpu_share: float = 0.0
    rss_mb: float = 0.0
    rss_peak_mb: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    pmax: float = 0.0
    messages_per_s: float = 0.0
    metrics_per_message: float = 0.0
    cpu_of: dict[str, float] = field(default_factory=dict)
    birth_s: float = 0.0
    produced_probe: float = math.nan
    dbirths: int = 0
    sessions_lost: int = 0
    probe_p99: float = math.nan
    probe_max: float = math.nan
    probe_failures: int = 0


def analyse(capture: Capture, result: Result, w0: float, w1: float, tags_per_sim: dict[str, int]) -> None:
    catalogs: dict[tuple[str, str], EdgeNodeCatalog] = defaultdict(EdgeNodeCatalog)
    events = sorted([(t, topic, body, True) for t, topic, body in capture.births]
                    + [(t, topic, body, False) for t, topic, body in capture.data], key=lambda e: e[0])
    seen: set[tuple[str | None, str, int]] = set()
    latencies: list[float] = []
    step_ts: dict[str, dict[int, int]] = defaultdict(dict)  # device -> source ts -> step (mod 2000)
    out_in_window = 0
    messages_in_window = 0
    for recv, topic_text, body, _is_birth in events:
        topic = parse_topic(topic_text)
        if not isinstance(topic, SparkplugTopic):
            continue
        if topic.message_type is MessageType.DBIRTH and w0 <= recv < w1:
            result.dbirths += 1
        payload = catalogs[topic.node].decode(topic.message_type, body, topic.device_id)
        if not topic.message_type.is_data:
            continue
        in_recv_window = w0 <= recv < w1
        messages_in_window += in_recv_window
        recv_ms = recv * 1000.0
        for metric in payload.metrics:
            if metric.is_historical:
                result.historical += 1
            out_in_window += in_recv_window
            ts = metric.timestamp
            if ts is None or not (w0 * 1000 <= ts < w1 * 1000) or not (metric.name or "").startswith(SYNTH):
                continue
            key = (topic.device_id, metric.name, ts)
            if key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
            latencies.append(recv_ms - ts)
            device = topic.device_id or ""
            if ts not in step_ts[device] and metric.value is not None:
                index = int(metric.name[len(SYNTH):])
                step_ts[device][ts] = step_of(metric.value, index)
    span = w1 - w0
    produced = 0
    for device, steps in step_ts.items():
        ordered = [steps[ts] for ts in sorted(steps)]
        # unwrap the mod-2000 step numbers along source time; a window holds far fewer than 2000 steps
        count = 1 + sum((b - a) % 2000 for a, b in itertools.pairwise(ordered))
        produced += count * tags_per_sim[device] if ordered else 0
    result.produced = produced / span
    result.arrived_in = len(seen) / span
    result.loss = 1 - len(seen) / produced if produced else math.nan
    result.out = out_in_window / span
    result.messages_per_s = messages_in_window / span
    result.metrics_per_message = out_in_window / messages_in_window if messages_in_window else 0.0
    latencies.sort()
    result.p50, result.p95, result.p99 = (percentile(latencies, q) for q in (50, 95, 99))
    result.pmax = latencies[-1] if latencies else math.nan
    result._out_count = out_in_window  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- one scenario


def start_load_servers(procs: Processes, source: str, per_sim: list[int], rate_hz: float,
                       workdir: Path) -> tuple[list[int], list[subprocess.Popen]]:
    """The OPC UA servers the edge subscribes to: ``uns sim run`` (asyncua) or the node-opcua load
    server of ``bench/loadgen`` (same namespace, node ids and values; far less CPU per change)."""
    ports = [free_port() for _ in per_sim]
    servers = []
    for k, (port, n) in enumerate(zip(ports, per_sim, strict=True)):
        if source == "asyncua":
            cmd = [UNS, "--log-level", "WARNING", "sim", "run", "--host", "127.0.0.1", "--port", str(port),
                   "--line", LINE, "--seed", str(k + 1), "--extra-tags", str(n), "--extra-rate-hz", str(rate_hz)]
        else:
            cmd = [shutil.which("node") or "node", str(LOADGEN / "opcua_load_server.js"), str(port), str(n),
                   str(rate_hz), str(workdir / f"pki-{k}"), LINE]
        servers.append(procs.start(f"sim{k}", cmd))
    for port, server in zip(ports, servers, strict=True):
        wait_for_port(port, server, 180)
    return ports, servers


def ensure_loadgen() -> None:
    """``npm ci`` the load server's pinned node-opcua once (the npm registry is reachable from CI)."""
    if (LOADGEN / "node_modules" / "node-opcua-server").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("--source node-opcua needs Node.js and npm (apt-get install nodejs npm), or use --source asyncua")
    print("installing bench/loadgen (npm ci) ...", flush=True)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(LOADGEN)], check=True)


def run_scenario(tags: int, simulators: int, rate_hz: float, seconds: float, warmup: float, drain: float,
                 workdir: Path, edge_log_level: str, asyncua_watchdog_s: float | None = None,
                 source: str = "node-opcua", profile_edge: Path | None = None) -> Result:
    import psutil

    result = Result(tags, simulators, rate_hz, seconds, offered=tags * rate_hz, source=source)
    per_sim = [tags // simulators + (1 if k < tags % simulators else 0) for k in range(simulators)]
    procs = Processes(workdir)
    client = None
    probe = None
    try:
        mqtt_port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "set_tcp_nodelay true\nmax_queued_messages 0\nmax_inflight_messages 0\n")
        mosquitto = procs.start("mosquitto", [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)])
        wait_for_port(mqtt_port, mosquitto, 15)

        sim_ports, sims = start_load_servers(procs, source, per_sim, rate_hz, workdir)
        probe = SimulatorProbe(sim_ports)

        capture = Capture()
        client = start_subscriber(mqtt_port, capture)
        plant = workdir / "plant.yaml"
        plant.write_text(plant_yaml(mqtt_port, sim_ports, per_sim, workdir / "edge-data", edge_log_level,
                                    0.0 if source == "node-opcua" else None))
        t_edge = time.monotonic()
        edge_cmd = [UNS] if asyncua_watchdog_s is None else [sys.executable, "-c",
                                                              EDGE_WITH_WATCHDOG % asyncua_watchdog_s]
        if profile_edge is not None:  # diagnosis: cProfile from the edge's start to its births
            edge_cmd = [sys.executable, "-c", EDGE_PROFILED % str(profile_edge)]
        edge = procs.start("edge", [*edge_cmd, "--log-level", edge_log_level, "edge", "run", "--config", str(plant)])
        edge_ps = psutil.Process(edge.pid)
        wanted = {f"DBIRTH/{k}" for k in range(simulators)}
        deadline = time.monotonic() + 300
        while True:
            with capture.lock:
                got = {f"DBIRTH/{t.rsplit('/Sim', 1)[1]}" for t in capture.seen_births if "/DBIRTH/" in t}
            if wanted <= got:
                break
            if edge.poll() is not None:
                raise RuntimeError(f"edge exited with {edge.returncode}; see {workdir / 'edge.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"DBIRTHs seen {sorted(got)}, wanted {sorted(wanted)}")
            time.sleep(0.2)
        result.birth_s = time.monotonic() - t_edge
        if profile_edge is not None:
            edge.send_signal(signal.SIGUSR1)  # the profile ends at the births
        time.sleep(warmup)

        watched = {"edge": [edge_ps], "simulators": [psutil.Process(s.pid) for s in sims],
                   "mosquitto": [psutil.Process(mosquitto.pid)], "bench": [psutil.Process()]}

        def cpu(name: str) -> float:
            return sum(sum(p.cpu_times()[:2]) for p in watched[name])

        def machine_busy() -> float:
            t = psutil.cpu_times()
            return t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0)

        steps0 = probe.steps()
        lost0 = log_count(workdir / "edge.log", "session lost")
        cpu0 = {name: cpu(name) for name in watched}
        busy0 = machine_busy()
        w0 = time.time()
        capture.keep_data_from = w0
        probe.recording = True
        peak = 0
        end = w0 + seconds
        while time.time() < end:
            peak = max(peak, edge_ps.memory_info().rss)
            time.sleep(min(1.0, max(0.0, end - time.time())))
        w1 = time.time()
        cpu1 = {name: cpu(name) for name in watched}
        busy1 = machine_busy()
        probe.recording = False
        rss = edge_ps.memory_info().rss
        steps1 = probe.steps()
        result.sessions_lost = log_count(workdir / "edge.log", "session lost") - lost0
        time.sleep(drain)  # late values of the window still count as delivered
        client.loop_stop()
        client.disconnect()
        client = None
        if edge.poll() is not None:
            raise RuntimeError(f"edge exited with {edge.returncode} during the window; see {workdir / 'edge.log'}")
    finally:
        if client is not None:
            client.loop_stop()
        if probe is not None:
            try:
                probe.close()
            except Exception as exc:  # noqa: BLE001 - stopping the processes matters more
                print(f"  (probe close: {exc!r})")
        procs.stop_all()

    span = w1 - w0
    result.seconds = span
    result.rss_mb = rss / 2**20
    result.rss_peak_mb = max(peak, rss) / 2**20
    result.cpu_of = {name: (cpu1[name] - cpu0[name]) / span for name in watched}
    result.cpu_of["others"] = max(0.0, (busy1 - busy0) / span - sum(result.cpu_of.values()))
    produced = 0.0
    for (s0, t0), (s1, t1), n in zip(steps0, steps1, per_sim, strict=True):
        produced += (s1 - s0) % 2000 * n / max((t1 - t0) / 1000, 1e-9)
    result.produced_probe = produced
    ms = sorted(probe.read_ms)
    result.probe_p99, result.probe_max = percentile(ms, 99), (ms[-1] if ms else math.nan)
    result.probe_failures = probe.failures
    analyse(capture, result, w0, w1, {f"Sim{k}": n for k, n in enumerate(per_sim)})
    out_count = result._out_count  # type: ignore[attr-defined]
    result.edge_cpu_us = (cpu1["edge"] - cpu0["edge"]) / out_count * 1e6 if out_count else math.inf
    result.edge_cpu_share = result.cpu_of["edge"]
    return result


def log_count(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


# --------------------------------------------------------------------------- report


def report(results: list[Result]) -> None:
    cols = [f"{r.tags:,} tags" for r in results]
    width = max(27, *(len(c) + 2 for c in cols))

    def row(label: str, values: list[str], target: str = "") -> None:
        print(f"{label:<34}" + "".join(f"{v:>{width}}" for v in values) + f"   {target}")

    print()
    row("", cols, "target")
    row("OPC UA load servers", [r.source for r in results])
    row("servers x tags @ rate", [f"{r.simulators} x {r.tags // r.simulators:,} @ {r.rate_hz:g} Hz" for r in results])
    row("window (s)", [f"{r.seconds:.1f}" for r in results])
    row("births seen after edge start (s)", [f"{r.birth_s:.1f}" for r in results],
        f"<= {TARGET_50K['birth_s']:g} s at 50,000 tags")
    row("offered changes/s (tags x rate)", [f"{r.offered:,.0f}" for r in results], "20,000 through one edge node")
    row("produced changes/s (OPC UA read)", [f"{r.produced_probe:,.0f}" for r in results])
    row("produced changes/s (delivered steps)", [f"{r.produced:,.0f}" for r in results])
    row("in: delivered changes/s", [f"{r.arrived_in:,.0f}" for r in results])
    row("loss (1 - delivered/produced steps)", [f"{r.loss:.2%}" for r in results], "0")
    row("duplicates / historical", [f"{r.duplicates} / {r.historical}" for r in results], "0 / 0")
    row("OPC UA sessions lost / DBIRTHs", [f"{r.sessions_lost} / {r.dbirths}" for r in results], "0 / 0")
    row("sim read answer p99 / max (ms)", [f"{r.probe_p99:,.0f} / {r.probe_max:,.0f}" for r in results],
        "asyncua client probe times out at 1,000")
    row("out: metrics/s at subscriber", [f"{r.out:,.0f}" for r in results])
    row("  DATA messages/s, metrics/msg", [f"{r.messages_per_s:,.1f}, {r.metrics_per_message:,.0f}" for r in results])
    row("edge CPU µs per change", [f"{r.edge_cpu_us:,.1f}" for r in results],
        f"<= {TARGET_CPU_US:.0f} µs; <= {TARGET_CPU_US_10K:.0f} µs at 10,000 tags (issue 20)")
    row("edge CPU (cores busy)", [f"{r.cpu_of['edge']:.2f}" for r in results], "< 1 at 20,000/s")
    row("sims / mosquitto / bench / others", [f"{r.cpu_of['simulators']:.2f} / {r.cpu_of['mosquitto']:.2f} / "
                                             f"{r.cpu_of['bench']:.2f} / {r.cpu_of['others']:.2f}" for r in results],
        f"(cores, of {os.cpu_count()})")
    row("edge RSS end / peak (MB)", [f"{r.rss_mb:.0f} / {r.rss_peak_mb:.0f}" for r in results],
        f"< {TARGET_RSS_MB:.0f} MB at 10,000 tags; <= {TARGET_50K['rss_mb']:.0f} MB at 50,000")
    row("latency p50 / p95 (ms)", [f"{r.p50:,.0f} / {r.p95:,.0f}" for r in results])
    row("latency p99 / max (ms)", [f"{r.p99:,.0f} / {r.pmax:,.0f}" for r in results],
        f"<= {TARGET_50K['p99_ms']:.0f} ms at 50,000 tags (UNS p99 < 250 ms at 10,000/s is end-to-end incl. host)")
    print(f"\nmachine: {os.cpu_count()} CPU(s); every process above shares them.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, nargs="+", default=[1_000, 10_000], help="one scenario per value")
    parser.add_argument("--source", choices=["node-opcua", "asyncua"], nargs="+",
                        help="the OPC UA load servers per scenario: node-opcua (bench/loadgen, light; the "
                             "default) or asyncua (`uns sim run`, saturates near 16,000 changes/s per process)")
    parser.add_argument("--simulators", type=int, nargs="+",
                        help="load server processes per scenario (default: one per 10,000 tags with "
                             "node-opcua, one per 2,500 tags with asyncua)")
    parser.add_argument("--rate-hz", type=float, nargs="+",
                        help="changes per second of each tag, per scenario "
                             "(default 4 Hz at 1,000 tags, 2 Hz at 10,000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady measuring window")
    parser.add_argument("--warmup", type=float, default=10.0, help="after the last DBIRTH, before the window")
    parser.add_argument("--drain", type=float, default=3.0, help="after the window, for late values")
    parser.add_argument("--edge-log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="the edge's log level (INFO shows why asyncua dropped a session)")
    parser.add_argument("--asyncua-watchdog-s", type=float,
                        help="diagnosis only: run the edge with asyncua's Client watchdog_intervall set to this "
                             "(default 1 s, which is also the timeout of its health probe)")
    parser.add_argument("--profile-edge", type=Path,
                        help="diagnosis only: run the edge under cProfile and write its stats to this file "
                             "(per scenario: the scenario's index is appended); read with pstats")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, plant.yaml)")
    args = parser.parse_args()

    def pick(values: list | None, i: int, default):
        if not values:
            return default
        return values[i] if i < len(values) else values[-1]

    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        sys.exit("needs mosquitto (apt-get install mosquitto)")
    if "node-opcua" in (args.source or ["node-opcua"]):
        ensure_loadgen()
    results: list[Result] = []
    root = Path(tempfile.mkdtemp(prefix="edge-pipeline-"))
    try:
        for i, tags in enumerate(args.tags):
            source = pick(args.source, i, "node-opcua")
            per_server = 2_500 if source == "asyncua" else 10_000
            sims_default, rate_default = DEFAULTS[source].get(tags, (max(1, math.ceil(tags / per_server)), 2.0))
            sims = pick(args.simulators, i, sims_default)
            rate = pick(args.rate_hz, i, rate_default)
            workdir = root / f"{i}-tags-{tags}"
            workdir.mkdir()
            print(f"{tags:,} tags: {sims} {source} server(s) @ {rate:g} Hz, warm-up {args.warmup:g} s, "
                  f"window {args.seconds:g} s ...", flush=True)
            results.append(run_scenario(tags, sims, rate, args.seconds, args.warmup, args.drain, workdir,
                                        args.edge_log_level, args.asyncua_watchdog_s, source,
                                        None if args.profile_edge is None
                                        else args.profile_edge.with_suffix(f".{i}.prof")))
        report(results)
    finally:
        if args.keep:
            print(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
