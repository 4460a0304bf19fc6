"""The edge's data-quality events as alarms (edge_node.quality_alarms): pure state, exact values."""

from __future__ import annotations

from edge_node.model import MetricUpdate
from edge_node.quality_alarms import QualityAlarmBook, QualityTag, definitions
from edge_node.validation import (
    BAD_NO_COMMUNICATION,
    BAD_OUT_OF_RANGE,
    Outcome,
    QualityEvent,
    QualityEventKind,
)
from uns.conventions import PROP_QUALITY_REASON, QualityReason
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import PropertyValue

TAG = QualityTag("Filler", "Dosing/Temperature", has_range=True, has_max_age=True)
BAD = 0x80000000


def fields(updates: list[MetricUpdate], kind: str) -> dict[str, object]:
    prefix = f"Alarms/DataQuality/Dosing/Temperature/{kind}/"
    return {u.name.removeprefix(prefix): u.value for u in updates if u.name.startswith(prefix)}


def event(kind: QualityEventKind, status: int, at: int, duration: int | None = None) -> Outcome:
    return Outcome(event=QualityEvent(kind, "Filler", TAG.metric, status, at, at - (duration or 0), duration))


def test_declared_metrics_follow_the_kinds_that_apply() -> None:
    plain = QualityTag("Filler", "Speed", has_range=False, has_max_age=False)
    names = [d.name for d in definitions([TAG, plain])]
    assert len(names) == 9 * 4
    assert names[:2] == ["Alarms/DataQuality/Dosing/Temperature/BadQuality/Active",
                         "Alarms/DataQuality/Dosing/Temperature/BadQuality/Acked"]
    assert {n.split("/")[-2] for n in names if "Speed" in n} == {"BadQuality"}


def test_bad_episode_out_of_range_and_stale_raise_and_clear_with_exact_states() -> None:
    book = QualityAlarmBook([TAG])
    born = book.current("Filler", 1000)
    assert fields(born, "OutOfRange") == {"Active": False, "Acked": True, "Confirmed": True, "Retain": False,
                                          "Severity": 600, "Message": "", "State": "", "ConditionId": "",
                                          "EventId": ""}
    raised = book.observe("Filler", TAG.metric, event(QualityEventKind.BAD_START, BAD_OUT_OF_RANGE, 2000), 2000)
    f = fields(raised, "OutOfRange")
    assert (f["Active"], f["Retain"], f["Acked"], f["State"], f["Severity"], len(str(f["EventId"]))) == (
        True, True, True, "OutOfRange", 600, 32)
    assert f["Message"] == "Dosing/Temperature: Bad quality (StatusCode 0x803C0000)"
    assert {u.timestamp for u in raised} == {2000} and len(raised) == 9
    cleared = book.observe("Filler", TAG.metric, event(QualityEventKind.BAD_END, BAD_OUT_OF_RANGE, 2500, 500), 2500)
    c = fields(cleared, "OutOfRange")
    assert (c["Active"], c["Retain"], c["State"], c["Message"]) == (
        False, False, "", "Dosing/Temperature: Good again after 500 ms (last StatusCode 0x803C0000)")
    assert c["EventId"] != f["EventId"]
    # a Bad status episode is BadQuality; the edge's own comm loss is no alarm (the death says it)
    assert fields(book.observe("Filler", TAG.metric, event(QualityEventKind.BAD_START, BAD, 3000), 3000),
                  "BadQuality")["Active"] is True
    assert book.observe("Filler", TAG.metric, event(QualityEventKind.BAD_END, BAD, 3100, 100), 3100)
    assert book.observe("Filler", TAG.metric, event(QualityEventKind.BAD_START, BAD_NO_COMMUNICATION, 4000),
                        4000) == []
    stale = MetricUpdate("Filler", TAG.metric, 20.0, 5000, properties={
        PROP_QUALITY_REASON: PropertyValue(DataType.String, QualityReason.MAX_AGE.value)})
    s = fields(book.observe("Filler", TAG.metric, Outcome(update=stale), 5000), "Stale")
    assert (s["Active"], s["State"], s["Severity"]) == (True, "Stale", 400)
    assert book.observe("Filler", TAG.metric, Outcome(update=stale), 5100) == []  # still stale: no event
    fresh = MetricUpdate("Filler", TAG.metric, 21.0, 6000)
    assert fields(book.observe("Filler", TAG.metric, Outcome(update=fresh), 6000), "Stale")["Active"] is False
    assert (book.stats.raised, book.stats.cleared) == (3, 3)
