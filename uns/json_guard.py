"""JSON from peers, refused early when nested too deep, with no recursion.

``json.loads`` recurses once per ``[``/``{``: a payload 5,000 levels deep raises
:class:`RecursionError` (not a ``JSONDecodeError``), which escapes the handlers that catch bad
JSON and is logged as a crash; pydantic would recurse again while validating. Every boundary that
parses a peer's JSON (STATE, ``_context`` assertions, ``_cmd`` results and command arguments, HTTP
bodies) first checks the depth with a flat scan and refuses with :class:`JsonTooDeepError`, a
``ValueError`` whose message says how deep and what the limit is.
"""

from __future__ import annotations

import json
import re
from typing import Any

from uns.errors import UnsError

#: deeper than any payload of ours (STATE is 1, a context assertion 3, a command a few)
MAX_JSON_DEPTH = 32

#: strings (skipped whole, so brackets inside them do not count) and the brackets themselves
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


class JsonTooDeepError(UnsError, ValueError):
    """A JSON document nests arrays/objects deeper than allowed."""

    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels (at least {depth}); refused")
        self.depth = depth
        self.limit = limit


def check_depth(data: bytes | bytearray | str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JsonTooDeepError` if ``data`` nests deeper than ``limit`` (no recursion)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return  # the common case: cannot be too deep, no scan needed
    depth = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPEN:
            depth += 1
            if depth > limit:
                raise JsonTooDeepError(depth, limit)
        else:
            depth -= 1


def loads(data: bytes | bytearray | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` after :func:`check_depth`; raises ``JsonTooDeepError`` or ``JSONDecodeError``
    (both ``ValueError``) and ``UnicodeDecodeError`` for bytes that are not UTF-8."""
    check_depth(data, limit)
    return json.loads(data)
