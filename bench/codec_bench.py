"""How much does the typed Sparkplug layer cost over the raw generated protobuf code?

The issue "Foundation" sets the bar: encode+decode through :mod:`uns.sparkplug.codec` must keep
at least 50 % of the metrics/s of hand-written pb2 code, because every service (edge node, host,
MES adapter) pays this cost per message. Both variants run side by side in the same process so
the ratio is meaningful on a shared, noisy machine.

Workloads:

* ``ndata100``: 100 metrics cycling Double/Int32/Boolean/String, each with alias and timestamp
  (alias-only NDATA on the typed side, decoded through a birth-learned catalog);
* ``nbirth10k``: one 10,000-metric NBIRTH (name + alias + datatype + timestamp + value).

"raw" = build ``pb.Payload`` from pre-built (name, datatype, field, wire value) rows +
``SerializeToString`` (the strict baseline); a second raw variant, which also formats names and
values inside the loop, is printed too; ``ParseFromString`` + ``WhichOneof`` per
metric into a dict of Python values. "typed" = :func:`encode_payload` from model objects and
:func:`decode_payload` back to model objects.

Repeat with::

    .venv/bin/python bench/codec_bench.py            # default iteration counts
    .venv/bin/python bench/codec_bench.py --quick    # a smoke run (CI)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uns.sparkplug import sparkplug_b_pb2 as pb  # noqa: E402
from uns.sparkplug.catalog import EdgeNodeCatalog  # noqa: E402
from uns.sparkplug.codec import decode_payload, encode_payload  # noqa: E402
from uns.sparkplug.datatypes import DataType  # noqa: E402
from uns.sparkplug.model import Metric, Payload  # noqa: E402
from uns.sparkplug.topic import MessageType  # noqa: E402

TS = 1_700_000_000_000
_CYCLE = (DataType.Double, DataType.Int32, DataType.Boolean, DataType.String)


def _value(datatype: DataType, i: int) -> object:
    if datatype is DataType.Double:
        return i * 1.5
    if datatype is DataType.Int32:
        return i - 50
    if datatype is DataType.Boolean:
        return i % 2 == 0
    return f"value {i}"


def typed_payload(n: int) -> Payload:
    metrics = []
    for i in range(n):
        datatype = _CYCLE[i % 4]
        metrics.append(Metric(name=f"Line1/Cell{i // 10}/Tag{i}", value=_value(datatype, i),
                              datatype=datatype, alias=i + 1, timestamp=TS + i))
    return Payload(metrics=metrics, timestamp=TS, seq=0)


# ----------------------------------------------------------------------------------- raw pb2

_RAW_FIELD = {DataType.Double: "double_value", DataType.Int32: "int_value",
              DataType.Boolean: "boolean_value", DataType.String: "string_value"}


def raw_rows(n: int) -> list[tuple[str, int, str, object]]:
    """Names, datatypes, fields and wire values prepared up front, as the typed side has them."""
    rows = []
    for i in range(n):
        datatype = _CYCLE[i % 4]
        value = _value(datatype, i)
        if datatype is DataType.Int32 and value < 0:  # type: ignore[operator]
            value += 1 << 32  # type: ignore[operator]
        rows.append((f"Line1/Cell{i // 10}/Tag{i}", int(datatype), _RAW_FIELD[datatype], value))
    return rows


def raw_encode(rows: list[tuple[str, int, str, object]], birth: bool) -> bytes:
    out = pb.Payload()
    out.timestamp = TS
    out.seq = 0
    add = out.metrics.add
    for i, (name, datatype, field, value) in enumerate(rows):
        m = add()
        if birth:
            m.name = name
            m.datatype = datatype
        m.alias = i + 1
        m.timestamp = TS + i
        setattr(m, field, value)
    return out.SerializeToString()


def raw_encode_reference(n: int, birth: bool) -> bytes:
    """The second raw variant: values and names made inside the loop."""
    out = pb.Payload()
    out.timestamp = TS
    out.seq = 0
    add = out.metrics.add
    for i in range(n):
        datatype = _CYCLE[i % 4]
        m = add()
        if birth:
            m.name = f"Line1/Cell{i // 10}/Tag{i}"
            m.datatype = datatype
        m.alias = i + 1
        m.timestamp = TS + i
        value = _value(datatype, i)
        if datatype is DataType.Int32 and value < 0:  # type: ignore[operator]
            value += 1 << 32  # type: ignore[operator]
        setattr(m, _RAW_FIELD[datatype], value)
    return out.SerializeToString()


def raw_decode(data: bytes) -> list[dict]:
    payload = pb.Payload()
    payload.ParseFromString(data)
    out = []
    for m in payload.metrics:
        which = m.WhichOneof("value")
        out.append({"name": m.name, "alias": m.alias, "timestamp": m.timestamp,
                    "value": getattr(m, which) if which else None})
    return out


# ------------------------------------------------------------------------------------ harness


def rate(fn: Callable[[], object], metrics_per_call: int, iters: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _round in range(3):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        best = min(best, time.perf_counter() - start)
    return metrics_per_call * iters / best


def run(name: str, n: int, iters: int) -> tuple[float, float]:
    birth = n > 1000
    message_type = MessageType.NBIRTH if birth else MessageType.NDATA
    payload = typed_payload(n)
    data_typed = encode_payload(payload, message_type)
    rows = raw_rows(n)
    data_raw = raw_encode(rows, birth)
    catalog = EdgeNodeCatalog()
    catalog.learn_nbirth(typed_payload(n))
    resolve = catalog.resolver()
    results = {}
    results["raw encode"] = rate(lambda: raw_encode(rows, birth), n, iters)
    results["ref encode"] = rate(lambda: raw_encode_reference(n, birth), n, iters)
    results["raw decode"] = rate(lambda: raw_decode(data_raw), n, iters)
    results["typed encode"] = rate(lambda: encode_payload(payload, message_type), n, iters)
    if birth:
        results["typed decode"] = rate(lambda: decode_payload(data_typed, message_type), n, iters)
    else:
        results["typed decode"] = rate(lambda: decode_payload(data_typed, message_type, resolve), n, iters)
    both_raw = 1 / (1 / results["raw encode"] + 1 / results["raw decode"])
    both_typed = 1 / (1 / results["typed encode"] + 1 / results["typed decode"])
    print(f"\n{name}: {n} metrics/payload, {len(data_typed):,} bytes typed / {len(data_raw):,} raw, "
          f"{iters} iterations x 3 rounds (best)")
    print(f"  {'':14}{'raw pb2':>14}{'typed':>14}{'typed/raw':>11}")
    for op in ("encode", "decode"):
        r, t = results[f"raw {op}"], results[f"typed {op}"]
        print(f"  {op:14}{r:>12,.0f}/s{t:>12,.0f}/s{t / r:>10.0%}")
    print(f"  {'encode+decode':14}{both_raw:>12,.0f}/s{both_typed:>12,.0f}/s{both_typed / both_raw:>10.0%}")
    both_ref = 1 / (1 / results["ref encode"] + 1 / results["raw decode"])
    print(f"  raw with values built in the loop: encode "
          f"{results['ref encode']:,.0f}/s, encode+decode {both_ref:,.0f}/s -> typed/raw {both_typed / both_ref:.0%}")
    return both_raw, both_typed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    print("metrics/s (higher is better); target: typed >= 50% of raw")
    ratios = []
    for name, n, iters in (("ndata100", 100, 2000 // scale), ("nbirth10k", 10_000, 20 // scale or 1)):
        raw, typed = run(name, n, iters)
        ratios.append(typed / raw)
    print(f"\nworst typed/raw ratio: {min(ratios):.0%} ({'OK' if min(ratios) >= 0.5 else 'BELOW TARGET'})")


if __name__ == "__main__":
    main()
