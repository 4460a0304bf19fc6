"""uns.json_guard: depth is counted without recursion, brackets inside strings do not count."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uns import json_guard
from uns.json_guard import JsonTooDeepError, check_depth


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_the_limit_itself_passes_and_one_more_is_refused() -> None:
    assert json_guard.loads(nested(32)) == json.loads(nested(32))
    with pytest.raises(JsonTooDeepError, match="deeper than 32 levels"):
        json_guard.loads(nested(33))


def test_a_5000_deep_document_is_refused_without_recursion() -> None:
    for text in (nested(5000), '{"a":' * 5000 + "1" + "}" * 5000):
        with pytest.raises(JsonTooDeepError):
            json_guard.loads(text.encode())


def test_brackets_in_strings_and_escaped_quotes_do_not_count() -> None:
    text = json.dumps({"note": "[" * 100 + '\\"{{{' + "{" * 100, "list": [1, [2, [3]]]})
    assert json_guard.loads(text) == json.loads(text)


def test_bad_json_is_still_a_json_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        json_guard.loads(b'{"a": ')


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                    max_leaves=30))
def test_depth_agrees_with_the_structure(value: object) -> None:
    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    text = json.dumps(value)
    real = depth(value)
    check_depth(text, real)  # exactly the real depth passes
    if real > 0:
        with pytest.raises(JsonTooDeepError):
            check_depth(text, real - 1)
