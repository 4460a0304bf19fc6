"""The one canonical JSON form that every hash and signature in uns-hub is computed over.

Why a canonical form: a hash over ``json.dumps`` output changes with key order, spacing, escaping
and float formatting, so two honest programs would disagree about the hash of the same command or
audit record. An independent verifier (a QA reviewer's script, an auditor's tool) must be able to
recompute every hash byte-for-byte from the stored JSON.

The form is RFC 8785 (JSON Canonicalization Scheme, "JCS"):

* objects: members sorted by key, compared as UTF-16 code units (RFC 8785 §3.2.3), no whitespace
  anywhere, ``,`` and ``:`` as separators;
* strings: UTF-8, only ``"``, ``\\`` and U+0000..U+001F escaped (``\\b \\t \\n \\f \\r`` short
  forms, others ``\\u00xx`` lowercase hex); everything else literal (no ``\\uXXXX`` for non-ASCII);
* numbers: floats in the ECMAScript ``Number.prototype.toString`` form (``1e+21``, ``1e-7``,
  ``0.000001``, ``100`` for ``100.0``, ``0`` for ``-0.0``); NaN and infinities are refused;
* ``true``, ``false``, ``null``.

One documented deviation: Python ints are written as their exact decimal digits. RFC 8785 treats
every number as an IEEE double, so for integers beyond ±2**53 a strict JCS library would round
them; our UInt64/Int64 setpoints must not be silently rounded, and no such value occurs in a
double-only verifier's world without a loss it would report anyway. Within ±2**53 the output is
identical to JCS.
"""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal
from typing import Any

from uns.errors import UnsError

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


class CanonicalizationError(UnsError, ValueError):
    """A value has no canonical JSON form (NaN, a set, bytes, a non-string key...)."""


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON-compatible Python value."""
    parts: list[str] = []
    _write(value, parts, "$")
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate in some string
        raise CanonicalizationError(f"string is not valid Unicode: {exc}") from None


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256, the hash format used across commands and the audit chain."""
    return hashlib.sha256(data).hexdigest()


def canonical_sha256(value: Any) -> str:
    """``sha256_hex(canonical_json(value))``."""
    return sha256_hex(canonical_json(value))


def format_number(value: float) -> str:
    """An IEEE double as ECMAScript ``Number.prototype.toString`` writes it (RFC 8785 §3.2.2.3)."""
    if not math.isfinite(value):
        raise CanonicalizationError(f"{value!r} has no JSON form")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digit string that round-trips, exactly what ECMAScript asks for
    _sign, digits_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digits_tuple)).rstrip("0")
    exponent = int(exponent) + (len(digits_tuple) - len(digits))
    k = len(digits)
    n = exponent + k  # value = 0.digits * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def _write_string(text: str, parts: list[str]) -> None:
    out = ['"']
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    parts.append("".join(out))


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, parts: list[str], where: str) -> None:
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(str(int(value)))
    elif isinstance(value, float):
        try:
            parts.append(format_number(value))
        except CanonicalizationError as exc:
            raise CanonicalizationError(f"{where}: {exc}") from None
    elif isinstance(value, str):
        _write_string(value, parts)
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalizationError(f"{where}: object key {key!r} is not a string")
        parts.append("{")
        for index, key in enumerate(sorted(value, key=_utf16_key)):
            if index:
                parts.append(",")
            _write_string(key, parts)
            parts.append(":")
            _write(value[key], parts, f"{where}.{key}")
        parts.append("}")
    elif isinstance(value, (list, tuple)):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _write(item, parts, f"{where}[{index}]")
        parts.append("]")
    else:
        raise CanonicalizationError(f"{where}: {type(value).__name__} {value!r} is not a JSON value")


__all__ = ["CanonicalizationError", "canonical_json", "canonical_sha256", "format_number", "sha256_hex"]
