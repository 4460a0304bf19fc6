"""Accepting or refusing QA dispositions of a batch's rejects, and what is still pending.

A batch's rejects are what its reject counters counted while it ran (the production counters:
the line's own truth). ``pending = rejects - (scrap + rework + accepted of every disposition)``.
A disposition is accepted only when all hold, checked in this order so the reason names the
first problem: the batch ran on the line; the caller has the QA role; the disposition id is new
(or the same disposition again: answered with the stored one, nothing counted twice); it classifies
something; the signature is the caller's own, by a registered key, over exactly this disposition
(:func:`~mes_adapter.quality.models.disposition_hash`); it classifies no more than is pending.

"The same disposition again" is a client retry: the answer to the first request was lost, or the
button was pressed twice, and the client sends the same id with the same split, possibly signed
anew (a new ``signed_at_ms``), possibly while the first request is still being checked. The id,
line, batch, split and signer decide (the signature's hash covers the first four); a retry never
counts twice nor answers 500, because the check and the insert are one step under a lock (the API
runs requests on several threads). The same id with another split is refused
(``disposition_id_used``): a correction is a new disposition.

Every accepted disposition and every refusal of an identified caller goes into the audit chain
(:mod:`uns.audit.decisions`); the store row is committed first, so nothing acknowledged is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from mes_adapter.auth import Principal, Role
from mes_adapter.errors import RefusalError
from mes_adapter.quality.models import Disposition, DispositionRequest, DispositionSplit, disposition_hash
from mes_adapter.quality.store import DispositionStore
from mes_adapter.timefmt import now_ms
from uns.audit.decisions import Actor, AuthMethod, DecisionAudit, disposition_entry, disposition_refused_entry
from uns.commands.signing import SignatureRefusedError, UserRegistry, verify_signature

#: rejects counted as floats: a split may differ from the count by rounding only
_EPS = 1e-9

#: ``(line, batch_id) -> rejects counted while the batch ran``, None when the batch never ran there
RejectsOf = Callable[[str, str], float | None]


class DispositionRefusedError(RefusalError):
    """A disposition the service refuses; ``status`` and ``reason`` are what the API answers."""


@dataclass(frozen=True, slots=True)
class DispositionState:
    line: str
    batch_id: str
    rejects: float
    disposed: DispositionSplit
    dispositions: list[Disposition]

    @property
    def pending(self) -> float:
        return max(0.0, self.rejects - self.disposed.total)


class DispositionService:
    def __init__(self, store: DispositionStore, registry: UserRegistry, rejects_of: RejectsOf,
                 audit: DecisionAudit, clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self._registry = registry
        self._rejects_of = rejects_of
        self._audit = audit
        self._clock = clock
        #: the pending check and the insert are one step (two API threads must not both pass it)
        self._lock = threading.Lock()

    def state(self, line: str, batch_id: str) -> DispositionState:
        rejects = self._rejects_of(line, batch_id)
        if rejects is None:
            raise DispositionRefusedError(404, "unknown_batch", f"batch {batch_id!r} never ran on {line}")
        return DispositionState(line, batch_id, rejects, self.store.totals(line, batch_id),
                                self.store.of_batch(line, batch_id))

    def totals(self, line: str, batch_id: str) -> DispositionSplit:
        """What QA classified so far (the confirmation builder's input)."""
        return self.store.totals(line, batch_id)

    def dispose(self, who: Principal, line: str, batch_id: str, request: DispositionRequest) -> Disposition:
        with self._lock:
            return self._dispose(who, line, batch_id, request)

    def _dispose(self, who: Principal, line: str, batch_id: str, request: DispositionRequest) -> Disposition:
        state = self.state(line, batch_id)
        try:
            return self._accept(who, state, request)
        except DispositionRefusedError as exc:
            self._audit.record(disposition_refused_entry(
                Actor(who.user_id, AuthMethod.API_TOKEN, printed_name=who.full_name), source=self._audit.source,
                line=line, batch_id=batch_id, reason_code=exc.reason, message=exc.message,
                quantities=request.split.model_dump()))
            raise

    def _accept(self, who: Principal, state: DispositionState, request: DispositionRequest) -> Disposition:
        line, batch_id, split = state.line, state.batch_id, request.split
        if not who.has(Role.QA):
            raise DispositionRefusedError(403, "role_required",
                                          f"classifying rejects needs role qa; user {who.user_id!r} has role "
                                          f"{who.role.label}")
        existing = self.store.get(request.disposition_id)
        if existing is not None:
            if (existing.line, existing.batch_id, existing.split, existing.user_id) == (
                    line, batch_id, split, who.user_id) and request.signature.user_id == who.user_id:
                return existing  # a retry: counted once, answered with what was recorded
            raise DispositionRefusedError(409, "disposition_id_used",
                                          f"disposition {request.disposition_id!r} was already recorded with "
                                          "other content; use a new id")
        if split.total <= 0:
            raise DispositionRefusedError(422, "empty_disposition", "a disposition classifies at least one reject")
        signature = request.signature
        if signature.user_id != who.user_id:
            raise DispositionRefusedError(403, "not_your_signature",
                                          f"the signature is {signature.user_id!r}'s but the token is "
                                          f"{who.user_id!r}'s; sign your own disposition")
        try:
            verify_signature(signature, disposition_hash(line, batch_id, request.disposition_id, split),
                             self._registry)
        except SignatureRefusedError as exc:
            raise DispositionRefusedError(422, "signature_invalid", exc.message) from None
        if split.total > state.pending + _EPS:
            raise DispositionRefusedError(
                409, "exceeds_pending",
                f"the disposition classifies {split.total:g} rejects but only {state.pending:g} of batch "
                f"{batch_id!r} are pending ({state.rejects:g} counted, {state.disposed.total:g} classified)")
        disposition = Disposition(disposition_id=request.disposition_id, line=line, batch_id=batch_id, split=split,
                                  user_id=who.user_id, full_name=who.full_name, reason=request.reason,
                                  signature=signature, recorded_ms=self._clock())
        self.store.add(disposition)
        self._audit.record(disposition_entry(
            Actor(who.user_id, AuthMethod.SIGNATURE, printed_name=signature.full_name), source=self._audit.source,
            line=line, batch_id=batch_id, disposition_id=disposition.disposition_id,
            quantities=split.model_dump(), pending_before=state.pending, reason=request.reason,
            signatures=[signature.model_dump(mode="json")], payload_sha256=signature.command_hash))
        return disposition
