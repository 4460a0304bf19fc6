"""Accepting crew assertions (REST and UNS), with the rules that keep a person in one place at a
time, and the labour time of a confirmation window.

Why an identical repeat is accepted (``duplicate``) and a contradicting one refused: as for lots
(:mod:`mes_adapter.genealogy.service`), a retained ``_context/crew`` message comes again after a
reconnect and a client retries a POST whose answer it lost; a presence whose times change under a
batch already confirmed would silently change the labour the ERP was told. The one change accepted
is the close of an open presence (same line, person and start, an end given): a badge reader sends
"in" and later "out".

Refused, each with its own reason and nothing stored: a line the adapter does not run
(``unknown_line``), an end not after the start (``end_before_start``), the same person on two
presences that overlap, on this line or another (``crew_overlap``), the same presence with other
times (``crew_conflict``).

Every accepted assertion goes into the audit chain with the identity that made it (the REST caller;
on the UNS the broker user the broker's ACL binds to the line's ``_context``, the payload's
``asserted_by`` kept as a claim): crew decides the labour time of a batch record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from enum import StrEnum

from pydantic import ValidationError

from mes_adapter.errors import RefusalError
from mes_adapter.oee.compute import Interval
from mes_adapter.timefmt import now_ms
from uns.audit.decisions import Actor, AuthMethod, DecisionAudit, crew_entry

from .models import CrewPresence, labour_ms
from .store import CrewStore


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class CrewError(RefusalError):
    """A crew assertion refused; ``status`` (HTTP) and ``reason`` (code) say how and why."""


class CrewService:
    def __init__(self, store: CrewStore, known_line: Callable[[str], bool], audit: DecisionAudit | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self._known_line = known_line
        self._audit = audit
        self._clock = clock
        self._lock = threading.Lock()  # the check and the write are one step (API threads, UNS loop)

    def assert_presence(self, presence: CrewPresence, who: str, *, actor: Actor | None = None,
                        via: str = "api") -> Outcome:
        if not self._known_line(presence.line):
            raise CrewError(404, "unknown_line", f"line {presence.line} is not configured in mes.lines; "
                                                 "crew can be asserted only on a line the adapter runs")
        if presence.end_ms is not None and presence.end_ms <= presence.start_ms:
            raise CrewError(422, "end_before_start", f"{presence.person_id}'s presence ends at {presence.end_ms}, "
                                                     f"not after its start {presence.start_ms}")
        with self._lock:
            return self._accept(presence, who, actor, via)

    def _accept(self, presence: CrewPresence, who: str, actor: Actor | None, via: str) -> Outcome:
        closing = False
        for known in self.store.of_person(presence.person_id):
            same = (known.line, known.start_ms) == (presence.line, presence.start_ms)
            if same and known == presence:
                return Outcome.DUPLICATE
            if same and known.end_ms is None and presence.end_ms is not None:
                closing = True  # the close of an open presence
                continue
            if same:
                raise CrewError(409, "crew_conflict", f"presence {known.describe()} is already recorded; "
                                                      f"refused {presence.describe()}")
            if known.overlaps(presence):
                raise CrewError(409, "crew_overlap", f"{presence.person_id} is already on record as "
                                                     f"{known.describe()}; refused {presence.describe()}")
        if closing:
            self.store.close_presence(presence)
        else:
            self.store.add(presence, who, self._clock())
        if self._audit is not None:
            self._audit.record(crew_entry(actor or Actor(who, AuthMethod.UNATTRIBUTED), source=self._audit.source,
                                          presence=presence.model_dump(mode="json"), via=via,
                                          claimed_by=who if via == "uns" else None,
                                          closed=closing))
        return Outcome.ACCEPTED

    def crew(self, line: str, from_ms: int = 0, to_ms: int = 2**62) -> list[CrewPresence]:
        return self.store.of_line(line, from_ms, to_ms)

    def labour_ms(self, line: str, run_window: Sequence[Interval]) -> int:
        """Labour time of the crew of ``line`` inside ``run_window`` (see :func:`labour_ms`)."""
        if not run_window:
            return 0
        start = min(iv.start_ms for iv in run_window)
        end = max(iv.end_ms for iv in run_window)
        return labour_ms(self.store.of_line(line, start, end), run_window)

    # -- the UNS -----------------------------------------------------------------------------

    def handle_uns(self, line: str, payload: bytes, actor: Actor | None = None) -> Outcome:
        """A ``<line>/_context/crew`` message: ``{person_id, start_ms, end_ms?, asserted_by?}`` (the line
        comes from the topic); ``actor``: its publisher as the broker's ACL establishes it."""
        body = CrewError.json_object(payload, "crew assertion")
        who = str(body.pop("asserted_by", "uns"))
        try:
            presence = CrewPresence.model_validate({**body, "line": line})
        except ValidationError as exc:
            raise CrewError(422, "invalid_payload", f"crew assertion refused: {exc.errors()[0]['msg']}") from None
        return self.assert_presence(presence, who, actor=actor or Actor.broker_user(None), via="uns")
