"""From a raw OPC UA sample to a Sparkplug metric update, or a reason not to send one. No I/O.

Rules, in the order they apply (wire conventions: uns/conventions.py). Whenever the edge
decides a quality itself the update names it in ``QualityReason`` (and ``RawValue`` when the value
is withheld), so a broken sensor never looks like a healthy Good value (docs/data-quality.md):

1. Severity of the StatusCode (two top bits). **Bad** → ``is_null`` update with ``Quality`` 0, the
   raw ``StatusCode`` (UInt32) and reason ``bad_status``; the first Bad sample opens a *Bad
   episode* (a ``BAD_START`` event), the first non-Bad sample closes it (``BAD_END`` with its
   duration). A repeat of the same Bad code is a duplicate. Bad values never go through range,
   deadband or scaling: there is no value. :meth:`TagValidator.comm_lost` is the edge's own Bad
   (``BadNoCommunication``, reason ``comm_lost``) when the OPC UA session is gone.
2. The raw value is coerced to the tag's Sparkplug datatype (numbers, bool, str, datetime → ms);
   what cannot be coerced is dropped as ``TYPE_MISMATCH``. Good with a null variant is an
   explicit ``is_null`` with no Quality property (e.g. an end time not reached yet).
3. Numeric values are scaled ``y = x * scale + offset`` (or a named unit conversion); integer
   datatypes round the result; a result outside the datatype's range is ``TYPE_RANGE``.
4. Outside the engineering range ``[eng_low, eng_high]`` (after scaling), per ``on_out_of_range``:
   ``bad`` (default) → Bad ``BadOutOfRange`` with reason ``out_of_range`` and ``RawValue`` (a Bad
   episode like 1); ``clamp`` → the limit, Uncertain ``UncertainEngineeringUnitsExceeded`` (NaN
   is Bad); ``drop`` → ``OUT_OF_RANGE`` drop. Counted either way; logged once per run, then at
   10, 100, 1000 ... in a row.
5. Timestamp = SourceTimestamp, else ServerTimestamp, else now. A SourceTimestamp more than
   ``future_tolerance_ms`` ahead of our clock keeps its value and gets ``FutureTimestamp`` = true;
   one older than ``max_source_age_ms`` on a live change (not on a read at connect: an unchanged
   value is legitimately old) gets ``OldTimestamp``; both make the sample Uncertain with reason
   ``future_timestamp`` / ``old_timestamp``. The next sample with a sane clock is plain again.
6. Duplicate = same value, same status and same source timestamp as the last update sent.
7. Deadband (numeric, engineering units): with the status unchanged, ``|v − last| <= deadband`` is
   dropped; a status change always passes (as OPC UA's DataChangeFilter does).
8. Uncertain and non-zero Good codes carry a ``StatusCode`` property; the first plain value after a
   Bad episode or any degraded update carries ``Quality`` 192 explicitly so hosts that cache
   properties recover, and is never suppressed by 6 or 7.

:meth:`TagValidator.check_age`, called every second while connected: no sample for ``max_age_s``
→ STALE (value kept, ``Quality`` 500, reason ``max_age``) until the next sample; the value unchanged
for ``frozen_after_s`` → Uncertain (value kept, reason ``frozen``) until it changes.

``force=True`` (a birth needs every current value) skips 6 and 7 and the old-timestamp check.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from edge_node.errors import EdgeError
from uns.conventions import (
    PROP_FUTURE_TIMESTAMP,
    PROP_OLD_TIMESTAMP,
    PROP_QUALITY,
    PROP_QUALITY_REASON,
    PROP_RAW_VALUE,
    PROP_STATUS_CODE,
    Quality,
    QualityReason,
    status_code_severity,
)
from uns.sparkplug.datatypes import INT_RANGES, DataType
from uns.sparkplug.model import QUALITY_BAD, QUALITY_GOOD, QUALITY_STALE, DataSet, PropertySet, PropertyValue, Template

from .config import NUMERIC_TAG_TYPES, OutOfRangeAction, TagConfig
from .model import MetricUpdate

log = logging.getLogger(__name__)

#: StatusCodes the edge node itself puts on values (OPC UA Part 4 §7.39)
BAD_NO_COMMUNICATION = 0x80310000
BAD_NODE_ID_UNKNOWN = 0x80340000
BAD_WAITING_FOR_INITIAL_DATA = 0x80320000
BAD_OUT_OF_RANGE = 0x803C0000
UNCERTAIN = 0x40000000
UNCERTAIN_LAST_USABLE_VALUE = 0x40900000
UNCERTAIN_SENSOR_NOT_ACCURATE = 0x40930000
UNCERTAIN_ENGINEERING_UNITS_EXCEEDED = 0x40940000

#: a SourceTimestamp older than this (one day) on a live change is flagged, unless configured
DEFAULT_MAX_SOURCE_AGE_MS = 86_400_000

#: what :meth:`TagValidator._check_range` returns when the sample became a Bad update or a drop
_WITHHELD = object()
#: ``TagValidator._seen_value`` before the first value: unequal to every value, so the first one is a change
_UNSEEN = object()


class RawSample(NamedTuple):
    """One OPC UA DataValue, library-neutral: timestamps in ms since the epoch (UTC).

    A NamedTuple, not a frozen dataclass: one is built per OPC UA change, and at 20,000 changes/s
    the dataclass's ``object.__setattr__`` per field cost ~1 µs each (edge_node.opcua.notifications)."""

    value: Any
    status_code: int = 0
    source_ts_ms: int | None = None
    server_ts_ms: int | None = None


class DropReason(StrEnum):
    OUT_OF_RANGE = "out_of_range"
    DUPLICATE = "duplicate"
    DEADBAND = "deadband"
    TYPE_MISMATCH = "type_mismatch"
    TYPE_RANGE = "type_range"


@dataclass(frozen=True, slots=True)
class Drop:
    reason: DropReason
    detail: str
    #: the caller should log this one (first of a run, then every power of ten)
    log: bool = False


class QualityEventKind(StrEnum):
    BAD_START = "bad_start"
    BAD_END = "bad_end"


@dataclass(frozen=True, slots=True)
class QualityEvent:
    """Start or end of a Bad-quality episode of one tag (what an operator wants in the log)."""

    kind: QualityEventKind
    device_id: str | None
    metric: str
    status_code: int
    at_ms: int
    started_ms: int
    #: set on BAD_END
    duration_ms: int | None = None

    def describe(self) -> str:
        where = f"{self.device_id}/{self.metric}" if self.device_id else self.metric
        if self.kind is QualityEventKind.BAD_START:
            return f"{where}: Bad quality started (StatusCode 0x{self.status_code:08X})"
        return (f"{where}: Bad quality ended after {self.duration_ms} ms "
                f"(last StatusCode 0x{self.status_code:08X})")


@dataclass(slots=True)
class Outcome:
    """What one sample became: an update to send, a drop, and possibly a quality event (or both)."""

    update: MetricUpdate | None = None
    drop: Drop | None = None
    event: QualityEvent | None = None


@dataclass(slots=True)
class ValidationStats:
    """Counters shared by all tags of an edge node (exported via the app's stats)."""

    accepted: int = 0
    bad: int = 0
    uncertain: int = 0
    future_timestamps: int = 0
    old_timestamps: int = 0
    bad_episodes: int = 0
    #: samples outside the engineering range, whatever ``on_out_of_range`` made of them
    out_of_range: int = 0
    #: tags turned STALE by ``max_age_s`` / UNCERTAIN by ``frozen_after_s``
    stale: int = 0
    frozen: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {reason.value: 0 for reason in DropReason})

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "bad": self.bad, "uncertain": self.uncertain,
                "future_timestamps": self.future_timestamps, "old_timestamps": self.old_timestamps,
                "bad_episodes": self.bad_episodes, "out_of_range": self.out_of_range, "stale": self.stale,
                "frozen": self.frozen, "dropped": dict(self.dropped)}


class CoercionError(EdgeError, ValueError):
    """A raw value does not fit the tag's datatype."""


def _to_ms(value: _dt.datetime) -> int:
    if value.tzinfo is None:  # OPC UA DateTime is UTC; asyncua hands out naive UTC datetimes
        value = value.replace(tzinfo=_dt.UTC)
    return int(value.timestamp() * 1000)


#: OPC UA's 'null' DateTime (1601-01-01, the start of its epoch) in ms since the Unix epoch
_OPCUA_NULL_MS = -11_644_473_600_000


def datetime_to_ms(value: _dt.datetime | None) -> int | None:
    """An OPC UA timestamp as ms since the epoch; None and the OPC UA 'null' date (1601) → None.

    A real date before 1970 stays negative: it is a wrong clock to flag (``OldTimestamp``), not a
    missing timestamp; :meth:`TagValidator.process` then stamps the metric with the ServerTimestamp
    (Sparkplug timestamps are unsigned)."""
    if value is None:
        return None
    ms = _to_ms(value)
    return ms if ms > _OPCUA_NULL_MS else None


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    raise CoercionError(f"{type(value).__name__} {value!r} is not a number")


def coerce(value: Any, datatype: DataType) -> Any:
    """A raw OPC UA value as the Python value of a Sparkplug scalar ``datatype`` (before scaling)."""
    if datatype is DataType.Boolean:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise CoercionError(f"{type(value).__name__} {value!r} is not a Boolean")
    if datatype in NUMERIC_TAG_TYPES:
        return _number(value)
    if datatype in (DataType.String, DataType.Text):
        if isinstance(value, str):
            return value
        text = getattr(value, "Text", None)  # LocalizedText
        if isinstance(text, str) or (text is None and hasattr(value, "Locale")):
            return text or ""
        if isinstance(value, bool | int | float):
            return str(value)
        raise CoercionError(f"{type(value).__name__} is not a String")
    if datatype is DataType.DateTime:
        if isinstance(value, _dt.datetime):
            return _to_ms(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise CoercionError(f"{type(value).__name__} {value!r} is not a DateTime")
    if datatype is DataType.UUID:
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                raise CoercionError(f"{value!r} is not a UUID") from None
        raise CoercionError(f"{type(value).__name__} is not a UUID")
    if datatype is DataType.Template or datatype is DataType.DataSet:
        # structured tags: the source mapped the OPC UA structure already (edge_node.templates)
        if isinstance(value, Template | DataSet):
            return value
        raise CoercionError(f"{type(value).__name__} is not a mapped {datatype.name}")
    raise CoercionError(f"datatype {datatype.name} is not supported")


def _positive(ms: int | None) -> int | None:
    return ms if ms is not None and ms > 0 else None


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


class TagValidator:
    """The validation state machine of one tag (last value sent, Bad episode, degraded state, drop runs)."""

    __slots__ = ("tag", "device_id", "name", "stats", "future_tolerance_ms", "max_source_age_ms", "_scale",
                 "_offset", "_deadband", "_integer", "_numeric", "_has_last", "_last_value", "_last_status",
                 "_last_source_ts", "_bad_since", "_bad_code", "_recovered", "_range_run", "_degraded",
                 "_max_age_ms", "_frozen_ms", "_heard_ms", "_changed_ms", "_seen_value")

    def __init__(self, tag: TagConfig, device_id: str | None, *, stats: ValidationStats | None = None,
                 future_tolerance_ms: int = 1000, max_source_age_ms: int = DEFAULT_MAX_SOURCE_AGE_MS) -> None:
        self.tag = tag
        self.device_id = device_id
        self.name = tag.metric
        self.stats = stats if stats is not None else ValidationStats()
        self.future_tolerance_ms = future_tolerance_ms
        self.max_source_age_ms = (int(tag.max_source_age_s * 1000) if tag.max_source_age_s is not None
                                  else max_source_age_ms)
        self._max_age_ms = int(tag.max_age_s * 1000) if tag.max_age_s is not None else None
        self._frozen_ms = int(tag.frozen_after_s * 1000) if tag.frozen_after_s is not None else None
        self._scale, self._offset = tag.linear
        self._deadband = tag.deadband_abs
        self._integer = tag.datatype.is_integer
        self._numeric = tag.datatype in NUMERIC_TAG_TYPES
        self._bad_since: int | None = None
        self._bad_code = 0
        self._recovered = False
        self._range_run = 0
        #: the reason of the degraded state last published (None = the last update was a plain value)
        self._degraded: QualityReason | None = None
        #: when a sample of any kind was last heard (max_age) and when the value last changed (frozen)
        self._heard_ms: int | None = None
        self._changed_ms: int | None = None
        self._seen_value: Any = _UNSEEN
        self.reset()

    def reset(self) -> None:
        """Forget the last value sent (after a reconnect the next value must go out)."""
        self._has_last = False
        self._last_value: Any = None
        self._last_status = -1
        self._last_source_ts: int | None = None
        self._heard_ms = None
        self._changed_ms = None
        if self._degraded is not None and self._bad_since is None:
            self._degraded = None
            self._recovered = True

    @property
    def in_bad_episode(self) -> bool:
        return self._bad_since is not None

    @property
    def degraded(self) -> QualityReason | None:
        """Why the last update published for this tag was not a plain value (None when it was)."""
        return self._degraded

    # -- main entry ---------------------------------------------------------------------------

    def process(self, sample: RawSample, now_ms: int, *, force: bool = False) -> Outcome:
        status = sample.status_code & 0xFFFFFFFF
        source = sample.source_ts_ms
        timestamp = source if source is not None and source > 0 else (_positive(sample.server_ts_ms) or now_ms)
        severity = status_code_severity(status)
        self._heard_ms = now_ms
        if severity is Quality.BAD:
            reason = QualityReason.BAD_STATUS
            return self._bad(sample, status, timestamp, now_ms, force, reason, None)
        outcome = Outcome()
        try:
            value = self._convert(sample.value)
        except CoercionError as exc:
            outcome.drop = self._count_drop(DropReason.TYPE_MISMATCH, f"{self._label()}: {exc}", log=True)
            return outcome
        except OverflowError as exc:
            outcome.drop = self._count_drop(DropReason.TYPE_RANGE, f"{self._label()}: {exc}", log=True)
            return outcome
        props: PropertySet = {}
        if value is not None and self._numeric:
            checked = self._check_range(value, sample, timestamp, now_ms, force, outcome, props)
            if checked is _WITHHELD:
                return outcome
            value = checked
        if self._bad_since is not None:
            outcome.event = self._end_bad(now_ms)
        # frozen detection: when did the value last change (inline: this is the hot path)
        changed = self._seen_value is _UNSEEN or value != self._seen_value
        if changed or self._changed_ms is None:
            self._changed_ms = now_ms
        self._seen_value = value
        if self._degraded is QualityReason.FROZEN:
            if not changed:
                outcome.drop = self._count_drop(DropReason.DUPLICATE, f"{self._label()}: still frozen at {value!r}")
                return outcome
            self._degraded = None  # moving again
            self._recovered = True
        recovering = self._degraded is not None or self._recovered
        if (not force and not recovering and not props and self._has_last and status == self._last_status):
            if value == self._last_value and sample.source_ts_ms is not None \
                    and sample.source_ts_ms == self._last_source_ts:
                outcome.drop = self._count_drop(DropReason.DUPLICATE, f"{self._label()}: same value and timestamp")
                return outcome
            if (self._deadband is not None and value is not None and self._last_value is not None
                    and abs(value - self._last_value) <= self._deadband):
                outcome.drop = self._count_drop(
                    DropReason.DEADBAND, f"{self._label()}: |{value} - {self._last_value}| <= {self._deadband}")
                return outcome
        if status != 0:
            props.setdefault(PROP_STATUS_CODE, PropertyValue(DataType.UInt32, status))
        if source is not None and (source > now_ms + self.future_tolerance_ms
                                   or (not force and source < now_ms - self.max_source_age_ms)):
            reason = self._flag_timestamp(sample, now_ms, props, force)
            if reason is not None and PROP_QUALITY_REASON not in props:
                props[PROP_QUALITY_REASON] = PropertyValue(DataType.String, reason.value)
                if severity is Quality.GOOD:
                    props[PROP_STATUS_CODE] = PropertyValue(DataType.UInt32, UNCERTAIN)
        degraded = None
        if props:
            code = props.get(PROP_STATUS_CODE)
            if code is not None and status_code_severity(code.value) is Quality.UNCERTAIN:
                self.stats.uncertain += 1
            degraded = props.get(PROP_QUALITY_REASON)
        if degraded is None:
            if recovering:
                props[PROP_QUALITY] = PropertyValue(DataType.Int32, QUALITY_GOOD)
            self._degraded = None
        else:
            self._degraded = QualityReason(degraded.value)
        self._recovered = False
        outcome.update = MetricUpdate(device_id=self.device_id, name=self.name, value=value, timestamp=timestamp,
                                      is_null=value is None, properties=props or None)
        self._remember(value, status, sample.source_ts_ms)
        self.stats.accepted += 1
        return outcome

    def comm_lost(self, now_ms: int) -> Outcome:
        """The edge lost the source of this tag: Bad ``BadNoCommunication`` with reason ``comm_lost``."""
        self._heard_ms = None
        return self._bad(RawSample(None, BAD_NO_COMMUNICATION), BAD_NO_COMMUNICATION, now_ms, now_ms, False,
                         QualityReason.COMM_LOST, None)

    def check_age(self, now_ms: int) -> Outcome:
        """Called periodically while the source is connected: STALE after ``max_age_s`` without a
        sample, UNCERTAIN after ``frozen_after_s`` without a change. The value is kept; the marker
        is stamped ``now_ms`` (it is the edge's statement, not a sample)."""
        outcome = Outcome()
        if not self._has_last or self._bad_since is not None or self._last_value is None:
            return outcome
        if self._heard_ms is None:
            self._heard_ms = now_ms
        if self._changed_ms is None:
            self._changed_ms = now_ms
        reason: QualityReason | None = None
        props: PropertySet = {}
        if (self._max_age_ms is not None and self._degraded is not QualityReason.MAX_AGE
                and now_ms - self._heard_ms >= self._max_age_ms):
            reason = QualityReason.MAX_AGE
            props[PROP_QUALITY] = PropertyValue(DataType.Int32, QUALITY_STALE)
            props[PROP_STATUS_CODE] = PropertyValue(DataType.UInt32, UNCERTAIN_LAST_USABLE_VALUE)
            self.stats.stale += 1
        elif (self._frozen_ms is not None and self._degraded is None
                and now_ms - self._changed_ms >= self._frozen_ms):
            reason = QualityReason.FROZEN
            props[PROP_STATUS_CODE] = PropertyValue(DataType.UInt32, UNCERTAIN_SENSOR_NOT_ACCURATE)
            self.stats.frozen += 1
        if reason is None:
            return outcome
        props[PROP_QUALITY_REASON] = PropertyValue(DataType.String, reason.value)
        self._degraded = reason
        self.stats.uncertain += 1
        outcome.update = MetricUpdate(device_id=self.device_id, name=self.name, value=self._last_value,
                                      timestamp=now_ms, properties=props)
        self.stats.accepted += 1
        return outcome

    # -- pieces -------------------------------------------------------------------------------

    def _end_bad(self, now_ms: int) -> QualityEvent:
        assert self._bad_since is not None
        event = QualityEvent(QualityEventKind.BAD_END, self.device_id, self.name, self._bad_code,
                             now_ms, self._bad_since, now_ms - self._bad_since)
        self._bad_since = None
        self._recovered = True
        self._degraded = None
        self.reset()
        return event

    def _bad(self, sample: RawSample, status: int, timestamp: int, now_ms: int, force: bool,
             reason: QualityReason, raw: str | None) -> Outcome:
        outcome = Outcome()
        if self._bad_since is None:
            self._bad_since = now_ms
            self.stats.bad_episodes += 1
            outcome.event = QualityEvent(QualityEventKind.BAD_START, self.device_id, self.name, status,
                                         now_ms, now_ms)
        elif not force and self._has_last and status == self._last_status and self._degraded is reason:
            outcome.drop = self._count_drop(DropReason.DUPLICATE, f"{self._label()}: still Bad 0x{status:08X}")
            return outcome
        self._bad_code = status
        props: PropertySet = {
            PROP_QUALITY: PropertyValue(DataType.Int32, QUALITY_BAD),
            PROP_STATUS_CODE: PropertyValue(DataType.UInt32, status),
            PROP_QUALITY_REASON: PropertyValue(DataType.String, reason.value),
        }
        if raw is not None:
            props[PROP_RAW_VALUE] = PropertyValue(DataType.String, raw)
        self._flag_timestamp(sample, now_ms, props, force)
        outcome.update = MetricUpdate(device_id=self.device_id, name=self.name, value=None, timestamp=timestamp,
                                      is_null=True, properties=props)
        self._remember(None, status, sample.source_ts_ms)
        self._recovered = False
        self._degraded = reason
        self.stats.bad += 1
        self.stats.accepted += 1
        return outcome

    def _convert(self, raw: Any) -> Any:
        if raw is None:
            return None
        value = coerce(raw, self.tag.datatype)
        if not self._numeric:
            return value
        if self._scale != 1.0 or self._offset != 0.0:
            value = value * self._scale + self._offset
        if self._integer:
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise OverflowError(f"{value} does not fit {self.tag.datatype.name}")
                value = round(value)
            low, high, _bits = INT_RANGES[self.tag.datatype]
            if not low <= value <= high:
                raise OverflowError(f"{value} does not fit {self.tag.datatype.name} [{low}, {high}]")
        elif self.tag.datatype in (DataType.Float, DataType.Double):
            value = float(value)
        return value

    def _check_range(self, value: float, sample: RawSample, timestamp: int, now_ms: int, force: bool,
                     outcome: Outcome, props: PropertySet) -> Any:
        """``value`` when in range; else what ``on_out_of_range`` makes of it: the clamped value (with
        its Uncertain properties put in ``props``), or :data:`_WITHHELD` after setting ``outcome``."""
        low, high = self.tag.eng_low, self.tag.eng_high
        if low is None and high is None:
            return value
        nan = isinstance(value, float) and math.isnan(value)
        if not (nan or (low is not None and value < low) or (high is not None and value > high)):
            self._range_run = 0
            return value
        self._range_run += 1
        self.stats.out_of_range += 1
        detail = (f"{self._label()}: {value} outside engineering range [{low}, {high}]"
                  + (f" ({self._range_run} in a row)" if self._range_run > 1 else ""))
        log_it = _is_power_of_ten(self._range_run)
        action = self.tag.on_out_of_range
        if action is OutOfRangeAction.DROP:
            outcome.drop = self._count_drop(DropReason.OUT_OF_RANGE, detail, log=log_it)
            return _WITHHELD
        raw = repr(sample.value)
        if action is OutOfRangeAction.CLAMP and not nan:
            props[PROP_STATUS_CODE] = PropertyValue(DataType.UInt32, UNCERTAIN_ENGINEERING_UNITS_EXCEEDED)
            props[PROP_QUALITY_REASON] = PropertyValue(DataType.String, QualityReason.OUT_OF_RANGE.value)
            props[PROP_RAW_VALUE] = PropertyValue(DataType.String, raw)
            clamped = min(max(value, low if low is not None else value), high if high is not None else value)
            return round(clamped) if self._integer else clamped
        bad = self._bad(sample, BAD_OUT_OF_RANGE, timestamp, now_ms, force, QualityReason.OUT_OF_RANGE, raw)
        outcome.update, outcome.drop, outcome.event = bad.update, bad.drop, bad.event
        if log_it and outcome.drop is None:
            log.warning("out of range, published as Bad: %s", detail)
        return _WITHHELD

    def _flag_timestamp(self, sample: RawSample, now_ms: int, props: PropertySet,
                        force: bool) -> QualityReason | None:
        """Flag a SourceTimestamp ahead of our clock, or (live changes only: a value read at connect
        may legitimately be as old as its last change) older than ``max_source_age_ms``."""
        source = sample.source_ts_ms
        if source is None:
            return None
        if source > now_ms + self.future_tolerance_ms:
            props[PROP_FUTURE_TIMESTAMP] = PropertyValue(DataType.Boolean, True)
            self.stats.future_timestamps += 1
            return QualityReason.FUTURE_TIMESTAMP
        if not force and source < now_ms - self.max_source_age_ms:
            props[PROP_OLD_TIMESTAMP] = PropertyValue(DataType.Boolean, True)
            self.stats.old_timestamps += 1
            return QualityReason.OLD_TIMESTAMP
        return None

    def _remember(self, value: Any, status: int, source_ts: int | None) -> None:
        self._has_last = True
        self._last_value = value
        self._last_status = status
        self._last_source_ts = source_ts

    def _count_drop(self, reason: DropReason, detail: str, *, log: bool = False) -> Drop:
        self.stats.dropped[reason.value] = self.stats.dropped.get(reason.value, 0) + 1
        return Drop(reason, detail, log)

    def _label(self) -> str:
        return f"{self.device_id}/{self.name}" if self.device_id else self.name

