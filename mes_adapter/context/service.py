"""Accepting context assertions for lines, and answering which batch ran when.

The service validates ordering (see rules in :mod:`mes_adapter.context.models`), writes accepted
assertions to the :class:`ContextStore` *before* they change the in-memory timeline (so a crash never
shows a context that a restart would forget), and rebuilds every timeline from the store at start.

Validation beyond ``seq``: an end assertion naming a batch must end the batch that is active at its
``since_ms``. A ``since_ms`` earlier than older change points is allowed: it inserts a change point
into the past (a late assertion), and reads bound at query time pick it up.

The empty retained payload on ``<line>/_context/batch`` ends the active batch at the time the adapter
received it, as an adapter-generated end assertion with ``seq = last seq + 1``; an asserter mixing
empty payloads with its own sequence must continue from the adapter's last seq (shown in the history).

Lines of other adapter instances (``owns`` says which lines are this instance's; see ``host.groups``):
their timelines are not kept in memory, since another instance appends to them. A read of such a line
loads its timeline from the store at query time, so with the shared PostgreSQL store (``mes.state_dsn``)
this instance answers for every line of the plant; with a SQLite store such a line simply has no context
here. Writes for them never reach the service (the adapter refuses them first).
"""

from __future__ import annotations

from collections.abc import Callable

from mes_adapter.context.models import AssertionOutcome, BatchWindow, ContextAssertion, ContextSegment
from mes_adapter.context.store import ContextStorePort
from mes_adapter.context.timeline import Timeline
from mes_adapter.errors import ContextRejectedError
from mes_adapter.lines import line_key
from mes_adapter.timefmt import now_ms

#: ``asserted_by`` of end assertions the adapter makes for an empty retained payload
CLEAR_ASSERTER = "uns-empty-retained"

Listener = Callable[[ContextAssertion], None]


class ContextService:
    """Per-line context timelines backed by an append-only history (SQLite or the shared PostgreSQL)."""

    def __init__(self, store: ContextStorePort, clock: Callable[[], int] = now_ms,
                 owns: Callable[[str], bool] | None = None) -> None:
        self._store = store
        self._clock = clock
        self._owns = owns or (lambda _line: True)
        self._timelines: dict[str, Timeline] = {}
        self._listeners: list[Listener] = []
        for assertion in store.load_all():
            if self._owns(assertion.line):
                self._timeline(assertion.line).add(assertion)

    def _timeline(self, line: str) -> Timeline:
        timeline = self._timelines.get(line)
        if timeline is None:
            timeline = self._timelines[line] = Timeline()
        return timeline

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` after each accepted (not duplicate) assertion, e.g. to republish it."""
        self._listeners.append(listener)

    # -- writing -----------------------------------------------------------------------------

    def assert_context(self, assertion: ContextAssertion) -> AssertionOutcome:
        """Accept, ignore as duplicate, or refuse (:class:`ContextRejectedError`) an assertion."""
        timeline = self._timeline(assertion.line)
        existing = timeline.by_seq(assertion.seq)
        if existing is not None:
            if existing.same_content(assertion):
                return AssertionOutcome.DUPLICATE
            raise ContextRejectedError(assertion.line, assertion.seq,
                                       "this seq was already accepted with different content")
        last = timeline.last_seq
        if last is not None and assertion.seq < last:
            raise ContextRejectedError(assertion.line, assertion.seq,
                                       f"seq must be greater than the last accepted seq {last}")
        if assertion.ended and assertion.batch_id is not None:
            active = timeline.active_at(assertion.since_ms)
            if active is None or active.batch_id != assertion.batch_id:
                running = "no batch" if active is None else f"batch {active.batch_id!r}"
                raise ContextRejectedError(
                    assertion.line, assertion.seq,
                    f"it ends batch {assertion.batch_id!r} but {running} is active at since_ms")
        self._store.append(assertion, self._clock())
        timeline.add(assertion)
        for listener in self._listeners:
            listener(assertion)
        return AssertionOutcome.ACCEPTED

    def handle_retained(self, line: str, payload: bytes | str) -> AssertionOutcome | None:
        """Apply a ``<line>/_context/batch`` message; None when an empty payload had nothing to end.

        Raises :class:`~mes_adapter.errors.InvalidContextPayloadError` for a malformed payload and
        :class:`ContextRejectedError` for a refused one; the MQTT shell logs and counts both.
        """
        assertion = ContextAssertion.from_payload(line, payload)
        if assertion is None:
            return self.clear(line, self._clock(), asserted_by=CLEAR_ASSERTER)
        return self.assert_context(assertion)

    def clear(self, line: str, at_ms: int, asserted_by: str) -> AssertionOutcome | None:
        """End the batch active at ``at_ms`` with an adapter-generated end assertion (None: none)."""
        key = line_key(line)
        timeline = self._timeline(key)
        active = timeline.active_at(at_ms)
        if active is None:
            return None
        last = timeline.last_seq
        end = ContextAssertion(line=key, seq=0 if last is None else last + 1, since_ms=at_ms,
                               batch_id=active.batch_id, work_order_id=active.work_order_id,
                               asserted_by=asserted_by, ended=True)
        return self.assert_context(end)

    # -- reading -----------------------------------------------------------------------------

    def reader(self, line: str) -> Timeline | None:
        """The timeline to read ``line`` from: in memory for an own line, else loaded from the store now."""
        if self._owns(line):
            return self._timelines.get(line)
        stored = self._store.load_line(line)
        if not stored:
            return None
        timeline = Timeline()
        for assertion in stored:
            timeline.add(assertion)
        return timeline

    def active_at(self, line: str, ts_ms: int) -> ContextAssertion | None:
        """The batch context in force on ``line`` at source time ``ts_ms`` (None: no batch)."""
        timeline = self.reader(line)
        return None if timeline is None else timeline.active_at(ts_ms)

    def current(self, line: str) -> ContextAssertion | None:
        """The context of the latest change point (what a retained topic should show now)."""
        timeline = self.reader(line)
        if timeline is None:
            return None
        return timeline.governing_at(2**63 - 1)

    def last_seq(self, line: str) -> int | None:
        timeline = self.reader(line)
        return None if timeline is None else timeline.last_seq

    def segments(self, line: str, from_ms: int | None = None,
                 to_ms: int | None = None) -> list[ContextSegment]:
        timeline = self.reader(line)
        return [] if timeline is None else timeline.segments(from_ms, to_ms)

    def batch_window(self, line: str, batch_id: str) -> BatchWindow | None:
        timeline = self.reader(line)
        return None if timeline is None else timeline.batch_window(batch_id)

    def batch_windows(self, line: str, from_ms: int | None = None,
                      to_ms: int | None = None) -> list[BatchWindow]:
        timeline = self.reader(line)
        return [] if timeline is None else timeline.batch_windows(from_ms, to_ms)

    def lines(self) -> list[str]:
        """This instance's lines with context (those it keeps timelines of)."""
        return sorted(self._timelines)

    def all_lines(self) -> list[str]:
        """Every line with stored context, this instance's and (in a shared store) the others'."""
        return sorted(set(self._timelines) | set(self._store.lines()))

    def history(self, line: str, limit: int | None = None) -> list[tuple[ContextAssertion, int]]:
        """Accepted assertions with their receive time, newest first (for the API)."""
        return self._store.history(line_key(line), limit)
