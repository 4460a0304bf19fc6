"""The committed protobuf module is exactly what proto/generate.py makes, and runs on upb."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_module_matches_a_fresh_generation() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_runtime_uses_the_upb_backend() -> None:
    from google.protobuf.internal import api_implementation

    from uns.sparkplug import sparkplug_b_pb2  # noqa: F401

    assert api_implementation.Type() == "upb"


def test_seq_zero_has_explicit_presence() -> None:
    """proto2 presence: seq=0 is on the wire (tck-id-topics-nbirth-seq-num)."""
    from uns.sparkplug.sparkplug_b_pb2 import Payload

    payload = Payload(seq=0)
    assert payload.HasField("seq")
    assert Payload.FromString(payload.SerializeToString()).HasField("seq")
    assert not Payload.FromString(Payload().SerializeToString()).HasField("seq")
