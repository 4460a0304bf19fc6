"""How many OPC UA samples per second the edge node's validation stage handles (no network).

Why: the target is 20,000 OPC UA changes/s through one edge node on a 2-core machine; validation
runs once per notification on the event loop, so its cost per sample bounds that rate.

Repeat: ``.venv/bin/python bench/edge_opcua_validation.py [--tags 1000] [--samples 500000]``.
Prints samples/s and µs/sample for a mix of Double tags with scaling, range and deadband.
"""

from __future__ import annotations

import argparse
import random
import time

from edge_node.config import TagConfig
from edge_node.validation import RawSample, TagValidator, ValidationStats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=500_000)
    args = parser.parse_args()
    stats = ValidationStats()
    validators = [
        TagValidator(TagConfig(node_id=f"ns=2;s=T{i}", metric=f"T{i}", cell="Bench", scale=0.1, offset=1.0,
                               eng_low=-1000, eng_high=1000, deadband=0.05), "Bench", stats=stats)
        for i in range(args.tags)
    ]
    rng = random.Random(1)
    base = 1_700_000_000_000
    samples = [RawSample(rng.uniform(-5000, 5000), 0, base + i, base + i) for i in range(args.samples)]
    start = time.perf_counter()
    n_tags = len(validators)
    for i, sample in enumerate(samples):
        validators[i % n_tags].process(sample, base + i)
    elapsed = time.perf_counter() - start
    print(f"{args.samples} samples over {args.tags} tags: {args.samples / elapsed:,.0f} samples/s, "
          f"{elapsed / args.samples * 1e6:.2f} µs/sample; accepted {stats.accepted}, dropped {stats.dropped}")


if __name__ == "__main__":
    main()
