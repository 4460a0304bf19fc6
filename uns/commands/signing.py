"""Electronic signatures on commands: Ed25519 keys per user, and the two-person rule.

Why Ed25519 per user rather than HMAC with per-user secrets in the adapter: with HMAC the adapter
holds every user's secret, so whoever administers the adapter can sign as anyone — exactly the
"misuse without the collaboration of two people" 21 CFR 11.200(a)(3) forbids. With Ed25519 the
private key stays with the user (CLI key file, encrypted with the user's passphrase: two
components, 11.200(a)(1)); the adapter and every edge node hold only public keys (the **user
registry**), can verify but never forge, and an auditor can re-verify any signature from the
audit export with nothing secret.

What a signature covers (11.50 manifestation, 11.70 linking): the RFC 8785 canonical JSON of::

    {"schema": "uns-hub.signature.v1", "command_hash": <hex>, "user_id": ..., "full_name": ...,
     "meaning": "authored" | "approved" | "reviewed" | "verified", "signed_at_ms": <int>,
     "key_id": <16 hex>}

so the meaning, the printed name and the time cannot be swapped, and a changed command (new
hash) invalidates the signature.

Two-person rule (:func:`evaluate_signatures` with ``critical=True``): besides the requester's own
signature, a different registered user must sign with meaning approved / verified / reviewed,
within ``window_ms`` of the first signature.

Key files: ``<user>.key`` is PKCS#8 PEM (encrypted with the passphrase if one is given, file mode
0600); ``<user>.user.yaml`` is the registry entry to hand to the administrator.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from uns.audit.canonical import canonical_json
from uns.audit.ed25519 import key_id, parse_public_key, public_key_text
from uns.errors import UnsError

from .model import CommandRequest, ReasonCode, Signature, SignatureMeaning
from .yamlsource import ConfigError, YamlSource

SIGNATURE_SCHEMA = "uns-hub.signature.v1"
#: a signature dated further than this into the future (clock skew allowance) is refused
MAX_CLOCK_SKEW_MS = 60_000
APPROVING_MEANINGS = frozenset({SignatureMeaning.APPROVED, SignatureMeaning.VERIFIED, SignatureMeaning.REVIEWED})


class KeyFileError(UnsError, ValueError):
    """A key file is missing, unreadable, of the wrong kind, or the passphrase is wrong."""


class SignatureRefusedError(UnsError):
    """A signature or set of signatures does not satisfy the rules; carries the reason code."""

    def __init__(self, reason: ReasonCode, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# ------------------------------------------------------------------------------------- keys


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read a user's PKCS#8 PEM key; :class:`KeyFileError` says which of the failure cases it is."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError as exc:  # encrypted without passphrase, or a passphrase for a plain key
        raise KeyFileError(f"key file {path}: {exc}") from None
    except ValueError as exc:
        raise KeyFileError(f"key file {path}: wrong passphrase or not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def write_private_key(path: Path, key: Ed25519PrivateKey, passphrase: bytes | None = None) -> None:
    """Create ``path`` with mode 0600 (never overwrites: a lost key is a Part 11 loss event)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_key_pem(key, passphrase))


# ----------------------------------------------------------------------------- user registry


class RegisteredUser(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    full_name: str = Field(min_length=1)
    public_key: str
    #: a user who left or lost a key is deactivated, never deleted (past signatures stay verifiable)
    active: bool = True


class UserRegistry(BaseModel):
    """Public keys of everyone who may sign commands; held by the adapter and every edge node."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: dict[str, RegisteredUser] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> UserRegistry:
        """Load YAML ``users: {alice: {full_name, public_key, active}}``.

        Raises :class:`~uns.commands.yamlsource.ConfigError` (a ValueError) naming
        ``file:line: field`` for every problem."""
        source = YamlSource.read(path)
        try:
            registry = cls.model_validate(source.data or {})
        except ValidationError as exc:
            raise source.error(exc) from None
        problems = []
        for user_id, user in registry.users.items():
            try:
                parse_public_key(user.public_key)
            except ValueError as exc:
                loc = ("users", user_id, "public_key")
                problems.append(f"{source.where(loc)}: users.{user_id}.public_key: {exc}")
        if problems:
            raise ConfigError("\n".join(problems), problems)
        return registry

    def public_key(self, user_id: str) -> Ed25519PublicKey:
        user = self.users.get(user_id)
        if user is None:
            raise SignatureRefusedError(ReasonCode.SIGNATURE_INVALID, f"user {user_id!r} is not in the user registry")
        if not user.active:
            raise SignatureRefusedError(ReasonCode.SIGNATURE_INVALID, f"user {user_id!r} is deactivated")
        return parse_public_key(user.public_key)


def registry_entry(user_id: str, full_name: str, key: Ed25519PublicKey) -> dict[str, Any]:
    """The ``users:`` entry of one user, as keygen writes it for the administrator."""
    return {"users": {user_id: {"full_name": full_name, "public_key": public_key_text(key), "active": True}}}


# ---------------------------------------------------------------------------- sign / verify


def signed_bytes(signature: Signature) -> bytes:
    """The exact bytes an Ed25519 signature covers (see module docstring)."""
    return canonical_json({
        "schema": SIGNATURE_SCHEMA,
        "command_hash": signature.command_hash,
        "user_id": signature.user_id,
        "full_name": signature.full_name,
        "meaning": signature.meaning.value,
        "signed_at_ms": signature.signed_at_ms,
        "key_id": signature.key_id,
    })


def sign_command(request: CommandRequest, key: Ed25519PrivateKey, *, user_id: str, full_name: str,
                 meaning: SignatureMeaning, now_ms: int) -> Signature:
    """Sign the request's current hash; the caller adds it with ``request.with_signature``."""
    unsigned = Signature(user_id=user_id, full_name=full_name, meaning=meaning, signed_at_ms=now_ms,
                         command_hash=request.command_hash(), key_id=key_id(key.public_key()), value="-")
    value = base64.b64encode(key.sign(signed_bytes(unsigned))).decode("ascii")
    return unsigned.model_copy(update={"value": value})


def verify_signature(signature: Signature, command_hash: str, registry: UserRegistry) -> None:
    """Raise :class:`SignatureRefusedError` unless the signature is a registered user's, over this hash."""
    who = f"signature of {signature.user_id!r} ({signature.meaning.value})"
    if signature.algorithm != "Ed25519":
        raise SignatureRefusedError(ReasonCode.SIGNATURE_INVALID, f"{who} uses {signature.algorithm!r}, not Ed25519")
    if signature.command_hash != command_hash:
        raise SignatureRefusedError(
            ReasonCode.SIGNATURE_INVALID,
            f"{who} is over command hash {signature.command_hash[:16]}…, but the command hashes to "
            f"{command_hash[:16]}…: the command was changed after it was signed",
        )
    public_key = registry.public_key(signature.user_id)
    if key_id(public_key) != signature.key_id:
        raise SignatureRefusedError(ReasonCode.SIGNATURE_INVALID,
                                    f"{who} names key {signature.key_id}, not the registered key of that user")
    registered_name = registry.users[signature.user_id].full_name
    if registered_name != signature.full_name:
        raise SignatureRefusedError(ReasonCode.SIGNATURE_INVALID,
                                    f"{who} shows the name {signature.full_name!r}, registered as {registered_name!r}")
    try:
        raw = base64.b64decode(signature.value, validate=True)
        public_key.verify(raw, signed_bytes(signature))
    except (binascii.Error, InvalidSignature):
        raise SignatureRefusedError(ReasonCode.SIGNATURE_INVALID,
                                    f"{who} does not verify with the registered key") from None


def evaluate_signatures(request: CommandRequest, registry: UserRegistry, *, critical: bool, window_ms: int,
                        now_ms: int) -> None:
    """Apply every signature rule; raise :class:`SignatureRefusedError` with the first that fails.

    Order (so the same request always gets the same reason): each signature valid → the
    requester has signed → for critical commands, a second different user approved within
    ``window_ms`` of the first signature.
    """
    if not request.signatures:
        raise SignatureRefusedError(ReasonCode.SIGNATURE_MISSING,
                                    f"command is not signed; {request.requested_by!r} must sign it")
    command_hash = request.command_hash()
    for signature in request.signatures:
        verify_signature(signature, command_hash, registry)
        if signature.signed_at_ms > now_ms + MAX_CLOCK_SKEW_MS:
            raise SignatureRefusedError(ReasonCode.SIGNATURE_INVALID,
                                        f"signature of {signature.user_id!r} is dated {signature.signed_at_ms}, "
                                        f"in the future of {now_ms}")
        if signature.signed_at_ms > request.valid_until_ms:
            raise SignatureRefusedError(ReasonCode.SIGNATURE_EXPIRED,
                                        f"signature of {signature.user_id!r} was given after the command expired")
    ordered = sorted(request.signatures, key=lambda s: s.signed_at_ms)
    own = [s for s in ordered if s.user_id == request.requested_by]
    if not own:
        raise SignatureRefusedError(ReasonCode.SIGNATURE_MISSING,
                                    f"the requester {request.requested_by!r} has not signed the command")
    if not critical:
        return
    others = [s for s in ordered if s.user_id != request.requested_by]
    if not others:
        if len(own) > 1:
            raise SignatureRefusedError(ReasonCode.SAME_USER_SECOND_SIGNATURE,
                                        f"critical command: both signatures are by {request.requested_by!r}; "
                                        "a second, different user must approve")
        raise SignatureRefusedError(ReasonCode.SECOND_SIGNATURE_REQUIRED,
                                    "critical command: a second, different user must approve it")
    approvals = [s for s in others if s.meaning in APPROVING_MEANINGS]
    if not approvals:
        raise SignatureRefusedError(ReasonCode.SECOND_SIGNATURE_REQUIRED,
                                    f"critical command: {others[0].user_id!r} signed as {others[0].meaning.value!r}; "
                                    "the second signature must approve, verify or review")
    first, second = ordered[0], approvals[0]
    gap = abs(second.signed_at_ms - first.signed_at_ms)
    if gap > window_ms:
        raise SignatureRefusedError(ReasonCode.SIGNATURE_EXPIRED,
                                    f"second signature by {second.user_id!r} came {gap / 1000:.0f} s after the first; "
                                    f"the window is {window_ms / 1000:.0f} s")


__all__ = [
    "APPROVING_MEANINGS", "KeyFileError", "RegisteredUser", "SIGNATURE_SCHEMA", "SignatureRefusedError", "UserRegistry",
    "evaluate_signatures", "generate_private_key", "key_id", "load_private_key", "parse_public_key",
    "private_key_pem", "public_key_text", "registry_entry", "sign_command", "signed_bytes", "verify_signature",
    "write_private_key",
]
