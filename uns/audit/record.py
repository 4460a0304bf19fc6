"""One audit record: a lifecycle step of one command, with the fields 21 CFR Part 11 / Annex 11
reviewers look for (who, what, when, where, old value, new value, why).

The caller fills an :class:`AuditEntry`; the log adds what the caller must not control — the
gap-free ``seq``, its own clock's ``ts_ms`` (11.10(e): "independently record"), a fresh
``event_id`` and the chain hashes — and stores the resulting :class:`AuditRecord`.

``entry_hash = SHA-256(prev_hash_hex_ascii ‖ canonical_json(record without entry_hash))`` with the
RFC 8785 form of :mod:`uns.audit.canonical`; ``prev_hash`` of the first record is 64 zeros.
Every field is present in the hashed JSON (``null`` when unset) so the schema reads the same in
every record.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .canonical import canonical_json, sha256_hex

GENESIS_HASH = "0" * 64
RECORD_SCHEMA = "uns-hub.audit.v1"


class AuditEvent(StrEnum):
    REQUESTED = "requested"
    SIGNED = "signed"
    REFUSED = "refused"
    DISPATCHED = "dispatched"
    #: the edge holds it while the OPC UA session is down
    QUEUED = "queued"
    WRITTEN = "written"
    READBACK_OK = "readback_ok"
    READBACK_MISMATCH = "readback_mismatch"
    READBACK_TIMEOUT = "readback_timeout"
    FAILED = "failed"
    EXPIRED = "expired"
    # -- batch decisions (not commands; built by :mod:`uns.audit.decisions`) --
    #: a context assertion that neither starts, ends nor re-phases a batch (e.g. a corrected field)
    CONTEXT_ASSERTED = "context_asserted"
    BATCH_STARTED = "batch_started"
    BATCH_PHASE = "batch_phase"
    BATCH_ENDED = "batch_ended"
    BATCH_HELD = "batch_held"
    BATCH_RELEASED = "batch_released"
    #: a dead-lettered confirmation given a fresh set of attempts
    OUTBOX_REQUEUED = "outbox_requeued"
    #: a downtime reason code entered or mapped for a stop
    REASON_CODE_SET = "reason_code_set"
    #: rejects classified by QA (scrap / rework / accepted)
    DISPOSITION_RECORDED = "disposition_recorded"
    #: a disposition refused (no QA role, too many pieces, bad signature)
    DISPOSITION_REFUSED = "disposition_refused"
    #: a configuration file the service loaded at start (path + SHA-256)
    CONFIG_LOADED = "config_loaded"
    #: alarm rules (mes_adapter.alarms): a production exception opened / closed, an alarm shelved
    #: (batch_held / batch_released above)
    EXCEPTION_OPENED = "exception_opened"
    EXCEPTION_CLOSED = "exception_closed"
    ALARM_SHELVED = "alarm_shelved"
    #: orders (mes_adapter.orders): an order from the ERP accepted or refused at intake, the start
    #: of an order withdrawn before its command ran
    ORDER_RECEIVED = "order_received"
    ORDER_REFUSED = "order_refused"
    ORDER_START_CANCELLED = "order_start_cancelled"
    #: genealogy (mes_adapter.genealogy): a lot consumed or produced by a batch, a split or merge
    LOT_CONSUMED = "lot_consumed"
    LOT_PRODUCED = "lot_produced"
    LOT_LINKED = "lot_linked"
    #: crew (mes_adapter.crew): a person's presence on a line asserted, or an open one closed
    CREW_ASSERTED = "crew_asserted"


class AuditTarget(BaseModel):
    """Where the command acts: ISA-95 path, Sparkplug ids and metric, OPC UA endpoint and node."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    isa95_path: str | None = None
    group_id: str | None = None
    edge_node_id: str | None = None
    device_id: str | None = None
    metric: str | None = None
    opcua_endpoint: str | None = None
    namespace_uri: str | None = None
    node_id: str | None = None


class AuditEntry(BaseModel):
    """What a component reports about one step; values must be JSON (checked on append)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: AuditEvent
    command_id: str | None = None
    #: who acted: the signer, the requester, or the service (``service:mes-adapter``)
    actor_user_id: str | None = None
    actor_printed_name: str | None = None
    signature_meaning: str | None = None
    #: how the actor was authenticated: ``ed25519-signature``, ``service``, ...
    auth_method: str | None = None
    second_signer_user_id: str | None = None
    second_signer_printed_name: str | None = None
    second_signer_meaning: str | None = None
    #: the requester's free-text reason (Annex 11 §9)
    reason: str | None = None
    #: machine-readable code of a refusal or failure (uns.commands.model.ReasonCode)
    reason_code: str | None = None
    message: str | None = None
    #: the terminal/client/device the instruction came from (11.10(h))
    client_id: str | None = None
    #: the component that wrote the record (``mes-adapter``, ``edge:<group>/<edge>``)
    source: str | None = None
    target: AuditTarget | None = None
    old_value: Any = None
    old_status_code: int | None = None
    old_source_ts_ms: int | None = None
    requested_value: Any = None
    write_status_code: int | None = None
    readback_value: Any = None
    readback_status_code: int | None = None
    readback_source_ts_ms: int | None = None
    allowlist_rule_id: str | None = None
    allowlist_version: str | None = None
    batch_id: str | None = None
    work_order_id: str | None = None
    outcome: str | None = None
    #: SHA-256 of the exact command (its command hash)
    payload_sha256: str | None = None
    #: signatures as given (user, name, meaning, time, key id, value) so a reviewer can re-verify
    signatures: list[dict[str, Any]] | None = None
    details: dict[str, Any] | None = None


class AuditRecord(AuditEntry):
    schema_: str = Field(default=RECORD_SCHEMA, alias="schema")
    seq: int = Field(ge=1)
    event_id: str
    ts_ms: int
    prev_hash: str
    entry_hash: str

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def hashed_body(self) -> dict[str, Any]:
        """Everything but ``entry_hash``: what the hash covers, as stored."""
        body = self.model_dump(by_alias=True, exclude={"entry_hash"})  # python mode: NaN must fail, not become null
        return body


def record_hash(prev_hash: str, body_bytes: bytes) -> str:
    """``SHA-256(prev_hash ‖ canonical body)`` as lowercase hex."""
    return sha256_hex(prev_hash.encode("ascii") + body_bytes)


def seal(entry: AuditEntry, *, seq: int, event_id: str, ts_ms: int, prev_hash: str) -> tuple[AuditRecord, bytes]:
    """The record and its canonical body bytes (raises CanonicalizationError for non-JSON values)."""
    draft = AuditRecord(**entry.model_dump(), seq=seq, event_id=event_id, ts_ms=ts_ms, prev_hash=prev_hash,
                        entry_hash=GENESIS_HASH)
    body = canonical_json(draft.hashed_body())
    return draft.model_copy(update={"entry_hash": record_hash(prev_hash, body)}), body


__all__ = ["GENESIS_HASH", "RECORD_SCHEMA", "AuditEntry", "AuditEvent", "AuditRecord", "AuditTarget",
           "record_hash", "seal"]
