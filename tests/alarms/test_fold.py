"""The pure folding of ``Alarms/<Name>/<field>`` metrics into condition states (mes_adapter.alarms.fold)."""

from __future__ import annotations

from typing import Any

from mes_adapter.alarms.fold import FIELDS, ConditionFolder, ConditionKey, condition_field

KEY = ConditionKey("acme:plant1", "packaging:line1", "Filler", "TemperatureAlarm")


def event(folder: ConditionFolder, ts: int, *, stale: bool = False, **values: Any) -> None:
    fields = {"Active": True, "Acked": False, "Confirmed": True, "Retain": True, "Severity": 500,
              "Message": "High", "State": "High", "ConditionId": "ns=2;s=Line1/Filler/TemperatureAlarm",
              "EventId": f"{ts:032x}"} | values
    for name in FIELDS:
        folder.observe(KEY, name, fields[name], stale=stale, source_ts_ms=ts, received_ms=ts + 5)


def test_two_events_of_one_condition_in_one_drain_are_two_states() -> None:
    # High, then HighHigh 50 ms later, both drained at once: neither may be lost (one journal row each)
    folder = ConditionFolder()
    event(folder, 1000)
    event(folder, 1050, Severity=800, State="HighHigh", Message="HighHigh")
    changed = folder.flush()
    assert [(s.state, s.severity, s.event_id, s.source_ts_ms) for _, s in changed] == [
        ("High", 500, f"{1000:032x}", 1000), ("HighHigh", 800, f"{1050:032x}", 1050)]


def test_events_of_one_condition_with_the_same_source_time_are_each_a_state() -> None:
    # a flood raises and clears a condition several times inside one simulator tick: the events share
    # their source Time and differ in EventId; each is its own journal row (none folded away)
    folder = ConditionFolder()
    for n in range(5):
        event(folder, 1000, Active=n % 2 == 0, EventId=f"{n:032x}")
    changed = folder.flush()
    assert [(s.active, s.event_id, s.source_ts_ms) for _, s in changed] == [
        (n % 2 == 0, f"{n:032x}", 1000) for n in range(5)]
    assert folder.events_seen == 5


def test_a_rebirth_restating_the_same_event_is_no_change_and_a_death_only_marks_it_stale() -> None:
    folder = ConditionFolder()
    event(folder, 1000)
    assert len(folder.flush()) == 1
    event(folder, 2000, EventId=f"{1000:032x}")  # the birth: same EventId and states, a new timestamp
    assert folder.flush() == []
    for name in FIELDS:  # death: the host turns every metric STALE (value kept)
        folder.observe(KEY, name, None, stale=True, source_ts_ms=3000, received_ms=3000)
    [(_, stale)] = folder.flush()
    assert (stale.stale, stale.active, stale.state, stale.event_id, stale.source_ts_ms) == (
        True, True, "High", f"{1000:032x}", 2000)  # source time of the last statement (the birth)


def test_only_the_nine_condition_metrics_are_fields() -> None:
    assert condition_field("Alarms/Jam/Active") == ("Jam", "Active")
    assert condition_field("Alarms/Jam/Comment") is None
    assert condition_field("Alarms/Jam") is None
    assert condition_field("Temperature") is None
    assert condition_field("Line/Alarms/Jam/Active") is None
    # the edge's data-quality alarms: the tag's metric path inside the name
    assert condition_field("Alarms/DataQuality/Dosing/Temperature/OutOfRange/Active") == (
        "DataQuality/Dosing/Temperature/OutOfRange", "Active")
    assert condition_field("Alarms//Jam/Active") is None
