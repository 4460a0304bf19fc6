"""Validation rules (edge_node/validation.py): quality, range, timestamps, duplicates, deadband, scaling.

Sparkplug conventions checked here: ``is_null`` for Bad values and the ``Quality`` property
(tck-id-payloads-propertyset-quality-value-type, tck-id-payloads-propertyset-quality-value-value:
Int32, 0 = BAD, 192 = GOOD) and metric timestamps in ms UTC (tck-id-payloads-timestamp-in-UTC).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from edge_node.config import TagConfig
from edge_node.validation import (
    DropReason,
    QualityEventKind,
    RawSample,
    TagValidator,
    ValidationStats,
    coerce,
    datetime_to_ms,
)
from uns.conventions import PROP_FUTURE_TIMESTAMP, PROP_QUALITY, PROP_QUALITY_REASON, PROP_RAW_VALUE, PROP_STATUS_CODE
from uns.sparkplug.datatypes import DataType

NOW = 1_700_000_000_000
GOOD, UNCERTAIN_LAST_USABLE, BAD_SENSOR = 0, 0x40900000, 0x808C0000


def validator(**fields: Any) -> TagValidator:
    tag = TagConfig.model_validate({"node_id": "ns=2;s=x", "metric": "Speed", **fields})
    return TagValidator(tag, "Filler", stats=ValidationStats(), future_tolerance_ms=1000)


def test_good_value_uses_source_timestamp_and_has_no_properties() -> None:
    v = validator()
    out = v.process(RawSample(12.5, GOOD, source_ts_ms=NOW - 50, server_ts_ms=NOW - 10), NOW)
    assert out.update is not None and out.drop is None and out.event is None
    assert (out.update.device_id, out.update.name, out.update.value) == ("Filler", "Speed", 12.5)
    assert out.update.timestamp == NOW - 50  # SourceTimestamp, not ServerTimestamp or now
    assert out.update.properties is None and not out.update.is_null


def test_timestamp_falls_back_to_server_then_now() -> None:
    v = validator()
    assert v.process(RawSample(1.0, GOOD, None, NOW - 5), NOW).update.timestamp == NOW - 5  # type: ignore[union-attr]
    assert v.process(RawSample(2.0, GOOD, None, None), NOW).update.timestamp == NOW  # type: ignore[union-attr]


def test_bad_quality_is_null_with_quality_0_and_raw_status_code_and_episode_events() -> None:
    v = validator()
    v.process(RawSample(10.0, GOOD, NOW - 100), NOW - 100)
    out = v.process(RawSample(None, BAD_SENSOR, NOW), NOW)
    update = out.update
    assert update is not None and update.is_null and update.value is None
    assert update.properties is not None
    assert update.properties[PROP_QUALITY].type is DataType.Int32 and update.properties[PROP_QUALITY].value == 0
    assert update.properties[PROP_STATUS_CODE].type is DataType.UInt32
    assert update.properties[PROP_STATUS_CODE].value == BAD_SENSOR
    assert out.event is not None and out.event.kind is QualityEventKind.BAD_START
    assert out.event.status_code == BAD_SENSOR and "started" in out.event.describe()

    # the same Bad again is not news
    again = v.process(RawSample(None, BAD_SENSOR, NOW + 100), NOW + 100)
    assert again.update is None and again.drop is not None and again.drop.reason is DropReason.DUPLICATE
    # a different Bad code is published, same episode
    other = v.process(RawSample(None, 0x808B0000, NOW + 200), NOW + 200)
    assert other.update is not None and other.event is None

    # recovery closes the episode with its duration and says Quality 192 once
    good = v.process(RawSample(11.0, GOOD, NOW + 1000), NOW + 1000)
    assert good.event is not None and good.event.kind is QualityEventKind.BAD_END
    assert good.event.duration_ms == 1000 and good.event.started_ms == NOW
    assert good.update is not None and good.update.value == 11.0
    assert good.update.properties is not None and good.update.properties[PROP_QUALITY].value == 192
    later = v.process(RawSample(12.0, GOOD, NOW + 2000), NOW + 2000)
    assert later.update is not None and later.update.properties is None
    assert v.stats.bad_episodes == 1


def test_bad_value_with_a_variant_still_publishes_null() -> None:
    out = validator().process(RawSample(99.0, 0x80000000, NOW), NOW)
    assert out.update is not None and out.update.is_null and out.update.value is None


def test_uncertain_keeps_value_and_adds_status_code() -> None:
    out = validator().process(RawSample(7.0, UNCERTAIN_LAST_USABLE, NOW), NOW)
    assert out.update is not None and out.update.value == 7.0 and not out.update.is_null
    assert out.update.properties is not None
    assert out.update.properties[PROP_STATUS_CODE].value == UNCERTAIN_LAST_USABLE
    assert PROP_QUALITY not in out.update.properties


def test_good_with_nonzero_code_carries_it() -> None:
    out = validator().process(RawSample(7.0, 0x00300000, NOW), NOW)  # GoodClamped
    assert out.update is not None and out.update.properties is not None
    assert out.update.properties[PROP_STATUS_CODE].value == 0x00300000


def test_out_of_engineering_range_with_drop_is_dropped_counted_and_logged_sparsely() -> None:
    v = validator(eng_low=0, eng_high=100, on_out_of_range="drop")
    drops = [v.process(RawSample(150.0 + i, GOOD, NOW + i), NOW + i).drop for i in range(12)]
    assert all(d is not None and d.reason is DropReason.OUT_OF_RANGE for d in drops)
    assert [i + 1 for i, d in enumerate(drops) if d and d.log] == [1, 10]  # first, then powers of ten
    assert v.stats.dropped["out_of_range"] == 12
    assert v.process(RawSample(-0.1, GOOD, NOW + 50), NOW + 50).drop is not None
    assert v.process(RawSample(100.0, GOOD, NOW + 60), NOW + 60).update is not None  # bounds inclusive
    assert v.process(RawSample(float("nan"), GOOD, NOW + 70), NOW + 70).drop is not None


def test_future_source_timestamp_is_kept_and_flagged() -> None:
    v = validator()
    out = v.process(RawSample(1.0, GOOD, NOW + 60_000), NOW)
    assert out.update is not None and out.update.timestamp == NOW + 60_000
    assert out.update.properties is not None and out.update.properties[PROP_FUTURE_TIMESTAMP].value is True
    # a wrong clock degrades the sample to Uncertain and says why (issue 12, defect 3)
    assert out.update.properties[PROP_QUALITY_REASON].value == "future_timestamp"
    assert out.update.properties[PROP_STATUS_CODE].value == 0x40000000
    within = v.process(RawSample(2.0, GOOD, NOW + 900), NOW)  # inside the clock-skew tolerance
    # back to Good, said explicitly (Quality 192) so hosts that cache properties recover
    assert within.update is not None and within.update.properties is not None
    assert set(within.update.properties) == {PROP_QUALITY} and within.update.properties[PROP_QUALITY].value == 192
    assert v.stats.future_timestamps == 1


def test_duplicates_suppressed_same_value_same_source_timestamp() -> None:
    v = validator()
    assert v.process(RawSample(5.0, GOOD, NOW), NOW).update is not None
    dup = v.process(RawSample(5.0, GOOD, NOW), NOW + 10)
    assert dup.update is None and dup.drop is not None and dup.drop.reason is DropReason.DUPLICATE
    # same value, new timestamp: a real (re)report without a deadband configured
    assert v.process(RawSample(5.0, GOOD, NOW + 100), NOW + 100).update is not None
    # a birth (force) always gets the value
    assert v.process(RawSample(5.0, GOOD, NOW + 100), NOW + 100, force=True).update is not None


def test_absolute_deadband_client_side() -> None:
    v = validator(deadband=0.5)
    assert v.process(RawSample(10.0, GOOD, NOW), NOW).update is not None
    small = v.process(RawSample(10.5, GOOD, NOW + 1), NOW + 1)
    assert small.drop is not None and small.drop.reason is DropReason.DEADBAND  # |Δ| <= deadband
    assert v.process(RawSample(10.51, GOOD, NOW + 2), NOW + 2).update is not None
    # compared with the last value *sent*, so a slow drift still gets through
    assert v.process(RawSample(10.8, GOOD, NOW + 3), NOW + 3).drop is not None
    assert v.process(RawSample(11.1, GOOD, NOW + 4), NOW + 4).update is not None
    # a status change always passes, as OPC UA's DataChangeFilter does
    assert v.process(RawSample(11.1, UNCERTAIN_LAST_USABLE, NOW + 5), NOW + 5).update is not None


def test_percent_deadband_uses_engineering_range() -> None:
    v = validator(deadband="10%", eng_low=0, eng_high=200)  # 10 % of 200 = 20
    assert v.process(RawSample(100.0, GOOD, NOW), NOW).update is not None
    assert v.process(RawSample(119.0, GOOD, NOW + 1), NOW + 1).drop is not None
    assert v.process(RawSample(121.0, GOOD, NOW + 2), NOW + 2).update is not None


def test_scaling_and_unit_conversion() -> None:
    raw_counts = validator(scale=0.1, offset=-5, datatype="Double")
    assert raw_counts.process(RawSample(150, GOOD, NOW), NOW).update.value == pytest.approx(10.0)  # type: ignore[union-attr]
    fahrenheit = validator(convert="degF->degC")
    assert fahrenheit.process(RawSample(212.0, GOOD, NOW), NOW).update.value == pytest.approx(100.0)  # type: ignore[union-attr]
    # the range is checked after scaling (engineering units)
    ranged = validator(scale=10, eng_low=0, eng_high=100)
    out_of_range = ranged.process(RawSample(11, GOOD, NOW), NOW).update
    assert out_of_range is not None and out_of_range.is_null and out_of_range.properties is not None
    assert out_of_range.properties[PROP_RAW_VALUE].value == "11"  # the raw OPC UA value, before scaling
    # integer metrics round the scaled value and refuse what does not fit the type
    counts = validator(datatype="UInt16", scale=0.5)
    assert counts.process(RawSample(5, GOOD, NOW), NOW).update.value == 2  # round-half-even of 2.5  # type: ignore[union-attr]
    too_big = validator(datatype="Int8", scale=100)
    out = too_big.process(RawSample(5, GOOD, NOW), NOW)
    assert out.drop is not None and out.drop.reason is DropReason.TYPE_RANGE


def test_type_mismatch_is_dropped_not_raised() -> None:
    v = validator(datatype="Double")
    out = v.process(RawSample("not a number", GOOD, NOW), NOW)
    assert out.drop is not None and out.drop.reason is DropReason.TYPE_MISMATCH and out.drop.log
    assert validator(datatype="Boolean").process(RawSample(7, GOOD, NOW), NOW).drop is not None


def test_good_null_is_explicit_null_without_quality() -> None:
    out = validator(datatype="DateTime").process(RawSample(None, GOOD, NOW), NOW)
    assert out.update is not None and out.update.is_null and out.update.properties is None


def test_reset_lets_the_same_value_through_after_a_reconnect() -> None:
    v = validator(deadband=1.0)
    v.process(RawSample(3.0, GOOD, NOW), NOW)
    v.reset()
    assert v.process(RawSample(3.0, GOOD, NOW), NOW).update is not None


@pytest.mark.parametrize(
    ("raw", "datatype", "expected"),
    [
        (True, DataType.Boolean, True),
        (1, DataType.Boolean, True),
        (3, DataType.Double, 3),
        (True, DataType.Int32, 1),
        ("x", DataType.String, "x"),
        (12, DataType.String, "12"),
        (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), DataType.DateTime, 1_704_067_200_000),
        (dt.datetime(2024, 1, 1), DataType.DateTime, 1_704_067_200_000),  # naive = UTC
    ],
)
def test_coerce(raw: Any, datatype: DataType, expected: Any) -> None:
    assert coerce(raw, datatype) == expected


def test_opcua_null_datetime_is_no_timestamp() -> None:
    assert datetime_to_ms(dt.datetime(1601, 1, 1)) is None
    assert datetime_to_ms(None) is None
