"""The context assertion: what the MES (or an operator) says is running on a line, from when.

Rules, stated once:

* An assertion is a *change point* on the line's timeline: from ``since_ms`` (source time) on, the
  line runs this batch / work order / product / phase — or, with ``ended=True``, no batch.
* ``seq`` is the asserter's monotonically increasing sequence per line. A higher seq is news; the
  same seq with identical content is a duplicate (retained redelivery, our own echo) and is ignored;
  anything else with a seq at or below the last one is refused with the reason.
* Which assertion is active at ``t``: the one with the greatest ``since_ms <= t``; among equal
  ``since_ms`` the highest ``seq`` (so re-asserting a change point with a higher seq corrects it).
  This depends only on the set of accepted assertions, never on arrival order of data or context.
* On the retained ``<line>/_context/batch`` topic the payload is this model without ``line`` (the topic
  carries it); an empty payload clears the context (see :mod:`mes_adapter.context.service`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mes_adapter.errors import InvalidContextPayloadError
from mes_adapter.lines import line_key, parse_line_key
from uns import json_guard
from uns.isa95 import CONTEXT, NamespaceMapping


def context_topic(mapping: NamespaceMapping, line: str) -> str:
    """The retained ``<line>/_context/batch`` topic (under the mapping's mirror root)."""
    return mapping.line_topic(parse_line_key(line), CONTEXT, "batch")


class ContextAssertion(BaseModel):
    """One assertion of batch context for a line.

    Batch, work order, product, start time and who asserted it, plus ``seq``, phase and target.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    line: str = Field(description="<enterprise>/<site>/<area>/<line>")
    seq: int = Field(ge=0, description="monotonically increasing per line, chosen by the asserter")
    since_ms: int = Field(ge=0, description="source-time start of this context, UTC ms")
    batch_id: str | None = Field(None, min_length=1)
    work_order_id: str | None = Field(None, min_length=1)
    operation_id: str | None = Field(None, min_length=1)
    product_id: str | None = Field(None, min_length=1)
    phase: str | None = Field(None, min_length=1)
    target_quantity: float | None = Field(None, ge=0)
    uom: str | None = Field(None, min_length=1)
    asserted_by: str = Field("unknown", min_length=1)
    #: True: the batch ``batch_id`` (if given) ended at ``since_ms``; from then on no batch is active
    ended: bool = False

    @field_validator("line")
    @classmethod
    def _valid_line(cls, value: str) -> str:
        return line_key(value)

    @model_validator(mode="after")
    def _batch_when_running(self) -> ContextAssertion:
        if not self.ended and self.batch_id is None:
            raise ValueError("a context that is not an end needs a batch_id")
        return self

    @property
    def is_batch(self) -> bool:
        """True when this assertion makes a batch active (not an end)."""
        return not self.ended

    def same_content(self, other: ContextAssertion) -> bool:
        """Identical assertion (a duplicate delivery), field by field."""
        return self.model_dump() == other.model_dump()

    # -- retained UNS topic ------------------------------------------------------------------

    def to_payload(self) -> bytes:
        """JSON for ``<line>/_context/batch``: no ``line`` (the topic says it), no nulls."""
        data = self.model_dump(exclude={"line"}, exclude_none=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_payload(cls, line: str, payload: bytes | str) -> ContextAssertion | None:
        """Parse a retained payload; ``None`` for the empty (clearing) payload.

        Raises :class:`InvalidContextPayloadError` with the reason for anything else that is not a
        valid assertion (bad JSON, missing ``seq``, a ``line`` that contradicts the topic).
        """
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        if not text.strip():
            return None
        try:
            data: Any = json_guard.loads(text)
        except json_guard.JsonTooDeepError as exc:
            raise InvalidContextPayloadError(f"context payload on {line!r}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise InvalidContextPayloadError(f"context payload on {line!r} is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidContextPayloadError(f"context payload on {line!r} is not a JSON object")
        key = line_key(line)
        if "line" in data and data["line"] != key:
            raise InvalidContextPayloadError(
                f"context payload names line {data['line']!r} but was published on {key!r}")
        data["line"] = key
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidContextPayloadError(f"context payload on {key!r} is invalid: {exc}") from exc


class AssertionOutcome(StrEnum):
    """What happened to an assertion that was not refused."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class ContextSegment:
    """A stretch of a line's timeline under one assertion: ``[start_ms, end_ms)``; end None = open."""

    start_ms: int
    end_ms: int | None
    assertion: ContextAssertion

    def contains(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms and (self.end_ms is None or ts_ms < self.end_ms)


@dataclass(frozen=True, slots=True)
class BatchWindow:
    """Where a batch ran on a line: first change point to the end (None while running).

    ``segments`` are the batch's pieces (phase changes give several; a batch re-started after another
    one gives gaps); quantities and records are counted only inside them.
    """

    line: str
    batch_id: str
    start_ms: int
    end_ms: int | None
    segments: tuple[ContextSegment, ...]

    @property
    def ended(self) -> bool:
        return self.end_ms is not None

    @property
    def first(self) -> ContextAssertion:
        return self.segments[0].assertion

    @property
    def last(self) -> ContextAssertion:
        return self.segments[-1].assertion
