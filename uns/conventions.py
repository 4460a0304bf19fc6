"""Wire conventions shared by the edge node and the host: property keys and quality mapping.

Decided once (see README "Wire conventions"):

* OPC UA Good → value; Uncertain → value plus ``StatusCode`` property; Bad → ``is_null``, ``Quality``
  property 0 and the raw ``StatusCode`` (reference/domain.md §5.4).
* Birth metrics carry their engineering unit and range as properties with Ignition's keys
  (``engUnit``, ``engLow``, ``engHigh``) so Ignition and other hosts show them; the description
  travels in ``metadata.description``.
* A source timestamp in the future is kept as the metric timestamp and flagged with the
  ``FutureTimestamp`` Boolean property.
"""

from __future__ import annotations

from enum import StrEnum

from uns.sparkplug.model import QUALITY_BAD, QUALITY_GOOD, QUALITY_STALE, Metric

PROP_QUALITY = "Quality"
PROP_STATUS_CODE = "StatusCode"
PROP_ENG_UNIT = "engUnit"
PROP_ENG_LOW = "engLow"
PROP_ENG_HIGH = "engHigh"
PROP_FUTURE_TIMESTAMP = "FutureTimestamp"

BDSEQ = "bdSeq"
NODE_REBIRTH = "Node Control/Rebirth"
#: optional in Sparkplug 3.0 (spec §6.4.x examples): true in an NCMD sends the edge to its next broker
NODE_NEXT_SERVER = "Node Control/Next Server"


class Quality(StrEnum):
    """Quality of a UNS value, as shown to plant apps."""

    GOOD = "GOOD"
    UNCERTAIN = "UNCERTAIN"
    BAD = "BAD"
    STALE = "STALE"


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
    "BDSEQ", "NODE_NEXT_SERVER", "NODE_REBIRTH", "PROP_ENG_HIGH", "PROP_ENG_LOW", "PROP_ENG_UNIT", "PROP_FUTURE_TIMESTAMP",
    "PROP_QUALITY", "PROP_STATUS_CODE", "QUALITY_BAD", "QUALITY_GOOD", "QUALITY_STALE", "Quality",
    "metric_quality", "status_code_severity",
]
