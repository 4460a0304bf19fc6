"""The mirror's hand-built value JSON is byte for byte what the ``UnsValue`` model gives (issue 20).

The fast path (``uns.uns_payload.value_json``, used by ``UnsMirror.value_payload``) must not change
one byte of the UNS contract: every Sparkplug datatype's values (tests/sparkplug/strategies.py:
NaN and ±inf, float32, Int64/UInt64 extremes, bytes, arrays, DataSets, nested templates), null,
every quality with and without status code, reason and raw value, and unicode in strings, units
and datatypes are compared with the pydantic model's bytes (tests/support/mirror_json.py).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mes_adapter.host.live_model import MetricState
from mes_adapter.host.mirror import UnsMirror
from tests.sparkplug.strategies import METRIC_DATATYPES, values
from tests.support.mirror_json import model_value_payload
from uns.conventions import Quality, QualityReason
from uns.uns_payload import UnsValue, value_json

#: any unicode a protobuf string can carry (no lone surrogates), control characters included
UNICODE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
STATUS_CODES = st.none() | st.sampled_from([0, 0x80000000, 0x808D0000, 2151415808]) | st.integers(0, 2**32 - 1)


@st.composite
def states(draw: st.DrawFn) -> MetricState:
    datatype = draw(st.sampled_from(METRIC_DATATYPES))
    value = draw(st.none() | values(datatype))
    timestamp = draw(st.integers(0, 2**63 - 1))
    return MetricState(
        draw(UNICODE), draw(UNICODE), draw(st.none() | UNICODE), draw(UNICODE), value,
        draw(st.sampled_from([datatype.name]) | UNICODE), draw(st.sampled_from(list(Quality))), timestamp, timestamp,
        timestamp, status_code=draw(STATUS_CODES), unit=draw(st.none() | UNICODE),
        future_timestamp=draw(st.booleans()), is_null=value is None,
        quality_reason=draw(st.none() | st.sampled_from([r.value for r in QualityReason]) | UNICODE),
        raw_value=draw(st.none() | UNICODE))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_mirror_value_payload_equals_the_model_bytes(state: MetricState) -> None:
    assert UnsMirror.value_payload(state) == model_value_payload(state)


@settings(max_examples=1000, deadline=None)
@given(value=st.none() | st.booleans() | st.integers() | st.floats() | UNICODE
       | st.lists(st.none() | st.floats() | st.integers() | UNICODE, max_size=4)
       | st.dictionaries(UNICODE, st.none() | st.floats(allow_nan=False, allow_infinity=False) | UNICODE, max_size=3),
       timestamp_ms=st.integers(0, 2**63 - 1), quality=st.sampled_from(list(Quality)), status_code=STATUS_CODES,
       datatype=st.none() | UNICODE, unit=st.none() | UNICODE, is_historical=st.booleans(),
       future_timestamp=st.booleans(), reason=st.none() | UNICODE, raw_value=st.none() | UNICODE)
def test_value_json_equals_unsvalue_to_bytes(**fields) -> None:  # noqa: ANN003
    """Every field of the model, including ``is_historical`` the mirror leaves false; NaN and ±inf
    given directly (not through ``jsonable``) are ``null`` in both."""
    assert value_json(**fields) == UnsValue(**fields).to_bytes()


@pytest.mark.parametrize(("value", "expected"), [
    (72.4, b"72.4"), (1e-7, b"1e-7"), (1e-5, b"0.00001"), (1e16, b"1e+16"), (-0.0, b"-0.0"),
    (2**64 - 1, b"18446744073709551615"), (True, b"true"), ("\u00b0C\n\"", b'"\xc2\xb0C\\n\\""'),
])
def test_float_and_text_forms_are_pydantics(value: object, expected: bytes) -> None:
    """The forms json.dumps would get wrong (``1e-07``, ``1e-05``, ``\\u00b0``) stay pydantic's."""
    payload = value_json(value, 1_733_904_005_123, Quality.GOOD, 0, "Double", "degC")
    assert payload == (b'{"value":' + expected + b',"timestamp_ms":1733904005123,"quality":"GOOD","status_code":0,'
                       b'"datatype":"Double","unit":"degC","is_historical":false,"future_timestamp":false}')
    assert json.loads(payload)["value"] == value


def test_null_value_and_unknown_quality() -> None:
    """Bad data keeps ``"value": null`` first; a quality outside the contract is refused by name."""
    assert value_json(None, 5, Quality.BAD, reason="comm_lost") == (
        b'{"value":null,"timestamp_ms":5,"quality":"BAD","is_historical":false,"future_timestamp":false,'
        b'"reason":"comm_lost"}')
    with pytest.raises(ValueError, match="quality must be one of GOOD, UNCERTAIN, BAD, STALE, not 'FINE'"):
        value_json(1.0, 5, "FINE")  # type: ignore[arg-type]
