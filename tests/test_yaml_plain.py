"""uns.yaml_marks.load_plain: the data of a large document built from libyaml's events, equal to
PyYAML's safe loader on every plain document, and refusing (so the caller falls back) the rest."""

from __future__ import annotations

import pytest
import yaml

from uns.yaml_marks import CHILD_PARSE_BYTES, _NotPlainError, _parse_in_child, load_plain

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PLAIN = """
line: {enterprise: acme, site: "plant 1", area: 'pack', line: l1}
numbers: [1, -2, 0x1F, 0o17, 1_000, 3.5, -1e3, .inf, -.Inf, .nan, "7", '8.0']
flags: [true, False, yes, no, on, off, ~, null, Null, ""]
text: |
  two
  lines
folded: >
  one
  line
nested:
  - {a: [1, [2, [3]]], b: {c: {d: e}}}
  - - x
    - y
  -
empty_map: {}
empty_list: []
dup: 1
dup: 2
"quoted key": 1
123: int key
"""


@pytest.mark.parametrize("text", [PLAIN, "", "just a scalar", "- 1\n- 2\n", "# only a comment\n"])
def test_plain_documents_equal_the_safe_loader(text: str) -> None:
    assert load_plain(_LOADER(text)) == yaml.load(text, Loader=_LOADER)  # noqa: S506 - the safe loader


def test_a_repeated_value_is_one_object() -> None:
    data = load_plain(_LOADER("- {datatype: Double, description: the same words}\n" * 3))
    assert data[0]["description"] is data[2]["description"] and data[1]["datatype"] is data[2]["datatype"]


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n", "a: !!str 1\n", "base: &b {x: 1}\nc:\n  <<: *b\n", "? [1, 2]\n: v\n",
    "when: 2026-12-03\n", "blob: !!binary aGk=\n", "a: 1\n---\nb: 2\n", "c: {<<: {x: 1}}\n",
])
def test_anything_else_is_left_to_pyyaml(text: str) -> None:
    with pytest.raises(_NotPlainError):
        load_plain(_LOADER(text))


def test_the_child_falls_back_to_the_safe_loader_with_the_same_result() -> None:
    line = "  - {<<: *b, when: 2026-12-03, n: 1, pad: " + "x" * 400 + "}\n"
    text = "base: &b {x: 1}\nitems:\n" + line * (CHILD_PARSE_BYTES // len(line) + 1)
    assert _parse_in_child(text, "big.yaml") == yaml.load(text, Loader=_LOADER)  # noqa: S506
