"""Command round trip with telemetry flowing: request → DCMD → edge checks → OPC UA write → read-back → result.

Target (bench/README.md): p50 under 30 ms, p99 under 100 ms on a 2-core machine.

What runs, each in its own process, all on loopback: Mosquitto (started here on a free port), the
simulated line (``uns sim run``, ticking at its normal 10 Hz plus ``--extra-tags`` synthetic
Doubles at ``--extra-rate-hz``), and the edge node (``uns edge run``) forwarding every tag as
Sparkplug B and running the command executor with an allowlist and a user registry. This process
is the requester: :class:`unshub.command_client.CommandClient` builds, signs (Ed25519), sends the
DCMD and waits for the JSON result on ``<line>/_cmd/result/<id>``.

Broker setting that matters: Mosquitto's ``set_tcp_nodelay true`` (its default is false). Without
it a small DCMD forwarded right after other small packets waits for the edge's delayed ACK
(Nagle, ~40 ms on Linux) and the p50 is about 50 ms instead of under 10; ``--broker-nagle``
shows it. The requester side sets TCP_NODELAY on its own socket for the same reason.

One command at a time (a PLC setpoint is not a throughput workload); each round trip is timed from
just before the request is built and signed until its result has been parsed. The rule has an
allowed-states list, so the edge reads the machine state from OPC UA twice (check at arrival and
again before the write), then reads the old value, writes, reads back, appends two audit records
(SQLite, fsync) and publishes the result. The result also says where the edge spent its time
(received → written → completed, edge clock), printed as medians.

Repeat with::

    .venv/bin/python bench/command_roundtrip.py                      # 300 commands, 200 extra tags @ 10 Hz
    .venv/bin/python bench/command_roundtrip.py --commands 1000 --extra-tags 1000 --extra-rate-hz 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402
from processes import free_port, stop, wait_for_port  # noqa: E402 - bench/processes.py

from simulator.catalog import tag_catalog  # noqa: E402
from simulator.config import NAMESPACE_URI, SimulatorConfig  # noqa: E402
from uns.commands.model import Outcome  # noqa: E402
from uns.commands.signing import generate_private_key, public_key_text  # noqa: E402
from unshub.command_client import CommandClient, Signer  # noqa: E402
from unshub.simulated_line import simulator_config_dict  # noqa: E402

GROUP, EDGE = "acme:plant1", "packaging:Line1"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def allowlist_yaml() -> str:
    node = f"nsu={NAMESPACE_URI};s=Line1/Filler/SpeedSetpoint"
    return f"""\
version: "bench-1"
lines:
  - group_id: "{GROUP}"
    edge_node_id: "{EDGE}"
    state: {{metric: State}}
    metrics:
      - device_id: Filler
        metric: SpeedSetpoint
        datatype: Double
        min: 0
        max: 600
        allowed_states: [Idle, Execute, Held, Stopped, Complete]
        tolerance: 0.001
        write: {{node_id: "{node}"}}
"""


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


async def measure(broker_url: str, key: object, commands: int, warmup: int,
                  ) -> tuple[list[float], list[tuple[int, int, int, int]]]:
    signer = Signer("alice", "Alice Archer", key)  # type: ignore[arg-type]
    times: list[float] = []
    edge_split: list[tuple[int, int, int, int]] = []
    async with CommandClient(broker_url, birth_wait_s=15.0) as client:
        await client.resolve(GROUP, EDGE, "Filler", "SpeedSetpoint")
        for i in range(warmup + commands):
            value = 100.0 + (i % 200) * 0.5
            t0 = time.perf_counter()
            sent_ms = time.time_ns() // 1_000_000
            result = await client.submit(group_id=GROUP, edge_node_id=EDGE, device_id="Filler", metric="SpeedSetpoint",
                                         value=value, requested_by="alice", reason="bench", signers=[signer],
                                         timeout=10)
            elapsed = (time.perf_counter() - t0) * 1000
            back_ms = time.time_ns() // 1_000_000
            if result.outcome is not Outcome.CONFIRMED:
                raise SystemExit(f"command {i} was not confirmed: {result.model_dump_json()}")
            if i >= warmup:
                times.append(elapsed)
                assert result.written_at_ms is not None
                edge_split.append((result.received_at_ms - sent_ms, result.written_at_ms - result.received_at_ms,
                                   result.completed_at_ms - result.written_at_ms, back_ms - result.completed_at_ms))
    return times, edge_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--extra-tags", type=int, default=200, help="synthetic Doubles forwarded as telemetry")
    parser.add_argument("--extra-rate-hz", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, audit chain)")
    parser.add_argument("--broker-nagle", action="store_true",
                        help="run Mosquitto without set_tcp_nodelay (its default) to see the ~40 ms Nagle delay")
    args = parser.parse_args()

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists():
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    work = Path(tempfile.mkdtemp(prefix="uns-cmd-bench-"))
    broker_port, opcua_port = free_port(), free_port()
    nodelay = "" if args.broker_nagle else "set_tcp_nodelay true\n"
    (work / "mosquitto.conf").write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\n"
                                         f"persistence false\nmax_queued_messages 0\n{nodelay}")
    key = generate_private_key()
    (work / "allowlist.yaml").write_text(allowlist_yaml())
    (work / "users.yaml").write_text(yaml.safe_dump({"users": {"alice": {
        "full_name": "Alice Archer", "public_key": public_key_text(key.public_key())}}}))
    sim_cfg = SimulatorConfig(port=opcua_port, extra_tags=args.extra_tags, extra_rate_hz=args.extra_rate_hz)
    tags = [t.model_dump() for t in tag_catalog(sim_cfg, include_synthetic=True)]
    broker_url = f"mqtt://127.0.0.1:{broker_port}"
    edge = simulator_config_dict(sim_cfg.endpoint, broker_url, work / "edge", tags,
                                 groups=("line", "cell", "synthetic"))
    edge["commands"] = {"allowlist": str(work / "allowlist.yaml"), "users": str(work / "users.yaml")}
    (work / "plant.yaml").write_text(yaml.safe_dump(edge, sort_keys=False))
    py = sys.executable
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start([mosquitto, "-c", str(work / "mosquitto.conf")], work / "mosquitto.log"))
        wait_for_port(broker_port)
        procs.append(start([py, "-m", "unshub.cli.main", "sim", "run", "--port", str(opcua_port), "--extra-tags",
                            str(args.extra_tags), "--extra-rate-hz", str(args.extra_rate_hz)], work / "sim.log"))
        wait_for_port(opcua_port)
        procs.append(start([py, "-m", "unshub.cli.main", "edge", "run", "-c", str(work / "plant.yaml")],
                           work / "edge.log"))
        times, split = asyncio.run(measure(broker_url, key, args.commands, args.warmup))
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"a process died; see {work}")
    finally:
        for proc in reversed(procs):
            stop(proc)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    telemetry = args.extra_tags * args.extra_rate_hz
    print(f"command round trip, {len(times)} commands (after {args.warmup} warm-up), one at a time, "
          f"telemetry ≈ {telemetry:,.0f} synthetic changes/s + the line's own tags at 10 Hz; "
          f"{os.cpu_count()} CPUs; mosquitto set_tcp_nodelay {'false' if args.broker_nagle else 'true'}")
    print(f"  p50 {percentile(times, 0.50):6.1f} ms   (target < 30 ms)")
    print(f"  p90 {percentile(times, 0.90):6.1f} ms")
    print(f"  p99 {percentile(times, 0.99):6.1f} ms   (target < 100 ms)")
    print(f"  max {max(times):6.1f} ms   mean {statistics.fmean(times):.1f} ms")
    med = [statistics.median(s[i] for s in split) for i in range(4)]
    print(f"  where, medians (one wall clock, ms resolution): request → edge executor {med[0]:.0f} ms, "
          f"checks + old value + write {med[1]:.0f} ms, read-back {med[2]:.0f} ms, "
          f"final audit + result → requester {med[3]:.0f} ms")
    print("repeat: .venv/bin/python bench/command_roundtrip.py "
          f"--commands {args.commands} --extra-tags {args.extra_tags} --extra-rate-hz {args.extra_rate_hz:g}")
    if args.keep:
        print(f"work directory kept: {work}")


if __name__ == "__main__":
    main()
