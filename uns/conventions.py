"""Wire conventions shared by the edge node and the host: property keys and quality mapping.

Decided once (see README "Wire conventions"):

* OPC UA Good → value; Uncertain → value plus ``StatusCode`` property; Bad → ``is_null``, ``Quality``
  property 0 and the raw ``StatusCode`` (Sparkplug 3.0 has no Uncertain ``Quality``; docs/data-quality.md).
* Birth metrics carry their engineering unit and range as properties with Ignition's keys
  (``engUnit``, ``engLow``, ``engHigh``) so Ignition and other hosts show them; the description
  travels in ``metadata.description``.
* A source timestamp in the future is kept as the metric timestamp and flagged with the
  ``FutureTimestamp`` Boolean property; one older than the configured bound with ``OldTimestamp``.
* Whenever the edge degrades a metric's quality itself it says why in the ``QualityReason`` string
  property (one of :class:`QualityReason`) and, when it withheld the value, the raw OPC UA value as
  a string in ``RawValue``. STALE on the wire is ``Quality`` 500 (a value kept, known to be old);
  UNCERTAIN is an Uncertain ``StatusCode`` with the value kept; BAD is ``is_null`` + ``Quality`` 0.
"""

from __future__ import annotations

from enum import StrEnum

# Sparkplug's own metric names live in uns.sparkplug.control; re-exported here for the callers
# that read every wire convention from one import
from uns.sparkplug.control import BDSEQ, NODE_NEXT_SERVER, NODE_REBIRTH
from uns.sparkplug.model import QUALITY_BAD, QUALITY_GOOD, QUALITY_STALE, Metric, PropertySet

PROP_QUALITY = "Quality"
PROP_STATUS_CODE = "StatusCode"
PROP_ENG_UNIT = "engUnit"
PROP_ENG_LOW = "engLow"
PROP_ENG_HIGH = "engHigh"
PROP_FUTURE_TIMESTAMP = "FutureTimestamp"
PROP_OLD_TIMESTAMP = "OldTimestamp"
PROP_QUALITY_REASON = "QualityReason"
PROP_RAW_VALUE = "RawValue"



class Quality(StrEnum):
    """Quality of a UNS value, as shown to plant apps."""

    GOOD = "GOOD"
    UNCERTAIN = "UNCERTAIN"
    BAD = "BAD"
    STALE = "STALE"


class QualityReason(StrEnum):
    """Why the edge degraded a metric's quality (the ``QualityReason`` property, the UNS ``reason``)."""

    OUT_OF_RANGE = "out_of_range"
    MAX_AGE = "max_age"
    FROZEN = "frozen"
    FUTURE_TIMESTAMP = "future_timestamp"
    OLD_TIMESTAMP = "old_timestamp"
    BAD_STATUS = "bad_status"
    COMM_LOST = "comm_lost"


def quality_reason(metric: Metric) -> str | None:
    """The ``QualityReason`` property of a decoded metric, if it carries one (any string is kept:
    a newer edge may send a reason this host does not know yet)."""
    prop = metric.properties.get(PROP_QUALITY_REASON) if metric.properties else None
    return prop.value if prop is not None and isinstance(prop.value, str) and prop.value else None


def raw_value(metric: Metric) -> str | None:
    """The ``RawValue`` property of a decoded metric (the value the edge withheld), if any."""
    prop = metric.properties.get(PROP_RAW_VALUE) if metric.properties else None
    return prop.value if prop is not None and isinstance(prop.value, str) else None


def is_quality_marker(properties: PropertySet | None) -> bool:
    """True for a value that is the edge's own statement about a tag (Bad, stale, a degraded quality,
    a flagged timestamp) rather than a trustworthy newer sample: whatever follows it replaces it,
    even with an older source timestamp (a recovery value keeps its real source time)."""
    if not properties:
        return False
    if PROP_QUALITY_REASON in properties:
        return True
    for flag in (PROP_FUTURE_TIMESTAMP, PROP_OLD_TIMESTAMP):
        prop = properties.get(flag)
        if prop is not None and prop.value is True:
            return True
    quality = properties.get(PROP_QUALITY)
    return quality is not None and quality.value in (QUALITY_BAD, QUALITY_STALE)


def status_code_severity(status_code: int) -> Quality:
    """OPC UA StatusCode severity from its two top bits: 00 Good, 01 Uncertain, 10/11 Bad."""
    severity = (status_code >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def metric_quality(metric: Metric) -> Quality:
    """The UNS quality of a decoded Sparkplug metric."""
    props = metric.properties
    if props:
        quality_prop = props.get(PROP_QUALITY)
        if quality_prop is not None and isinstance(quality_prop.value, int):
            if quality_prop.value == QUALITY_BAD:
                return Quality.BAD
            if quality_prop.value == QUALITY_STALE:
                return Quality.STALE
        status = props.get(PROP_STATUS_CODE)
        if status is not None and isinstance(status.value, int):
            severity = status_code_severity(status.value)
            if severity is not Quality.GOOD:
                return severity
    if metric.is_null and props and PROP_QUALITY in props:
        return Quality.BAD
    return Quality.GOOD


__all__ = [
    "BDSEQ", "NODE_NEXT_SERVER", "NODE_REBIRTH", "PROP_ENG_HIGH", "PROP_ENG_LOW", "PROP_ENG_UNIT",
    "PROP_FUTURE_TIMESTAMP", "PROP_OLD_TIMESTAMP", "PROP_QUALITY", "PROP_QUALITY_REASON", "PROP_RAW_VALUE",
    "PROP_STATUS_CODE", "QUALITY_BAD", "QUALITY_GOOD", "QUALITY_STALE", "Quality", "QualityReason",
    "is_quality_marker", "metric_quality", "quality_reason", "raw_value", "status_code_severity",
]
