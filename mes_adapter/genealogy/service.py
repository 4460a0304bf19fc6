"""Assertions of lots, with the rules that keep a lot's history single-valued, and the trace queries.

Why an identical repeat is accepted (``duplicate``) and a different one refused: the same
assertion arrives twice in normal operation (a retained ``_context/material`` message redelivered
after a reconnect, a client retrying a POST whose answer it lost), and refusing it would turn a
retry into an error; a *different* quantity, material or unit for the same lot and batch is a
contradiction the recall depends on, so it is refused with what is already recorded, and nothing
recorded is changed.

Every accepted assertion (consumed, produced, split, merge) goes into the audit chain with the
identity that made it (the REST caller; on the UNS, the broker user bound to the line's
``_context`` by the broker's ACL, the payload's ``asserted_by`` kept as a claim). The genealogy row
is stored first, then its record (two SQLite files, as for context decisions). Duplicates decide
nothing and are not recorded; refusals store nothing and are answered (REST) or logged and counted
(UNS).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from mes_adapter.errors import RefusalError
from mes_adapter.timefmt import now_ms
from uns.audit.decisions import Actor, AuthMethod, DecisionAudit, lot_entry
from uns.audit.record import AuditEvent

from .models import Consumption, LotLink, ProducedLot, Trace
from .store import GenealogyStore
from .trace import trace_backward, trace_forward


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class GenealogyError(RefusalError):
    """A lot assertion refused; ``status`` (HTTP) and ``reason`` (code) say how and why."""


def _repeat(known: Consumption | ProducedLot | None, item: Consumption | ProducedLot, as_what: str) -> Outcome | None:
    """DUPLICATE for an identical repeat, None for a new lot; a contradicting repeat is refused."""
    if known is None:
        return None
    if known == item:
        return Outcome.DUPLICATE
    raise GenealogyError(409, "lot_already_asserted", f"lot {item.lot_id!r} is already recorded as {as_what}: "
                                                      f"{known.describe()}; refused {item.describe()}")


class GenealogyService:
    def __init__(self, store: GenealogyStore, audit: DecisionAudit | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self._audit = audit
        self._clock = clock

    def _audited(self, event: AuditEvent, assertion: dict[str, Any], who: str, actor: Actor | None,
                 via: str) -> Outcome:
        """Record an accepted assertion (``actor`` None: ``who`` unauthenticated, e.g. a unit test)."""
        if self._audit is not None:
            self._audit.record(lot_entry(event, actor or Actor(who, AuthMethod.UNATTRIBUTED),
                                         source=self._audit.source, assertion=assertion, via=via,
                                         claimed_by=who if via == "uns" else None))
        return Outcome.ACCEPTED

    def consume(self, item: Consumption, who: str, *, actor: Actor | None = None, via: str = "api") -> Outcome:
        repeat = _repeat(self.store.consumption(item.line, item.batch_id, item.lot_id), item, "consumed")
        if repeat is not None:
            return repeat
        made = self.store.produced(item.lot_id)
        if made is not None and (made.line, made.batch_id) == (item.line, item.batch_id):
            raise GenealogyError(422, "lot_is_output",
                                 f"lot {item.lot_id!r} is produced by batch {item.batch_id}; it cannot consume it")
        self.store.add_consumption(item, who, self._clock())
        return self._audited(AuditEvent.LOT_CONSUMED, item.model_dump(mode="json"), who, actor, via)

    def produce(self, item: ProducedLot, who: str, *, actor: Actor | None = None, via: str = "api") -> Outcome:
        repeat = _repeat(self.store.produced(item.lot_id), item, "produced")
        if repeat is not None:
            return repeat
        if self.store.link_of_target(item.lot_id) is not None:
            raise GenealogyError(409, "lot_already_asserted",
                                 f"lot {item.lot_id!r} was made by a split or merge; a batch cannot produce it")
        if self.store.consumption(item.line, item.batch_id, item.lot_id) is not None:
            raise GenealogyError(422, "lot_is_input",
                                 f"lot {item.lot_id!r} is consumed by batch {item.batch_id}; it cannot produce it")
        self.store.add_produced(item, who, self._clock())
        return self._audited(AuditEvent.LOT_PRODUCED, item.model_dump(mode="json"), who, actor, via)

    def link(self, link: LotLink, who: str, *, actor: Actor | None = None) -> Outcome:
        """A split or merge; every target lot must be new (a lot has one origin)."""
        for target in link.targets:
            existing = self.store.link_of_target(target.lot_id)
            if existing is not None:
                if existing == link:
                    return Outcome.DUPLICATE
                raise GenealogyError(409, "lot_already_asserted",
                                     f"lot {target.lot_id!r} already came from a {existing.kind.value} of "
                                     f"{', '.join(s.lot_id for s in existing.sources)}")
            if self.store.produced(target.lot_id) is not None:
                raise GenealogyError(409, "lot_already_asserted",
                                     f"lot {target.lot_id!r} is produced by a batch; "
                                     f"a {link.kind.value} cannot make it")
            if self.store.lot_consumed(target.lot_id):
                raise GenealogyError(409, "lot_already_asserted",
                                     f"lot {target.lot_id!r} is already consumed by a batch; it is not new")
        self.store.add_link(link, who, self._clock())
        return self._audited(AuditEvent.LOT_LINKED, link.model_dump(mode="json"), who, actor, "api")

    def consumed_by(self, line: str, batch_id: str) -> list[Consumption]:
        return self.store.consumed_by(line, batch_id)

    def produced_by(self, line: str, batch_id: str) -> list[ProducedLot]:
        return self.store.produced_by(line, batch_id)

    def backward(self, lot_id: str) -> Trace:
        return trace_backward(self.store.graph(), lot_id)

    def forward(self, lot_id: str) -> Trace:
        return trace_forward(self.store.graph(), lot_id)

    # -- the UNS -----------------------------------------------------------------------------

    def handle_uns(self, line: str, payload: bytes, actor: Actor | None = None) -> Outcome:
        """A ``<line>/_context/material`` message: ``{"kind": "consumed"|"produced", batch_id, lot_id,
        material_id, quantity, uom, "asserted_by"}`` (the line comes from the topic); ``actor``: its
        publisher as the broker's ACL establishes it (:meth:`uns.audit.decisions.Actor.broker_user`)."""
        body = GenealogyError.json_object(payload, "material assertion")
        kind = body.pop("kind", None)
        who = str(body.pop("asserted_by", "uns"))
        model = {"consumed": Consumption, "produced": ProducedLot}.get(str(kind))
        if model is None:
            raise GenealogyError(422, "invalid_payload", f"material assertion kind must be consumed or produced, "
                                                         f"not {kind!r}")
        try:
            item = model.model_validate({**body, "line": line})
        except ValidationError as exc:
            raise GenealogyError(422, "invalid_payload", f"material assertion refused: {exc.errors()[0]['msg']}") \
                from None
        actor = actor or Actor.broker_user(None)
        if isinstance(item, Consumption):
            return self.consume(item, who, actor=actor, via="uns")
        return self.produce(item, who, actor=actor, via="uns")
