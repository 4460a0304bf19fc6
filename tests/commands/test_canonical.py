"""The canonical JSON form and the command hash: stable, order-free, RFC 8785 numbers."""

from __future__ import annotations

import hashlib
import math
import uuid

import pytest

from uns.audit.canonical import CanonicalizationError, canonical_json, format_number
from uns.commands.model import CommandRequest


def test_sorted_keys_no_whitespace_utf8() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "é\n\"x\""]}) == '{"a":[true,null,"é\\n\\"x\\""],"b":1}'.encode()


def test_control_characters_use_lowercase_unicode_escapes() -> None:
    assert canonical_json("\x01\x1f\t") == b'"\\u0001\\u001f\\t"'


def test_keys_sort_by_utf16_code_units() -> None:
    # U+1F600 (surrogates D83D..) sorts before U+FF5E in UTF-16, after it in code points
    assert canonical_json({"\uff5e": 1, "\U0001f600": 2}).decode() == '{"\U0001f600":2,"\uff5e":1}'


@pytest.mark.parametrize(("value", "text"), [
    (100.0, "100"), (-0.0, "0"), (0.1, "0.1"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
    (1e-7, "1e-7"), (1e-6, "0.000001"), (123.456, "123.456"), (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (-2.5e-10, "-2.5e-10"), (72.4000015258789, "72.4000015258789"),
])
def test_numbers_in_ecmascript_form(value: float, text: str) -> None:
    assert format_number(value) == text


def test_big_integers_are_exact() -> None:
    assert canonical_json(2**64 - 1) == b"18446744073709551615"


@pytest.mark.parametrize("bad", [math.nan, math.inf, b"bytes", {1: "x"}, {1, 2}])
def test_non_json_values_refused(bad: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_json(bad)


def _request(**changes: object) -> CommandRequest:
    fields: dict[str, object] = dict(
        command_id=uuid.UUID("12345678-1234-5678-1234-567812345678"), group_id="acme:dublin",
        edge_node_id="packaging:line1", device_id="filler", metric="Filler/SpeedSetpoint", value=120.5,
        requested_by="alice", reason="new SOP", created_at_ms=1_760_000_000_000, valid_until_ms=1_760_000_060_000)
    fields.update(changes)
    return CommandRequest(**fields)  # type: ignore[arg-type]


def test_command_hash_is_stable_across_versions() -> None:
    """A regression anchor: this hash is in audit trails; changing it breaks every old signature."""
    request = _request()
    assert request.canonical_bytes() == (
        b'{"command_id":"12345678-1234-5678-1234-567812345678","created_at_ms":1760000000000,'
        b'"device_id":"filler","edge_node_id":"packaging:line1","group_id":"acme:dublin",'
        b'"metric":"Filler/SpeedSetpoint","reason":"new SOP","requested_by":"alice",'
        b'"schema":"uns-hub.command.v1","valid_until_ms":1760000060000,"value":120.5}')
    assert request.command_hash() == hashlib.sha256(request.canonical_bytes()).hexdigest() == \
        "289893c1178333286404f96e11982d5f344025f5947da4515d30a039df0b04ed"


def test_hash_ignores_signatures_and_int_float_spelling() -> None:
    assert _request(value=120).command_hash() == _request(value=120.0).command_hash()


@pytest.mark.parametrize("field", ["value", "metric", "device_id", "reason", "valid_until_ms", "requested_by"])
def test_every_action_field_changes_the_hash(field: str) -> None:
    changed = {"value": 121.0, "metric": "Filler/Other", "device_id": "capper", "reason": "other",
               "valid_until_ms": 1_760_000_060_001, "requested_by": "bob"}[field]
    assert _request(**{field: changed}).command_hash() != _request().command_hash()


def test_value_is_not_coerced() -> None:
    assert _request(value="5").value == "5"
    with pytest.raises(ValueError, match="not a JSON scalar"):
        _request(value=[1, 2])
