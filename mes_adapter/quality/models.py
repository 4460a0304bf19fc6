"""What a QA disposition is, and the exact content its signature covers.

The signature is an ordinary :class:`uns.commands.model.Signature` whose ``command_hash`` is
:func:`disposition_hash` of the disposition: the same signer keys, registry and verification as
commands (:mod:`uns.commands.signing`), so a QA user signs with the key they already hold and an
auditor re-verifies with the same tool. The hash covers line, batch, the client's disposition id
and the three quantities: a signature cannot be moved to another batch or another split.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field

from uns.audit.canonical import canonical_json, sha256_hex
from uns.audit.ed25519 import key_id
from uns.commands.model import Signature, SignatureMeaning
from uns.commands.signing import signed_bytes

DISPOSITION_SCHEMA = "uns-hub.disposition.v1"


class DispositionSplit(BaseModel):
    """How many rejects were classified each way (a request, or the sum of a batch's dispositions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scrap: float = Field(0.0, ge=0)
    rework: float = Field(0.0, ge=0)
    #: rejects QA released as good product (reported separately; the counters still say reject)
    accepted: float = Field(0.0, ge=0)

    @property
    def total(self) -> float:
        return self.scrap + self.rework + self.accepted

    def plus(self, other: DispositionSplit) -> DispositionSplit:
        return DispositionSplit(scrap=self.scrap + other.scrap, rework=self.rework + other.rework,
                                accepted=self.accepted + other.accepted)


def disposition_hash(line: str, batch_id: str, disposition_id: str, split: DispositionSplit) -> str:
    """SHA-256 hex of the canonical disposition: what the QA user's signature covers."""
    return sha256_hex(canonical_json({
        "schema": DISPOSITION_SCHEMA, "line": line, "batch_id": batch_id, "disposition_id": disposition_id,
        "scrap": split.scrap, "rework": split.rework, "accepted": split.accepted}))


class DispositionRequest(BaseModel):
    """A QA user's classification of some of a batch's pending rejects."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: chosen by the client (a UUID): a retry of the same request is recognised, not counted twice
    disposition_id: str = Field(min_length=1, max_length=128)
    split: DispositionSplit
    reason: str | None = Field(None, max_length=2000)
    signature: Signature


class Disposition(BaseModel):
    """An accepted disposition as stored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    disposition_id: str
    line: str
    batch_id: str
    split: DispositionSplit
    user_id: str
    full_name: str
    reason: str | None
    signature: Signature
    recorded_ms: int

    def view(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def sign_disposition(key: Ed25519PrivateKey, *, user_id: str, full_name: str, line: str, batch_id: str,
                     disposition_id: str, split: DispositionSplit, now_ms: int,
                     meaning: SignatureMeaning = SignatureMeaning.APPROVED) -> Signature:
    """The QA user's signature over one disposition (what a client does with the user's own key)."""
    unsigned = Signature(user_id=user_id, full_name=full_name, meaning=meaning, signed_at_ms=now_ms,
                         command_hash=disposition_hash(line, batch_id, disposition_id, split),
                         key_id=key_id(key.public_key()), value="-")
    value = base64.b64encode(key.sign(signed_bytes(unsigned))).decode("ascii")
    return unsigned.model_copy(update={"value": value})
