"""The edge's own data-quality events as alarms on the alarm channel: pure state, no I/O.

With ``quality_alarms: true`` in ``plant.yaml`` every tag of a cell gets synthetic conditions in
the same wire shape as an OPC UA condition (:mod:`edge_node.alarms`, the nine metrics), under the
condition name ``DataQuality/<tag metric>/<Kind>``, i.e. the metrics
``Alarms/DataQuality/<tag metric>/<Kind>/Active`` ... ``/EventId`` of the tag's device:

=============  =================================================================  ========
Kind           active while                                                       Severity
=============  =================================================================  ========
``BadQuality`` a Bad episode the server reports (``bad_status``), first Bad        700
               sample to first non-Bad one (docs/data-quality.md)
``OutOfRange`` a Bad episode that started outside ``[eng_low, eng_high]``          600
               (``on_out_of_range: bad``); only tags with an engineering range
``Stale``      ``max_age_s`` without a sample, until the next one; only tags       400
               with ``max_age_s``
=============  =================================================================  ========

Each start and each end is one event: a new EventId (random, hex), the time the edge decided it
as source time, Active/Retain true while it lasts, Acked and Confirmed always true (there is
nothing on a server to acknowledge: ConditionId is empty and an acknowledgement is refused as for
an unknown condition), State the kind while active and ``""`` after, Message saying what and the
StatusCode. The edge's own loss of the session (``comm_lost``) is *not* an alarm here: the device
death already says it, and ``_alarms`` turns stale with it.

Why opt-in: nine metrics per tag and kind make a birth much larger (a 10,000-tag edge node would
declare up to 270,000 more metrics); a plant that wants them on the alarm channel turns them on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from uns.conventions import PROP_QUALITY_REASON, QualityReason

from .alarms import METRICS, ConditionState, metric_name
from .config import EdgeConfig
from .model import MetricDefinition, MetricUpdate
from .validation import BAD_NO_COMMUNICATION, BAD_OUT_OF_RANGE, Outcome, QualityEventKind

FOLDER = "DataQuality"


class QualityKind(StrEnum):
    BAD_QUALITY = "BadQuality"
    OUT_OF_RANGE = "OutOfRange"
    STALE = "Stale"


SEVERITY = {QualityKind.BAD_QUALITY: 700, QualityKind.OUT_OF_RANGE: 600, QualityKind.STALE: 400}


@dataclass(frozen=True, slots=True)
class QualityTag:
    """What the book needs of one tag: where it lives and which kinds apply to it."""

    device_id: str
    metric: str
    has_range: bool
    has_max_age: bool

    def kinds(self) -> list[QualityKind]:
        return [QualityKind.BAD_QUALITY] + ([QualityKind.OUT_OF_RANGE] if self.has_range else []) + (
            [QualityKind.STALE] if self.has_max_age else [])


def quality_tags(config: EdgeConfig, endpoint: str | None = None) -> list[QualityTag]:
    """The tags of cells (of one endpoint, or all) when ``quality_alarms`` is on; else none."""
    if not config.quality_alarms:
        return []
    tags = config.tags if endpoint is None else config.tags_of(endpoint)
    return [QualityTag(device, t.metric, t.eng_low is not None or t.eng_high is not None, t.max_age_s is not None)
            for t in tags if (device := config.device_id(t)) is not None]


def condition_name(metric: str, kind: QualityKind) -> str:
    """``DataQuality/Filler/Temperature/OutOfRange``-style names (the tag metric path in the middle)."""
    return f"{FOLDER}/{metric}/{kind.value}"


def definitions(tags: Iterable[QualityTag]) -> list[MetricDefinition]:
    """The birth declarations: nine metrics per tag and applicable kind."""
    return [MetricDefinition(device_id=t.device_id, name=metric_name(condition_name(t.metric, kind), suffix),
                             datatype=datatype, description=f"edge data-quality alarm {kind.value} of {t.metric}: "
                                                            f"{suffix}")
            for t in tags for kind in t.kinds() for suffix, datatype in METRICS]


@dataclass(slots=True)
class QualityAlarmStats:
    raised: int = 0
    cleared: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"raised": self.raised, "cleared": self.cleared}


@dataclass(slots=True)
class _Entry:
    tag: QualityTag
    kind: QualityKind
    state: ConditionState = field(default_factory=ConditionState)


class QualityAlarmBook:
    """The data-quality conditions of one source's tags, fed with each validation :class:`Outcome`."""

    def __init__(self, tags: Iterable[QualityTag]) -> None:
        self.stats = QualityAlarmStats()
        self._entries: dict[tuple[str, str, QualityKind], _Entry] = {}
        for tag in tags:
            for kind in tag.kinds():
                self._entries[(tag.device_id, tag.metric, kind)] = _Entry(tag, kind)

    def current(self, device_id: str, now_ms: int) -> list[MetricUpdate]:
        """Every condition of the device as it stands (a birth's values); never-raised ones are
        stated inactive at ``now_ms``."""
        out: list[MetricUpdate] = []
        for entry in self._entries.values():
            if entry.tag.device_id != device_id:
                continue
            if entry.state.timestamp == 0:
                entry.state = ConditionState(severity=SEVERITY[entry.kind], timestamp=now_ms)
            out += self._updates(entry)
        return out

    def observe(self, device_id: str | None, metric: str, outcome: Outcome, now_ms: int) -> list[MetricUpdate]:
        """The alarm changes one validation outcome of a tag makes (none for most)."""
        if device_id is None:
            return []
        out: list[MetricUpdate] = []
        event = outcome.event
        if event is not None and event.kind is QualityEventKind.BAD_START:
            if event.status_code != BAD_NO_COMMUNICATION:
                kind = QualityKind.OUT_OF_RANGE if event.status_code == BAD_OUT_OF_RANGE else QualityKind.BAD_QUALITY
                entry = self._entries.get((device_id, metric, kind)) or self._entries.get(
                    (device_id, metric, QualityKind.BAD_QUALITY))
                if entry is not None:
                    out += self._raise(entry, event.at_ms, f"{metric}: Bad quality (StatusCode "
                                                           f"0x{event.status_code:08X})")
        elif event is not None and event.kind is QualityEventKind.BAD_END:
            for kind in (QualityKind.BAD_QUALITY, QualityKind.OUT_OF_RANGE):
                entry = self._entries.get((device_id, metric, kind))
                if entry is not None and entry.state.active:
                    out += self._clear(entry, event.at_ms, f"{metric}: Good again after {event.duration_ms} ms "
                                                           f"(last StatusCode 0x{event.status_code:08X})")
        update = outcome.update
        stale = self._entries.get((device_id, metric, QualityKind.STALE))
        if stale is not None and update is not None:
            reason = update.properties.get(PROP_QUALITY_REASON) if update.properties else None
            if reason is not None and reason.value == QualityReason.MAX_AGE.value:
                if not stale.state.active:
                    out += self._raise(stale, update.timestamp, f"{metric}: no sample within max_age_s (stale)")
            elif stale.state.active:
                out += self._clear(stale, now_ms, f"{metric}: samples again")
        return out

    def _raise(self, entry: _Entry, at_ms: int, message: str) -> list[MetricUpdate]:
        if entry.state.active:
            return []
        self.stats.raised += 1
        entry.state = ConditionState(active=True, retain=True, severity=SEVERITY[entry.kind], message=message,
                                     state=entry.kind.value, event_id=os.urandom(16).hex(), timestamp=at_ms)
        return self._updates(entry)

    def _clear(self, entry: _Entry, at_ms: int, message: str) -> list[MetricUpdate]:
        self.stats.cleared += 1
        entry.state = ConditionState(severity=SEVERITY[entry.kind], message=message, event_id=os.urandom(16).hex(),
                                     timestamp=max(at_ms, entry.state.timestamp))
        return self._updates(entry)

    def _updates(self, entry: _Entry) -> list[MetricUpdate]:
        name = condition_name(entry.tag.metric, entry.kind)
        st = entry.state
        return [MetricUpdate(entry.tag.device_id, metric_name(name, suffix), value, st.timestamp)
                for (suffix, _), value in zip(METRICS, st.values(), strict=True)]
