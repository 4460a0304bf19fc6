"""On start, the MES context of a line is checked against what the line itself reports.

Why: the context store survives restarts, the line's PLC does not always. After an adapter (or
whole stack) restart the store may still say "batch B running" while the line was restarted,
finished the order or never ran it. Showing B as running would attribute the next production to
it and block the next batch start (409). So when the line's first birth after a start arrives, the
adapter compares, decides with :func:`reconcile` (pure, below), acts (an end assertion made by the
adapter, stored and published like any other) and says what it did (log, feed event, API).

Rules, stated once (``tag`` = the line's current-batch tag, if the line config maps one):

=================  ======================  ===================  ==========================================
MES shows          batch tag               line state           action
=================  ======================  ===================  ==========================================
no batch           anything                anything             nothing (a batch on the line alone is
                                                                reported, never started by the adapter)
batch B            B (or B's work order)   anything             keep
batch B            another batch X         anything             end B (the line moved on)
batch B            empty                   executing            keep, and say the tag disagrees
batch B            empty                   not executing        end B (the line runs no batch)
batch B            not mapped / unknown    anything             keep, and say it could not be checked
=================  ======================  ===================  ==========================================

The end's time is the source time of the tag value that says "no batch / another batch" when that
lies inside the batch (the moment the line stopped running B), else now.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mes_adapter.context.models import ContextAssertion


class ReconcileAction(StrEnum):
    NOTHING = "nothing"
    KEPT = "kept"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class LineReport:
    """What the line says right now (None: not mapped or no value yet)."""

    batch_tag: str | None
    batch_tag_ts_ms: int | None
    state: str | None
    executing: bool | None


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The decision for one line, with the words the log, the event and the API carry."""

    line: str
    action: ReconcileAction
    detail: str
    batch_id: str | None = None
    #: when the ended batch is ended (ENDED only)
    end_ms: int | None = None


def reconcile(line: str, current: ContextAssertion | None, report: LineReport, now_ms: int) -> Reconciliation:
    """Decide per the module table."""
    said = _said(report)
    if current is None or current.ended or current.batch_id is None:
        extra = (f"; the line runs {report.batch_tag!r}, which the MES has not started"
                 if report.batch_tag else "")
        return Reconciliation(line, ReconcileAction.NOTHING, f"no batch shown running; {said}{extra}")
    batch = current.batch_id
    if report.batch_tag is None:
        return Reconciliation(line, ReconcileAction.KEPT,
                              f"batch {batch!r} kept running: the line reports no batch tag to check it "
                              f"against ({said})", batch)
    if report.batch_tag in (batch, current.work_order_id):
        return Reconciliation(line, ReconcileAction.KEPT, f"batch {batch!r} kept running: {said}", batch)
    if not report.batch_tag and report.executing:
        return Reconciliation(line, ReconcileAction.KEPT,
                              f"batch {batch!r} kept running: the line executes although its batch tag "
                              f"is empty ({said})", batch)
    end = now_ms
    ts = report.batch_tag_ts_ms
    if ts is not None and current.since_ms < ts <= now_ms:
        end = ts
    why = f"the line runs {report.batch_tag!r}" if report.batch_tag else "the line runs no batch"
    return Reconciliation(line, ReconcileAction.ENDED,
                          f"batch {batch!r} ended at {end}: {why} ({said})", batch, end)


def _said(report: LineReport) -> str:
    tag = "not mapped" if report.batch_tag is None else repr(report.batch_tag)
    state = "unknown" if report.state is None else repr(report.state)
    return f"line state {state}, batch tag {tag}"
