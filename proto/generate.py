"""Regenerate ``uns/sparkplug/sparkplug_b_pb2.py`` from ``proto/sparkplug_b.proto``.

The generated module is committed so that a runtime install needs no compiler; this script,
pinned to grpcio-tools (dev extra), makes it reproducible, and ``tests/test_proto_generated.py``
fails if the committed file differs from a fresh generation.

Usage: ``python proto/generate.py [--check]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto" / "sparkplug_b.proto"
TARGET = ROOT / "uns" / "sparkplug" / "sparkplug_b_pb2.py"


def generate() -> str:
    """Run protoc (from grpcio-tools) and return the generated module text."""
    from grpc_tools import protoc  # imported late: a dev-only dependency

    with tempfile.TemporaryDirectory() as out:
        rc = protoc.main(
            ["protoc", f"--proto_path={PROTO.parent}", f"--python_out={out}", str(PROTO)]
        )
        if rc != 0:
            raise SystemExit(f"protoc failed with exit code {rc}")
        return (Path(out) / "sparkplug_b_pb2.py").read_text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed module is stale")
    args = parser.parse_args()
    text = generate()
    if args.check:
        if TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python proto/generate.py", file=sys.stderr)
            return 1
        print(f"{TARGET} is up to date")
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
