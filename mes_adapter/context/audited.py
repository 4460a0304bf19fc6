"""Context decisions into the audit chain, with the identity that made them.

Why a wrapper and not a listener on :class:`~mes_adapter.context.service.ContextService`: the
listener sees the assertion but not who made it, nor the context in force before it (which is what
tells a batch start from a phase change). The wrapper captures the context before, runs the
acceptance, and on ``ACCEPTED`` appends one record classified by
:func:`uns.audit.decisions.classify_context`; duplicates and refusals decide nothing and are not
recorded here (refusals are counted and logged by the caller).

The record is appended after the assertion is stored: the chain cannot take part in the context
store's transaction (two SQLite files). A failed append is logged at ERROR and re-raised to the
caller, so an API caller sees a 5xx for a decision the chain did not record (and a reviewer finds
the gap by comparing the context history with the chain).
"""

from __future__ import annotations

from collections.abc import Callable

from mes_adapter.auth import Principal
from mes_adapter.context.models import AssertionOutcome
from mes_adapter.context.service import ContextService
from mes_adapter.lines import line_key
from uns.audit.decisions import Actor, AuthMethod, DecisionAudit


def api_actor(who: Principal | None) -> Actor:
    """The REST caller as the chain names them (a call without a principal is recorded as such)."""
    if who is None:
        return Actor("api:unknown", AuthMethod.UNATTRIBUTED)
    return Actor(who.user_id, AuthMethod.API_TOKEN, printed_name=who.full_name)


def audited(context: ContextService, audit: DecisionAudit, line: str, actor: Actor, via: str,
            accept: Callable[[], AssertionOutcome | None]) -> AssertionOutcome | None:
    """Run ``accept`` (an assertion on ``line``) and audit what it decided."""
    key = line_key(line)
    before = context.current(key)
    outcome = accept()
    if outcome is AssertionOutcome.ACCEPTED:
        newest = context.history(key, 1)
        if newest:
            accepted = newest[0][0]
            audit.context(accepted.model_dump(mode="json"),
                          None if before is None else before.model_dump(mode="json"), actor, via)
    return outcome
