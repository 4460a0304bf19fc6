"""The Ed25519 key that signs audit checkpoints, kept in the data directory.

Why a signature on checkpoints at all: a hash chain alone cannot tell a log whose tail was cut
off, or that was rewritten from scratch by someone holding the file, from an honest one
(docs/security.md, "Audit chain"). A checkpoint ``(seq, head hash)`` signed with a key the attacker does
not have pins everything up to ``seq``.

Files next to the audit database by default:

* ``audit-checkpoint.key``: PKCS#8 PEM private key, created on first use with mode 0600; a key
  readable by group or others is refused (like ssh does), since whoever reads it can forge
  checkpoints;
* ``audit-checkpoint.pub``: ``ed25519:<base64>``; copy it off the box (QA's share, the
  validation binder) and verify with ``uns audit verify --public-key`` so a verifier does not
  trust a key that sits beside the data it checks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from uns.errors import UnsError

from .ed25519 import key_id, parse_public_key, public_key_text

KEY_FILE = "audit-checkpoint.key"
PUBLIC_FILE = "audit-checkpoint.pub"


class AuditKeyError(UnsError, ValueError):
    """The checkpoint key is unreadable, of the wrong kind, or readable by others."""


def default_key_path(db_path: Path) -> Path:
    return db_path.parent / KEY_FILE


def public_path_for(key_path: Path) -> Path:
    return key_path.with_name(PUBLIC_FILE) if key_path.name == KEY_FILE else key_path.with_suffix(".pub")


def load_or_create_key(key_path: Path) -> Ed25519PrivateKey:
    """Load the checkpoint key, creating it (0600) and its ``.pub`` on first use."""
    if not key_path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        key_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race; use its key
            return load_key(key_path)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        public_path_for(key_path).write_text(public_key_text(key.public_key()) + "\n", encoding="ascii")
        return key
    return load_key(key_path)


def load_key(key_path: Path) -> Ed25519PrivateKey:
    try:
        mode = key_path.stat().st_mode
        data = key_path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"cannot read audit checkpoint key {key_path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditKeyError(f"audit checkpoint key {key_path} has mode {stat.S_IMODE(mode):04o}; "
                            "it must be readable by its owner only (chmod 600)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError) as exc:
        raise AuditKeyError(f"audit checkpoint key {key_path} is not an unencrypted PEM key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"audit checkpoint key {key_path} is {type(key).__name__}, not Ed25519")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read ``ed25519:<base64>`` (a ``.pub`` file) or a PEM public key."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditKeyError(f"cannot read public key {path}: {exc}") from None
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"{type(key).__name__} is not Ed25519")
            return key
        return parse_public_key(text)
    except ValueError as exc:
        raise AuditKeyError(f"public key {path}: {exc}") from None


__all__ = ["KEY_FILE", "PUBLIC_FILE", "AuditKeyError", "default_key_path", "key_id", "load_key",
           "load_or_create_key", "load_public_key", "public_path_for"]
