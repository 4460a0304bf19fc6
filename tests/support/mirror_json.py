"""The UNS mirror's value payload as the pydantic model builds it: the reference for the fast path.

``UnsMirror.value_payload`` builds the JSON without the model since issue 20 (``uns.uns_payload.value_json``);
tests/host/test_mirror_json.py holds it to these bytes, and ``bench/host_mirror_bench.py
--mirror-json pydantic`` runs the host with this builder to measure what the fast path saves.
"""

from __future__ import annotations

from mes_adapter.host.live_model import MetricState
from mes_adapter.host.template_json import uns_value
from uns.uns_payload import UnsValue


def model_value_payload(state: MetricState) -> bytes:
    return UnsValue(value=uns_value(state.value), timestamp_ms=state.timestamp_ms, quality=state.quality,
                    status_code=state.status_code, datatype=state.datatype, unit=state.unit,
                    future_timestamp=state.future_timestamp, reason=state.quality_reason,
                    raw_value=state.raw_value).to_bytes()
