"""Request and response models of the REST API: the contract shown at ``/docs``."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from uns.commands.model import CommandRequest, Signature


class TagView(BaseModel):
    topic: str | None = Field(description="retained UNS mirror topic of the tag")
    line: str | None
    cell: str | None
    group_id: str
    edge_node_id: str
    device_id: str | None
    name: str
    value: Any
    datatype: str
    quality: str = Field(description="GOOD | UNCERTAIN | BAD | STALE")
    unit: str | None
    timestamp_ms: int
    source_timestamp_ms: int
    received_ms: int
    status_code: int | None = None
    status: str | None = Field(None, description="OPC UA StatusCode name (BadSensorFailure), or its hex code")
    quality_reason: str | None = Field(None, description="why not GOOD, e.g. comm_lost")
    eng_low: float | None = None
    eng_high: float | None = None
    description: str | None = None


class DeviceInfo(BaseModel):
    device_id: str
    cell: str | None
    state: str = Field(description="online, or stale (offline: its tags are STALE)")
    online: bool
    born_ms: int | None
    died_ms: int | None
    last_seen_ms: int | None
    dbirths: int
    tags: int
    stale_tags: int


class NodeInfo(BaseModel):
    group_id: str
    edge_node_id: str
    line: str | None
    state: str = Field(description="online, or stale (offline: its tags are STALE)")
    online: bool
    bd_seq: int | None
    born_ms: int | None
    died_ms: int | None
    last_seen_ms: int | None
    from_certificate: bool
    nbirths: int
    rebirths_requested: dict[str, int]
    rebirths_total: int
    seq_gaps: int
    violations: dict[str, int]
    tags: int
    devices: list[DeviceInfo]


class BatchInfo(BaseModel):
    line: str
    batch_id: str
    work_order_id: str | None
    operation_id: str | None
    product_id: str | None
    phase: str | None
    target_quantity: float | None
    uom: str | None
    start_ms: int
    end_ms: int | None
    running: bool
    good: float
    #: what the reject counters counted while the batch ran (however QA classified them)
    rejects: float = Field(description="rejects counted while the batch ran, however QA classified them")
    scrap: float | None = Field(description="with QA disposition (mes.disposition.required) the rejects QA "
                                            "classified as scrap; without it every reject is scrap, as "
                                            "confirmations report it; null: not known here (split_unknown)")
    rework: float | None = Field(0.0, description="rejects QA classified as rework (0 without QA disposition; "
                                                  "null: not known here)")
    accepted: float | None = Field(0.0, description="rejects QA released as good (0 without QA disposition; null: "
                                                    "not known here)")
    pending_disposition: float | None = Field(
        None, description="rejects not classified yet; null when QA disposition is off or the split is not known here")
    split_unknown: str | None = Field(
        None, description="set for a line of another adapter instance that holds rejects for QA (or has no live "
                          "instance): why scrap, rework and accepted are null here; rejects is still the total")
    produced: float
    consumed: dict[str, float]


class LineSummary(BaseModel):
    line: str
    configured: bool
    nodes_online: int
    nodes: int
    devices_online: int = Field(0, description="devices (cells) of the line's nodes that are born and alive")
    devices: int = 0
    current_batch: str | None
    data_complete: bool = Field(True, description="false while any input of the line is STALE, BAD, UNCERTAIN "
                                                  "or its edge node / device is dead")
    incomplete_reasons: list[str] = Field(default_factory=list, description="why the data is incomplete")


class SignalView(BaseModel):
    """One configured signal of a line (machine state, speed) as the line card shows it."""

    metric: str
    cell: str | None
    value: Any = Field(description="null while the tag has no usable value")
    quality: str = Field(description="GOOD | UNCERTAIN | BAD | STALE, or MISSING when the tag was never born")
    status: str | None = Field(None, description="OPC UA StatusCode name when not GOOD")
    unit: str | None = None
    timestamp_ms: int | None = None


class LineState(BaseModel):
    line: str
    configured: bool
    nodes: list[NodeInfo]
    tags_by_quality: dict[str, int]
    current_batch: BatchInfo | None
    context_seq: int | None = Field(description="last accepted context seq; the next assertion needs a higher one")
    oee: dict[str, Any] | None = Field(description="OEE of the current batch (configured lines only); its "
                                                   "data_complete / incomplete_reasons cover the batch window")
    devices_online: int = 0
    devices: int = 0
    data_complete: bool = Field(True, description="false while any live input of the line is incomplete")
    incomplete_reasons: list[str] = Field(default_factory=list)
    machine_state: SignalView | None = Field(None, description="the configured state tag (PackML state name)")
    speed: SignalView | None = Field(None, description="the configured actual-speed tag")


class TrendPoint(BaseModel):
    ts_ms: int
    value: Any
    quality: str


class TagHistory(BaseModel):
    topic: str
    line: str
    cell: str | None
    metric: str
    from_ms: int
    to_ms: int
    points: list[TrendPoint]
    truncated: bool


class BatchStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str = Field(min_length=1, max_length=200)
    work_order_id: str | None = Field(None, min_length=1, max_length=200)
    operation_id: str | None = Field(None, min_length=1, max_length=200)
    product_id: str | None = Field(None, min_length=1, max_length=200)
    phase: str | None = Field(None, min_length=1, max_length=200)
    target_quantity: float | None = Field(None, ge=0)
    uom: str | None = Field(None, min_length=1, max_length=20)
    since_ms: int | None = Field(None, ge=0, le=2**62, description="source-time start; default: now")


class BatchPhase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phase: str = Field(min_length=1, max_length=200)
    since_ms: int | None = Field(None, ge=0, le=2**62)


class BatchEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str | None = Field(None, min_length=1, max_length=200,
                                 description="if given, must be the running batch")
    since_ms: int | None = Field(None, ge=0, le=2**62)


class ContextResult(BaseModel):
    outcome: str
    assertion: dict[str, Any]
    batch: BatchInfo | None


class BoundRecordView(BaseModel):
    line: str
    cell: str | None
    metric: str
    kind: str
    value: Any
    quality: str
    source_ts_ms: int
    received_ms: int | None
    is_historical: bool
    batch_id: str | None
    work_order_id: str | None
    product_id: str | None
    phase: str | None
    context_seq: int | None


class BatchRecords(BaseModel):
    line: str
    batch_id: str
    records: list[BoundRecordView]
    truncated: bool


class LineRecords(BaseModel):
    line: str
    from_ms: int
    to_ms: int
    records: list[BoundRecordView]
    truncated: bool


class OutboxView(BaseModel):
    counts: dict[str, int] = Field(description="entries by status; without a webhook the waiting ones count as "
                                               "`not_configured` instead of `pending`")
    depth: int = Field(description="entries waiting to be sent (pending, or not_configured without a webhook)")
    webhook_configured: bool = Field(True, description="false: `mes.webhook.url` is unset, so nothing is sent; "
                                                       "waiting confirmations show as `not_configured`")
    entries: list[dict[str, Any]]


class CommandSubmit(BaseModel):
    """Either the command fields (the adapter builds the request; sign its hash next), or ``request``:
    a complete request signed offline (``uns cmd new`` + ``uns cmd sign``)."""

    model_config = ConfigDict(extra="forbid")

    group_id: str | None = Field(None, min_length=1, max_length=200)
    edge_node_id: str | None = Field(None, min_length=1, max_length=200)
    device_id: str | None = Field(None, min_length=1, max_length=200)
    metric: str | None = Field(None, min_length=1, max_length=500)
    value: Any = None
    reason: str | None = Field(None, min_length=1, max_length=2000)
    validity_s: float | None = Field(None, gt=0, le=86_400)
    request: CommandRequest | None = None


class CommandView(BaseModel):
    command_id: uuid.UUID
    status: str
    message: str
    command_hash: str
    canonical: str = Field(description="the exact bytes the command hash covers (what a signer signs over)")
    request: CommandRequest
    signatures: list[Signature]
    decision: dict[str, Any] | None
    result: dict[str, Any] | None
    created_ms: int
    updated_ms: int
    dispatched_ms: int | None
    history: list[dict[str, Any]]
    audit: list[dict[str, Any]] = Field(description="the audited steps of this command, oldest first")
    sign_with: str = Field(description="how to add a signature from the command line")


class AllowlistView(BaseModel):
    version: str
    rules: list[dict[str, Any]]
