"""Ed25519 public keys as text, and their short ids: one format for user keys and the audit key.

``ed25519:<base64 of the raw 32-byte key>`` fits a YAML registry line and a ``.pub`` file; the
key id (first 16 hex digits of SHA-256 over the raw key) names a key in signatures and
checkpoints without repeating it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PUBLIC_KEY_PREFIX = "ed25519:"


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(public_key_bytes(key)).hexdigest()[:16]


def public_key_text(key: Ed25519PublicKey) -> str:
    """``ed25519:<base64 raw key>``."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(public_key_bytes(key)).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Inverse of :func:`public_key_text`; ValueError saying what is wrong."""
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise ValueError(f"public key must start with {PUBLIC_KEY_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(PUBLIC_KEY_PREFIX):], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"public key is not base64: {exc}") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


__all__ = ["PUBLIC_KEY_PREFIX", "key_id", "parse_public_key", "public_key_bytes", "public_key_text"]
