"""The command contract: what is asked (``CommandRequest``), who signed it (``Signature``) and
what came of it (``CommandResult``).

A command's identity for signatures and the audit trail is its **command hash**: lowercase hex
SHA-256 over the RFC 8785 canonical JSON (sorted keys, no whitespace, UTF-8; see
:mod:`uns.audit.canonical`) of exactly the fields that define the action::

    {"schema": "uns-hub.command.v1", "command_id": "<uuid>", "group_id": ..., "edge_node_id": ...,
     "device_id": <str or null>, "metric": ..., "value": <requested value>, "requested_by": ...,
     "reason": ..., "created_at_ms": <int>, "valid_until_ms": <int>}

Signatures are *not* hashed (they sign the hash). Everything an edge node needs to recompute the
hash travels with the DCMD/NCMD (:mod:`uns.commands.wire`), so the edge checks the signatures of
the command it actually received, addressed to the device it actually is.

``value`` is what reaches the PLC: for a Float (32-bit) metric it must already be rounded to
float32 (:func:`uns.commands.values.normalize_value`) or the edge, which decodes the float32 from
the wire, would compute a different hash. For an OPC UA method rule ``value`` is an object of
argument name → value.
"""

from __future__ import annotations

import json
import math
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from uns import json_guard
from uns.audit.canonical import canonical_json, canonical_sha256

COMMAND_SCHEMA = "uns-hub.command.v1"
HASH_PATTERN = r"^[0-9a-f]{64}$"


class ReasonCode(StrEnum):
    """Machine-readable why of a refusal or a failed execution; stable, used by API clients."""

    NOT_ALLOWLISTED = "not_allowlisted"
    #: a write to a member of a template instance names a member the instance does not have
    UNKNOWN_MEMBER = "unknown_member"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    OFF_STEP = "off_step"
    NOT_IN_ENUM = "not_in_enum"
    WRONG_MACHINE_STATE = "wrong_machine_state"
    RATE_LIMITED = "rate_limited"
    SIGNATURE_MISSING = "signature_missing"
    SECOND_SIGNATURE_REQUIRED = "second_signature_required"
    SIGNATURE_INVALID = "signature_invalid"
    SIGNATURE_EXPIRED = "signature_expired"
    SAME_USER_SECOND_SIGNATURE = "same_user_second_signature"
    EXPIRED = "expired"
    #: the DCMD/NCMD envelope is missing, unreadable or does not match its own hash
    MALFORMED_COMMAND = "malformed_command"
    #: the edge took in a command with this id before: a command runs at most once
    REPLAYED = "replayed"
    # execution (edge executor)
    WRITE_FAILED = "write_failed"
    READBACK_MISMATCH = "readback_mismatch"
    READBACK_TIMEOUT = "readback_timeout"
    # an OPC UA condition's Acknowledge / Confirm (a ``condition`` rule), refused by the edge or the server
    #: the edge has no event of the condition (never raised since it connected), or the server knows no such condition
    UNKNOWN_CONDITION = "unknown_condition"
    #: the server does not know the EventId (BadEventIdUnknown): that occurrence of the condition is over
    UNKNOWN_EVENT_ID = "unknown_event_id"
    #: the condition is acknowledged already (BadConditionBranchAlreadyAcked), also when inactive and acked
    ALREADY_ACKED = "already_acked"
    #: the condition is confirmed already, or was never acknowledged (BadConditionBranchAlreadyConfirmed)
    ALREADY_CONFIRMED = "already_confirmed"


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    REFUSED = "refused"
    MISMATCH = "mismatch"
    TIMEOUT = "timeout"
    FAILED = "failed"
    EXPIRED = "expired"


class SignatureMeaning(StrEnum):
    """The meaning a signer attaches (21 CFR 11.50(a)(3)); it is part of what is signed."""

    AUTHORED = "authored"
    APPROVED = "approved"
    REVIEWED = "reviewed"
    VERIFIED = "verified"


class Signature(BaseModel):
    """One user's Ed25519 signature over (command hash, user, meaning, time); see :mod:`.signing`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str = Field(min_length=1)
    full_name: str = Field(min_length=1)
    meaning: SignatureMeaning
    signed_at_ms: int = Field(ge=0)
    command_hash: str = Field(pattern=HASH_PATTERN)
    algorithm: str = "Ed25519"
    #: first 16 hex digits of SHA-256 of the raw public key, to pick the key in the user registry
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    #: base64 of the 64-byte signature
    value: str = Field(min_length=1)


def check_value(value: Any, where: str = "value") -> Any:
    """Accept a JSON scalar or a flat object of scalars (method arguments), nothing else.

    Pydantic would coerce ``"5"`` to 5 for an int field; a command must arrive with the type the
    requester meant, so the value is kept as given and judged by the allowlist.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"{where}: argument names must be non-empty strings, got {key!r}")
            _check_scalar(item, f"{where}.{key}")
        return value
    _check_scalar(value, where)
    return value


def _check_scalar(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a finite number")
    if value is not None and not isinstance(value, (bool, int, float, str)):
        raise ValueError(f"{where}: {type(value).__name__} is not a JSON scalar")


class CommandRequest(BaseModel):
    """A write or method call asked of one metric of one edge node / device."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: uuid.UUID
    group_id: str = Field(min_length=1)
    edge_node_id: str = Field(min_length=1)
    #: None for a node-level metric (NCMD)
    device_id: str | None = None
    metric: str = Field(min_length=1)
    value: Any
    requested_by: str = Field(min_length=1)
    #: mandatory free text: why (EU GMP Annex 11 §9, 21 CFR 11.10(e) context)
    reason: str = Field(min_length=1)
    created_at_ms: int = Field(ge=0)
    valid_until_ms: int = Field(ge=0)
    signatures: tuple[Signature, ...] = ()

    @field_validator("value")
    @classmethod
    def _json_value(cls, value: Any) -> Any:
        return check_value(value)

    @model_validator(mode="after")
    def _window(self) -> CommandRequest:
        if self.valid_until_ms <= self.created_at_ms:
            raise ValueError(f"valid_until_ms {self.valid_until_ms} is not after created_at_ms {self.created_at_ms}")
        return self

    def action(self) -> dict[str, Any]:
        """The hashed fields: everything that defines what will happen, nothing about who approved."""
        return {
            "schema": COMMAND_SCHEMA,
            "command_id": str(self.command_id),
            "group_id": self.group_id,
            "edge_node_id": self.edge_node_id,
            "device_id": self.device_id,
            "metric": self.metric,
            "value": self.value,
            "requested_by": self.requested_by,
            "reason": self.reason,
            "created_at_ms": self.created_at_ms,
            "valid_until_ms": self.valid_until_ms,
        }

    def canonical_bytes(self) -> bytes:
        """What :meth:`command_hash` hashes; shown to a signer who wants to see the exact bytes."""
        return canonical_json(self.action())

    def command_hash(self) -> str:
        return canonical_sha256(self.action())

    def with_signature(self, signature: Signature) -> CommandRequest:
        return self.model_copy(update={"signatures": (*self.signatures, signature)})

    @property
    def target_label(self) -> str:
        """``group/edge[/device]:metric`` for messages and logs."""
        where = f"{self.group_id}/{self.edge_node_id}"
        if self.device_id is not None:
            where += f"/{self.device_id}"
        return f"{where}:{self.metric}"


class CommandResult(BaseModel):
    """What the edge did with one command; published as JSON on ``<line>/_cmd/result/<command_id>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: uuid.UUID
    outcome: Outcome
    reason: ReasonCode | None = None
    message: str = ""
    command_hash: str | None = Field(default=None, pattern=HASH_PATTERN)
    group_id: str
    edge_node_id: str
    device_id: str | None = None
    metric: str
    old_value: Any = None
    requested_value: Any = None
    readback_value: Any = None
    #: OPC UA StatusCodes (uint32) of the read before the write, the write/call, and the read-back
    old_status_code: int | None = None
    write_status_code: int | None = None
    readback_status_code: int | None = None
    old_source_ts_ms: int | None = None
    readback_source_ts_ms: int | None = None
    received_at_ms: int
    written_at_ms: int | None = None
    completed_at_ms: int

    @model_validator(mode="after")
    def _reason_for_failures(self) -> CommandResult:
        if self.outcome is not Outcome.CONFIRMED and self.reason is None:
            raise ValueError(f"outcome {self.outcome} needs a reason code")
        return self

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> CommandResult:
        """Parse a ``_cmd`` result; raises :class:`ValueError` naming the bad field."""
        try:
            obj = json_guard.loads(data)
        except json_guard.JsonTooDeepError as exc:
            raise ValueError(f"command result: {exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"command result is not JSON: {exc}") from None
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(map(str, first["loc"])) or "(root)"
            raise ValueError(f"command result field {loc}: {first['msg']}") from None


__all__ = [
    "COMMAND_SCHEMA", "CommandRequest", "CommandResult", "Outcome", "ReasonCode", "Signature",
    "SignatureMeaning", "check_value",
]
