"""An alarm flood through the whole pipeline, side by side with the same rate of data changes.

Issue 15: "an alarm flood of 1,000 condition events per second through the whole pipeline: none
lost, p50/p99 latency to ``_alarms``, printed side by side with the same rate of data changes".

Per run, two scenarios, each on a fresh stack of real processes (configs from ``uns init`` on free
loopback ports; Debian's Mosquitto with a bench config of its own, anonymous, no persistence):

* **alarms**: ``uns sim run`` → ``uns edge run`` (every cell's Jam, DoorOpen and EStop declared,
  9 conditions) → Mosquitto → ``uns adapter run``. After the births the simulator's test hook
  ``Simulation/AlarmFlood(RatePerS, DurationS)`` toggles the nine conditions round robin at
  ``--rate`` events/s for ``--seconds``: each toggle is one real OPC UA condition event (new EventId,
  source Time = the simulator tick it is raised in). Counted:

  - *produced*: the simulator's own counters (``Simulation/Truth/<Cell><Condition>Events``, read
    over OPC UA before and after), per condition;
  - *journaled*: rows of the adapter's ``alarms.sqlite`` with an EventId, per condition;
  - *on ``_alarms``*: distinct EventIds received on ``<line>/_alarms/<cell>/_conditions/<Name>``;
  - *last state*: a fresh subscriber's retained ``_alarms`` message per condition against the
    simulator's condition node (``ActiveState/Id``) and its event count;
  - *per stage* (printed each run, docs/alarms.md "Counting a flood"): events the simulator's
    server discarded from full queues (its WARNING), the edge's ``received`` (what its monitored
    items delivered), ``queue_overflow`` and ``published`` counters, the adapter's complete
    condition statements received, journal rows written and not written: where a loss happens
    is the first stage whose count falls short;
  - *lost* = produced - journaled (must be 0), and likewise for ``_alarms``;
  - *latency*: arrival time of each ``_alarms`` message at a paho subscriber (this process) minus
    its ``source_ts_ms``.

* **data**: the same stack without the flood, the simulator with ``--extra-tags T --extra-rate-hz H``
  (T x H = ``--rate``; every synthetic tag changes at every step), the T tags in the edge's tag map
  under the Filler cell. Counted: distinct (tag, timestamp) mirrored by the adapter on
  ``<line>/Filler/Synthetic/TagNNNNN`` in the window against T x H x seconds, and the latency
  arrival - ``timestamp_ms`` (the OPC UA SourceTimestamp).

The machine is shared (2 cores; other engineers' tests run beside): ``uptime`` is printed before
and after every scenario. Read the figures as what this machine carried at that load.

Repeat with::

    .venv/bin/python bench/alarm_flood.py                       # 1,000/s for 20 s, 3 runs, medians
    .venv/bin/python bench/alarm_flood.py --rate 500 --seconds 10 --runs 1
    .venv/bin/python bench/alarm_flood.py --scenarios alarms --keep   # keep configs and logs

Needs Debian's ``mosquitto``. Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from processes import free_port, paho_subscriber  # bench/processes.py

from simulator.catalog import TRUTH_FOLDER, synthetic_path, truth_alarm_tag
from simulator.client import call_simulation, double
from simulator.config import NAMESPACE_URI
from unshub.supervisor import ServiceSpec, Supervisor, http_ok

UNS = str(Path(sys.executable).parent / "uns")
SIM_LINE = "Line1"
CELLS = ("Filler", "Capper", "Labeler")
FLOODED = ("Jam", "DoorOpen", "EStop")  # what Simulation/AlarmFlood toggles, in every cell
DATA_CELL = "Filler"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# --------------------------------------------------------------------------- subscriber


@dataclass
class Capture:
    """Every message under the line with its arrival time (epoch ms); parsed after the run."""

    messages: list[tuple[float, str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client, userdata, message) -> None:  # noqa: ANN001 - paho's callback
        now_ms = time.time() * 1000
        with self.lock:
            self.messages.append((now_ms, message.topic, message.payload))

    def snapshot(self) -> list[tuple[float, str, bytes]]:
        with self.lock:
            return list(self.messages)


def subscribe(port: int, topic: str, capture: Capture, name: str):  # noqa: ANN201 - paho client
    return paho_subscriber(port, topic, capture.on_message, f"bench-flood-{name}")


def unsubscribe(client) -> None:  # noqa: ANN001
    client.loop_stop()
    client.disconnect()


# --------------------------------------------------------------------------- OPC UA


async def _truth(endpoint: str) -> dict[str, object]:
    """Per flooded condition: the simulator's event count and its condition node's ActiveState/Id."""
    from asyncua import Client, ua

    out: dict[str, object] = {}
    async with Client(endpoint, timeout=30) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        out["AlarmEvents"] = int(await client.get_node(ua.NodeId(f"{TRUTH_FOLDER}/AlarmEvents", ns)).read_value())
        for cell in CELLS:
            for name in FLOODED:
                path = f"{SIM_LINE}/{cell}/{name}"
                events = await client.get_node(ua.NodeId(truth_alarm_tag(path), ns)).read_value()
                active = await client.get_node(ua.NodeId(path, ns)).get_child(["0:ActiveState", "0:Id"])
                out[f"{cell}/{name}"] = (int(events), bool(await active.read_value()))
    return out


def truth(endpoint: str) -> dict[str, object]:
    return asyncio.run(_truth(endpoint))


# --------------------------------------------------------------------------- stack


@dataclass
class Stack:
    folder: Path
    supervisor: Supervisor
    mqtt_port: int
    opcua: str
    line: str
    data_dir: Path
    edge_http_port: int
    adapter_http_port: int

    def edge_metric(self, name: str, label: str = "") -> int:
        """One counter of the edge node's /metrics (the first sample of ``name`` containing ``label``)."""
        return _metric(self.edge_http_port, name, label)

    def stages(self) -> dict[str, int]:
        """Every stage's counter now: the edge's monitored items (received), the server's overflow
        events, what the edge mapped and handed to Sparkplug (published), the adapter's complete
        condition statements (received) and journal rows."""
        return {"edge_received": self.edge_metric("uns_edge_alarm_events_total", 'outcome="received"'),
                "edge_queue_overflows": self.edge_metric("uns_edge_alarm_events_total", 'outcome="queue_overflow"'),
                "edge_published": self.edge_published(),
                "adapter_received": _metric(self.adapter_http_port, "uns_adapter_alarm_events_received_total"),
                "adapter_journaled": _metric(self.adapter_http_port, "uns_adapter_alarm_events_journaled_total"),
                "adapter_not_journaled": _metric(self.adapter_http_port,
                                                 "uns_adapter_alarm_events_not_journaled_total")}

    def edge_published(self) -> int:
        """Condition events the edge node published."""
        return self.edge_metric("uns_edge_alarm_events_total", 'outcome="published"')

    def edge_sessions_lost(self) -> int:
        """OPC UA sessions the edge lost (each loses the events in flight; the reconnect's refresh
        restates the retained state, not the missed events)."""
        return self.edge_metric("uns_edge_opcua_disconnects_total")


def _metric(port: int, name: str, label: str = "") -> int:
    """The first sample of ``name`` containing ``label`` on a /metrics page (-1: none)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    for line in text.splitlines():
        if (line.startswith(f"{name}{{") or line.startswith(f"{name} ")) and label in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return -1


def simulator_discards(stack: Stack) -> int:
    """Events the simulator's server discarded from full queues: its last overflow warning's count."""
    found = 0
    for line in (stack.supervisor.log_dir / "simulator.log").read_text(errors="replace").splitlines():
        if "event(s) discarded in this process" in line:
            found = int(line.rsplit(";", 1)[1].split()[0])
    return found


def start_stack(workdir: Path, scenario: str, rate: float, tags: int) -> Stack:
    folder = workdir / "config"
    ports = {name: free_port() for name in ("mqtt", "ws", "opcua", "http", "edge_http", "broker_http")}
    subprocess.run([UNS, "init", "--out", str(folder), "--mqtt-port", str(ports["mqtt"]), "--ws-port", str(ports["ws"]),
                    "--opcua-port", str(ports["opcua"]), "--http-port", str(ports["http"]),
                    "--edge-metrics-port", str(ports["edge_http"]), "--broker-metrics-port",
                    str(ports["broker_http"])], check=True, capture_output=True, timeout=120)
    data_dir = workdir / "data"
    plant = yaml.safe_load((folder / "plant.yaml").read_text())
    plant["data_dir"] = str(data_dir / "edge")
    if scenario == "alarms":
        plant["opcua"][0]["alarms"] = {"conditions": [{"cell": c, "name": n} for c in CELLS for n in FLOODED]}
    else:
        plant["tags"] += [{"node_id": f"nsu={NAMESPACE_URI};s={synthetic_path(SIM_LINE, i)}",
                           "metric": f"Synthetic/Tag{i:05d}", "datatype": "Double", "cell": DATA_CELL}
                          for i in range(tags)]
    (folder / "plant.yaml").write_text(yaml.safe_dump(plant, sort_keys=False))
    adapter = yaml.safe_load((folder / "adapter.yaml").read_text())
    adapter["data_dir"] = str(data_dir / "adapter")
    (folder / "adapter.yaml").write_text(yaml.safe_dump(adapter, sort_keys=False))
    # a bench broker: anonymous (the services' credentials are accepted as given), no persistence
    (workdir / "mosquitto.conf").write_text(
        f"listener {ports['mqtt']} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nset_tcp_nodelay true\n")
    summary = yaml.safe_load((folder / "stack.yaml").read_text())
    supervisor = Supervisor(workdir / "logs")
    quiet = {"UNS_LOG_LEVEL": "WARNING"}
    stack = Stack(folder, supervisor, ports["mqtt"], f"opc.tcp://127.0.0.1:{ports['opcua']}", summary["line"],
                  data_dir, ports["edge_http"], ports["http"])
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    supervisor.start(ServiceSpec("broker", [mosquitto, "-c", str(workdir / "mosquitto.conf")],
                                 ready_ports=[ports["mqtt"]]))
    sim = [UNS, "sim", "run", "--host", "127.0.0.1", "--port", str(ports["opcua"]), "--seed", "7"]
    if scenario == "data":
        sim += ["--extra-tags", str(tags), "--extra-rate-hz", f"{rate / tags:g}"]
    supervisor.start(ServiceSpec("simulator", sim, ready_ports=[ports["opcua"]], ready_timeout=60, env=quiet))
    supervisor.start(ServiceSpec("adapter", [UNS, "adapter", "run", "--config", str(folder / "adapter.yaml")],
                                 ready_ports=[ports["http"]],
                                 ready_check=lambda: http_ok(f"http://127.0.0.1:{ports['http']}/readyz"),
                                 ready_timeout=60, env=quiet))
    supervisor.start(ServiceSpec("edge", [UNS, "edge", "run", "--config", str(folder / "plant.yaml")],
                                 ready_ports=[ports["edge_http"]], ready_timeout=60, env=quiet))
    return stack


def wait_until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not reached after {timeout}s")


# --------------------------------------------------------------------------- scenarios


def condition_of(topic: str, line: str) -> str | None:
    """``Filler/Jam`` for ``<line>/_alarms/Filler/_conditions/Jam``."""
    prefix = f"{line}/_alarms/"
    if not topic.startswith(prefix):
        return None
    cell, _, rest = topic[len(prefix):].partition("/_conditions/")
    return f"{cell}/{rest}" if rest else None


def alarm_event_ids(messages: list[tuple[float, str, bytes]], line: str, expected: set[str],
                    since_ms: float) -> dict[str, set[str]]:
    """Distinct EventIds received per condition on ``_alarms`` since ``since_ms``."""
    found: dict[str, set[str]] = {k: set() for k in expected}
    for received, topic, raw in messages:
        key = condition_of(topic, line)
        if key in found and received >= since_ms:
            event_id = json.loads(raw).get("event_id")
            if event_id:
                found[key].add(event_id)
    return found


def journal_rows(stack: Stack) -> dict[str, int]:
    [path] = list(stack.data_dir.rglob("alarms.sqlite"))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT cell, condition, count(*) FROM alarm_event WHERE event_id != '' "
                          "GROUP BY cell, condition").fetchall()
    return {f"{cell}/{name}": int(n) for cell, name, n in rows}


def run_alarms(stack: Stack, rate: float, seconds: float, drain: float) -> dict[str, object]:
    capture = Capture()
    client = subscribe(stack.mqtt_port, f"{stack.line}/_alarms/#", capture, "alarms")
    try:
        expected = {f"{c}/{n}" for c in CELLS for n in FLOODED}
        wait_until(lambda: {condition_of(t, stack.line) for _, t, _ in capture.snapshot()} >= expected, 60,
                   "the births' never-raised statements on _alarms")
        before = truth(stack.opcua)
        stages_before = stack.stages()
        edge_before = stack.edge_published()
        started = time.time() * 1000
        asyncio.run(call_simulation(stack.opcua, "AlarmFlood", double(rate), double(seconds)))
        time.sleep(seconds)
        # a starved simulator fires the flood's events late (a late tick fires what is due): wait
        # until it has fired all rate x seconds, or the drain time, before counting what it produced
        flood_total, give_up = round(rate * seconds), time.monotonic() + drain
        while True:
            after = truth(stack.opcua)
            produced = {k: after[k][0] - before[k][0] for k in expected}  # type: ignore[index]
            total = sum(produced.values())
            if total >= flood_total or time.monotonic() > give_up:
                break
            time.sleep(0.5)
        flood_done_s = (time.time() * 1000 - started) / 1000
        # drain: until every stage has every produced event, or ``drain`` s; when each stage got there
        # says what it carries (a stage still short at the end is either slow or lossy: see "lost")
        done: dict[str, float] = {}
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and len(done) < 3:
            counts = {"edge": stack.edge_published() - edge_before, "journal": sum(journal_rows(stack).values()),
                      "_alarms": sum(len(ids) for ids in alarm_event_ids(capture.snapshot(), stack.line, expected,
                                                                   started).values())}
            for stage, count in counts.items():
                if count >= total and stage not in done:
                    done[stage] = (time.time() * 1000 - started) / 1000
            time.sleep(0.5)
        rows = journal_rows(stack)
        messages = capture.snapshot()
        sessions_lost = stack.edge_sessions_lost()
        stages_after = stack.stages()
        stages = {"sim_fired": total, "sim_discarded": simulator_discards(stack)}
        stages |= {k: stages_after[k] - stages_before[k] for k in stages_after}
        stages |= {"journal_rows": sum(rows.get(k, 0) for k in expected)}
        print(f"  [alarms] the simulator had fired all {total} after {flood_done_s:.1f} s; per stage: {stages}",
              flush=True)
        for line in (stack.supervisor.log_dir / "edge.log").read_text(errors="replace").splitlines():
            if "session lost" in line or "busy, not dead" in line or "queue overflowed" in line:
                print(f"  [alarms] edge: {line[:300]}", flush=True)  # why a stage fell short
        print(f"  [alarms] all {total} events reached (s after the flood's start): {done}; at the end: {counts}; "
              f"OPC UA sessions the edge lost: {sessions_lost}", flush=True)
    finally:
        unsubscribe(client)
    event_ids = alarm_event_ids(messages, stack.line, expected, started)
    latencies = [received - json.loads(raw)["source_ts_ms"] for received, topic, raw in messages
                 if received >= started and condition_of(topic, stack.line) in expected
                 and json.loads(raw).get("event_id")]
    # the retained last state, as a plant app subscribing now sees it
    retained = Capture()
    late = subscribe(stack.mqtt_port, f"{stack.line}/_alarms/#", retained, "retained")
    time.sleep(2.0)
    unsubscribe(late)
    last = {condition_of(t, stack.line): json.loads(p) for _, t, p in retained.snapshot()}
    wrong_last = [k for k in expected if last.get(k, {}).get("active") != after[k][1]]  # type: ignore[index]
    return {
        "produced": total, "rate": total / seconds, "all_in_s": done, "sessions_lost": sessions_lost,
        "journaled": sum(rows.get(k, 0) for k in expected), "on_alarms": sum(len(v) for v in event_ids.values()),
        "lost_journal": sum(max(0, produced[k] - rows.get(k, 0)) for k in expected),
        "lost_alarms": sum(max(0, produced[k] - len(event_ids[k])) for k in expected),
        "wrong_last_state": wrong_last, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
        "max": max(latencies, default=float("nan")), "sim_total": after["AlarmEvents"], "stages": stages,
    }


def run_data(stack: Stack, rate: float, tags: int, seconds: float, drain: float, warmup: float) -> dict[str, object]:
    capture = Capture()
    prefix = f"{stack.line}/{DATA_CELL}/Synthetic/"
    client = subscribe(stack.mqtt_port, f"{prefix}#", capture, "data")
    try:
        wait_until(lambda: len({t for _, t, _ in capture.snapshot()}) >= tags, 60, "every synthetic tag mirrored")
        time.sleep(warmup)
        start = time.time() * 1000
        time.sleep(seconds)
        end = time.time() * 1000
        time.sleep(min(drain, 10.0))  # data changes arrive within a second; the long drain is for the alarms
        messages = capture.snapshot()
    finally:
        unsubscribe(client)
    seen: set[tuple[str, int]] = set()
    latencies: list[float] = []
    for received, topic, raw in messages:
        if not topic.startswith(prefix) or topic.endswith("/_meta"):
            continue
        body = json.loads(raw)
        ts = body.get("timestamp_ms")
        if ts is None or not start <= ts < end:
            continue
        seen.add((topic, ts))
        latencies.append(received - ts)
    offered = rate * seconds
    # not "lost" in the alarm sense: a synthetic tag's step the starved simulator skipped was never produced
    return {"produced": offered, "rate": rate, "delivered": len(seen), "lost": max(0, offered - len(seen)),
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "max": max(latencies, default=float("nan"))}


def scenario(name: str, args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix=f"uns-flood-{name}-"))
    workdir.chmod(0o755)  # Mosquitto started as root drops to its own user: it must read its config
    stack = None
    try:
        print(f"  [{name}] load before: {uptime()}", flush=True)
        stack = start_stack(workdir, name, args.rate, args.tags)
        if name == "alarms":
            result = run_alarms(stack, args.rate, args.seconds, args.drain)
        else:
            result = run_data(stack, args.rate, args.tags, args.seconds, args.drain, args.warmup)
        print(f"  [{name}] load after:  {uptime()}", flush=True)
        print(f"  [{name}] {result}", flush=True)
        return result
    finally:
        if stack is not None:
            stack.supervisor.stop_all()
        if args.keep:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def fmt(values: list[float], digits: int = 0) -> str:
    med = statistics.median(values)
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="condition events/s and data changes/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tags", type=int, default=100, help="synthetic tags of the data scenario")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--drain", type=float, default=120.0, help="max s for late messages after the window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--scenarios", nargs="+", default=["alarms", "data"], choices=["alarms", "data"])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    print(f"alarm flood bench {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {args.rate:g}/s for {args.seconds:g} s, "
          f"{args.runs} run(s); the machine is shared, load: {uptime()}", flush=True)
    results: dict[str, list[dict[str, object]]] = {name: [] for name in args.scenarios}
    for run in range(args.runs):
        print(f"run {run + 1}", flush=True)
        for name in args.scenarios:  # alternating, so both see the same load
            results[name].append(scenario(name, args))
    rows = [("rate asked /s", "rate", 0), ("produced", "produced", 0), ("lost / not delivered", "lost", 0),
            ("p50 latency ms", "p50", 1), ("p99 latency ms", "p99", 1), ("max latency ms", "max", 1)]
    print(f"\n{'':18}" + "".join(f"{name + ' (median, range)':>34}" for name in args.scenarios))
    for label, key, digits in rows:
        cells = []
        for name in args.scenarios:
            k = ("lost_journal" if key == "lost" and name == "alarms" else key)
            cells.append(fmt([float(r[k]) for r in results[name]], digits))  # type: ignore[arg-type]
        print(f"{label:18}" + "".join(f"{c:>34}" for c in cells))
    if "alarms" in results:
        for r in results["alarms"]:
            print(f"alarms: journaled {r['journaled']} / on _alarms {r['on_alarms']} of {r['produced']} produced; "
                  f"lost journal {r['lost_journal']}, _alarms {r['lost_alarms']}; OPC UA sessions lost "
                  f"{r['sessions_lost']}; "
                  f"wrong retained last state {r['wrong_last_state'] or 'none'}")
    print(f"load at the end: {uptime()}")


if __name__ == "__main__":
    main()
