"""What does it cost to carry structured data as Sparkplug Templates rather than as flat metrics?

Issue 21 asks for "encode/decode of a birth with 1,000 template instances of a 20-member type,
beside the same data as flat metrics". Both shapes carry the same 20,000 values and run side by
side, alternating, in one process, so their ratio holds on a shared, noisy machine:

* ``templates``: one NBIRTH with the definition ``_types_/Motor`` (20 null members, a version) and
  1,000 instances ``Motor<i>`` (alias, timestamp, ``template_ref``, version, all 20 members with
  name, datatype and value, as the edge's :mod:`edge_node.templates` builds them: members carry no
  alias and no timestamp of their own);
* ``flat``: one NBIRTH of 20,000 metrics ``Motor<i>/<member>``, each with name, alias, datatype,
  timestamp and value (what the edge publishes for the same tags mapped as scalars).

Members cycle Double, Int32, Boolean, String, Int64 (four of each). Per shape the script times
:func:`uns.sparkplug.codec.encode_payload`, :func:`decode_payload` (as a host decodes a birth)
and, for templates, the host's own rule check :func:`uns.sparkplug.templates.check_instances`
(every instance against its definition, tck-id-payloads-template-instance-members-birth), which a
host pays on every birth on top of decoding. Each run times ``--iters`` births per operation and
shape; the medians over ``--runs`` runs are printed with their range, per birth and per value.

Repeat with::

    .venv/bin/python bench/template_codec_bench.py              # 7 runs x 5 births each
    .venv/bin/python bench/template_codec_bench.py --runs 3 --iters 2 --profile   # + cProfile of decode
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uns.sparkplug.codec import decode_payload, encode_payload  # noqa: E402
from uns.sparkplug.datatypes import DataType  # noqa: E402
from uns.sparkplug.model import Metric, Payload, Template  # noqa: E402
from uns.sparkplug.templates import DEFINITION_PREFIX, check_instances, is_definition  # noqa: E402
from uns.sparkplug.topic import MessageType  # noqa: E402

TS = 1_700_000_000_000
INSTANCES, MEMBERS = 1_000, 20
TYPE, VERSION = "Motor", "0123456789abcdef"
_CYCLE = (DataType.Double, DataType.Int32, DataType.Boolean, DataType.String, DataType.Int64)
MEMBER_TYPES = [(f"Member{j:02d}", _CYCLE[j % len(_CYCLE)]) for j in range(MEMBERS)]


def _value(datatype: DataType, i: int, j: int) -> object:
    if datatype is DataType.Double:
        return i * 1.5 + j
    if datatype is DataType.Int32:
        return i - 500 + j
    if datatype is DataType.Boolean:
        return (i + j) % 2 == 0
    if datatype is DataType.Int64:
        return i * 1_000_003 + j
    return f"motor {i} {j}"


def template_birth() -> Payload:
    definition = Template(is_definition=True, version=VERSION,
                          metrics=[Metric(name, None, datatype, is_null=True) for name, datatype in MEMBER_TYPES])
    metrics = [Metric(DEFINITION_PREFIX + TYPE, definition, DataType.Template, timestamp=TS)]
    for i in range(INSTANCES):
        members = [Metric(name, _value(datatype, i, j), datatype) for j, (name, datatype) in enumerate(MEMBER_TYPES)]
        metrics.append(Metric(f"{TYPE}{i}", Template(members, template_ref=TYPE, version=VERSION),
                              DataType.Template, alias=i + 1, timestamp=TS))
    return Payload(metrics, timestamp=TS, seq=0)


def flat_birth() -> Payload:
    metrics = []
    for i in range(INSTANCES):
        for j, (name, datatype) in enumerate(MEMBER_TYPES):
            metrics.append(Metric(f"{TYPE}{i}/{name}", _value(datatype, i, j), datatype,
                                  alias=i * MEMBERS + j + 1, timestamp=TS))
    return Payload(metrics, timestamp=TS, seq=0)


def host_check(payload: Payload) -> None:
    """What the host adds on a birth with templates: learn the definitions, check every instance."""
    definitions = {m.name: m.value for m in payload.metrics if is_definition(m)}
    check_instances(payload.metrics, definitions, birth=True)  # type: ignore[arg-type]


def seconds_per_call(fn: Callable[[], object], iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def _fmt(samples: list[float]) -> str:
    med = statistics.median(samples)
    per_value = med * 1e6 / (INSTANCES * MEMBERS)
    return f"{med * 1e3:8.2f} ms ({min(samples) * 1e3:.2f}-{max(samples) * 1e3:.2f})  {per_value:6.2f} µs/value"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs; medians and ranges are over these")
    parser.add_argument("--iters", type=int, default=5, help="births timed per operation and shape in each run")
    parser.add_argument("--profile", action="store_true", help="cProfile one decode and one encode of each shape")
    args = parser.parse_args()

    shapes = {"templates": template_birth(), "flat": flat_birth()}
    wire = {name: encode_payload(p, MessageType.NBIRTH) for name, p in shapes.items()}
    # the two shapes carry the same values
    decoded = decode_payload(wire["templates"], MessageType.NBIRTH)
    host_check(decoded)
    as_flat = {f"{m.name}/{member.name}": member.value for m in decoded.metrics[1:] for member in m.value.metrics}
    assert as_flat == {m.name: m.value for m in decode_payload(wire["flat"], MessageType.NBIRTH).metrics}

    ops: dict[str, Callable[[str], Callable[[], object]]] = {
        "encode": lambda s: lambda: encode_payload(shapes[s], MessageType.NBIRTH),
        "decode": lambda s: lambda: decode_payload(wire[s], MessageType.NBIRTH),
    }
    results: dict[tuple[str, str], list[float]] = {}
    for fn in (op("templates") for op in ops.values()):
        fn()  # warm-up
    for _run in range(args.runs):
        for op, make in ops.items():
            for shape in shapes:  # alternating, so both see the same machine
                results.setdefault((op, shape), []).append(seconds_per_call(make(shape), args.iters))
        results.setdefault(("host check", "templates"), []).append(
            seconds_per_call(lambda: host_check(decoded), args.iters))

    print(f"NBIRTH of {INSTANCES:,} instances x {MEMBERS} members vs {INSTANCES * MEMBERS:,} flat metrics "
          f"(same values); {args.runs} runs x {args.iters} births; median (range) per birth, and per value")
    print(f"  bytes: templates {len(wire['templates']):,}, flat {len(wire['flat']):,} "
          f"({len(wire['templates']) / len(wire['flat']):.0%})")
    for op in ops:
        for shape in shapes:
            print(f"  {op:7} {shape:10}{_fmt(results[(op, shape)])}")
        ratio = statistics.median(results[(op, "templates")]) / statistics.median(results[(op, "flat")])
        print(f"  {op:7} templates/flat: {ratio:.2f}x the time")
    print(f"  host check of the instances {_fmt(results[('host check', 'templates')])}")
    both = {s: statistics.median(results[("encode", s)]) + statistics.median(results[("decode", s)]) for s in shapes}
    print(f"  encode+decode: templates {both['templates'] * 1e3:.1f} ms, flat {both['flat'] * 1e3:.1f} ms "
          f"-> {both['templates'] / both['flat']:.2f}x")

    if args.profile:
        for op, make in ops.items():
            for shape in shapes:
                profiler = cProfile.Profile()
                profiler.runcall(make(shape))
                print(f"\n--- cProfile: {op} {shape}")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
