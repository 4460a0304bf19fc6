"""The edge's own quality statements (issue 12, defects 2, 3 and 7): out of range, staleness,
frozen values, wrong clocks, lost communication. Pure logic, no I/O.

Wire form (README "Wire conventions"): BAD = ``is_null`` + ``Quality`` 0 + ``StatusCode``
(tck-id-payloads-propertyset-quality-value-value); STALE = value kept + ``Quality`` 500; UNCERTAIN =
value kept + an Uncertain ``StatusCode``; every degraded metric names its ``QualityReason``, and
``RawValue`` when the value was withheld. The first plain value afterwards carries ``Quality`` 192.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from edge_node.config import TagConfig
from edge_node.model import MetricUpdate
from edge_node.validation import (
    BAD_NO_COMMUNICATION,
    BAD_OUT_OF_RANGE,
    UNCERTAIN,
    UNCERTAIN_ENGINEERING_UNITS_EXCEEDED,
    UNCERTAIN_LAST_USABLE_VALUE,
    UNCERTAIN_SENSOR_NOT_ACCURATE,
    DropReason,
    QualityEventKind,
    RawSample,
    TagValidator,
    ValidationStats,
    datetime_to_ms,
)
from uns.conventions import (
    PROP_FUTURE_TIMESTAMP,
    PROP_OLD_TIMESTAMP,
    PROP_QUALITY,
    PROP_QUALITY_REASON,
    PROP_RAW_VALUE,
    PROP_STATUS_CODE,
    QualityReason,
)

NOW = 1_700_000_000_000
GOOD = 0


def validator(**fields: Any) -> TagValidator:
    tag = TagConfig.model_validate({"node_id": "ns=2;s=x", "metric": "Temperature", **fields})
    return TagValidator(tag, "Oven", stats=ValidationStats(), future_tolerance_ms=1000,
                        max_source_age_ms=60_000)


def props(update: MetricUpdate | None) -> dict[str, Any]:
    assert update is not None
    return {key: prop.value for key, prop in (update.properties or {}).items()}


def recovered(update: MetricUpdate | None, value: Any) -> None:
    """A plain value after a degraded one: the value, Good, and Quality 192 said explicitly."""
    assert update is not None and update.value == value and not update.is_null
    assert props(update) == {PROP_QUALITY: 192}


def test_out_of_range_default_is_bad_with_reason_and_raw_value_then_good_again() -> None:
    v = validator(eng_low=-40, eng_high=200)
    v.process(RawSample(20.46, GOOD, NOW), NOW)
    spike = v.process(RawSample(-9999.0, GOOD, NOW + 100), NOW + 100)
    assert spike.update is not None and spike.update.is_null and spike.update.value is None
    assert spike.update.timestamp == NOW + 100
    assert props(spike.update) == {PROP_QUALITY: 0, PROP_STATUS_CODE: BAD_OUT_OF_RANGE,
                                   PROP_QUALITY_REASON: "out_of_range", PROP_RAW_VALUE: "-9999.0"}
    assert spike.event is not None and spike.event.kind is QualityEventKind.BAD_START
    again = v.process(RawSample(-9999.0, GOOD, NOW + 200), NOW + 200)  # still out of range: said once
    assert again.update is None and again.drop is not None and again.drop.reason is DropReason.DUPLICATE
    back = v.process(RawSample(20.46, GOOD, NOW + 300), NOW + 300)  # the same value as before the spike
    recovered(back.update, 20.46)
    assert back.event is not None and back.event.kind is QualityEventKind.BAD_END
    assert (v.stats.out_of_range, v.stats.bad_episodes, v.stats.dropped["out_of_range"]) == (2, 1, 0)


def test_out_of_range_clamp_is_uncertain_at_the_limit() -> None:
    v = validator(eng_low=0, eng_high=100, on_out_of_range="clamp")
    out = v.process(RawSample(150.5, GOOD, NOW), NOW)
    assert out.update is not None and out.update.value == 100.0
    assert props(out.update) == {PROP_STATUS_CODE: UNCERTAIN_ENGINEERING_UNITS_EXCEEDED,
                                 PROP_QUALITY_REASON: "out_of_range", PROP_RAW_VALUE: "150.5"}
    low = v.process(RawSample(-3.0, GOOD, NOW + 1), NOW + 1)
    assert low.update is not None and low.update.value == 0.0
    recovered(v.process(RawSample(50.0, GOOD, NOW + 2), NOW + 2).update, 50.0)
    # NaN has no limit to clamp to: Bad
    nan = v.process(RawSample(float("nan"), GOOD, NOW + 3), NOW + 3)
    assert nan.update is not None and nan.update.is_null and props(nan.update)[PROP_RAW_VALUE] == "nan"


def test_max_age_turns_a_silent_tag_stale_and_the_next_sample_back() -> None:
    v = validator(max_age_s=5)
    v.process(RawSample(20.0, GOOD, NOW), NOW)
    assert v.check_age(NOW + 4_999).update is None
    stale = v.check_age(NOW + 5_000).update
    assert stale is not None and stale.value == 20.0 and stale.timestamp == NOW + 5_000  # the edge's statement
    assert props(stale) == {PROP_QUALITY: 500, PROP_STATUS_CODE: UNCERTAIN_LAST_USABLE_VALUE,
                            PROP_QUALITY_REASON: "max_age"}
    assert v.check_age(NOW + 9_000).update is None  # said once
    # a heartbeat with the same value and source timestamp is not suppressed as a duplicate
    recovered(v.process(RawSample(20.0, GOOD, NOW), NOW + 9_500).update, 20.0)
    assert v.check_age(NOW + 14_000).update is None  # heard at +9.5 s
    assert v.stats.stale == 1


def test_frozen_value_turns_uncertain_until_it_moves() -> None:
    v = validator(frozen_after_s=3, max_age_s=10)
    v.process(RawSample(7.0, GOOD, NOW), NOW)
    v.process(RawSample(7.0, GOOD, NOW + 1_000), NOW + 1_000)  # re-reported, unchanged
    frozen = v.check_age(NOW + 3_000).update
    assert frozen is not None and frozen.value == 7.0
    assert props(frozen) == {PROP_STATUS_CODE: UNCERTAIN_SENSOR_NOT_ACCURATE, PROP_QUALITY_REASON: "frozen"}
    same = v.process(RawSample(7.0, GOOD, NOW + 4_000), NOW + 4_000)  # heard, but still not moving
    assert same.update is None and v.degraded is QualityReason.FROZEN
    recovered(v.process(RawSample(7.5, GOOD, NOW + 5_000), NOW + 5_000).update, 7.5)
    assert v.degraded is None and v.stats.frozen == 1


def test_frozen_then_silent_becomes_stale() -> None:
    v = validator(frozen_after_s=2, max_age_s=6)
    v.process(RawSample(1.0, GOOD, NOW), NOW)
    assert props(v.check_age(NOW + 2_000).update)[PROP_QUALITY_REASON] == "frozen"
    assert props(v.check_age(NOW + 6_000).update)[PROP_QUALITY_REASON] == "max_age"


def test_future_and_old_source_timestamps_are_flagged_and_later_samples_flow() -> None:
    v = validator()
    v.process(RawSample(1.0, GOOD, NOW), NOW)
    future = v.process(RawSample(2.0, GOOD, NOW + 3_600_000), NOW + 10)
    assert future.update is not None and future.update.value == 2.0 and future.update.timestamp == NOW + 3_600_000
    assert props(future.update) == {PROP_FUTURE_TIMESTAMP: True, PROP_STATUS_CODE: UNCERTAIN,
                                    PROP_QUALITY_REASON: "future_timestamp"}
    recovered(v.process(RawSample(2.0, GOOD, NOW + 20), NOW + 20).update, 2.0)
    old = v.process(RawSample(3.0, GOOD, NOW - 61_000), NOW + 30)  # older than max_source_age (60 s)
    assert props(old.update) == {PROP_OLD_TIMESTAMP: True, PROP_STATUS_CODE: UNCERTAIN,
                                 PROP_QUALITY_REASON: "old_timestamp"}
    recovered(v.process(RawSample(4.0, GOOD, NOW + 40), NOW + 40).update, 4.0)
    assert (v.stats.future_timestamps, v.stats.old_timestamps) == (1, 1)


def test_a_source_timestamp_before_1970_is_flagged_old_and_stamped_with_the_server_time() -> None:
    v = validator()
    v.process(RawSample(1.0, GOOD, NOW), NOW)
    source = datetime_to_ms(dt.datetime(1900, 1, 1, tzinfo=dt.UTC))
    assert source is not None and source < 0  # a wrong clock, not OPC UA's null date
    out = v.process(RawSample(2.0, GOOD, source, NOW - 5), NOW)
    assert out.update is not None and out.update.timestamp == NOW - 5  # Sparkplug timestamps are unsigned
    assert props(out.update)[PROP_QUALITY_REASON] == "old_timestamp"
    assert datetime_to_ms(dt.datetime(1601, 1, 1)) is None


def test_a_value_read_at_connect_may_be_old() -> None:
    """The current value read after a (re)connect carries the time it last changed: not flagged."""
    v = validator()
    out = v.process(RawSample(5.0, GOOD, NOW - 7 * 86_400_000), NOW, force=True)
    assert out.update is not None and out.update.properties is None


def test_per_tag_max_source_age_overrides_the_edge_default() -> None:
    v = validator(max_source_age_s=1)
    v.process(RawSample(1.0, GOOD, NOW), NOW)
    assert props(v.process(RawSample(2.0, GOOD, NOW - 1_500), NOW).update)[PROP_QUALITY_REASON] == "old_timestamp"


def test_comm_lost_then_reconnect_publishes_the_unchanged_value_as_good() -> None:
    """Defect 2: the value read after an OPC UA restart equals the one before and has the same,
    older source timestamp; it must go out (no duplicate suppression) and say Good explicitly."""
    v = validator()
    v.process(RawSample(42.0, GOOD, NOW - 50_000), NOW - 50_000)
    lost = v.comm_lost(NOW)
    assert lost.update is not None and lost.update.is_null and lost.update.timestamp == NOW
    assert props(lost.update) == {PROP_QUALITY: 0, PROP_STATUS_CODE: BAD_NO_COMMUNICATION,
                                  PROP_QUALITY_REASON: "comm_lost"}
    assert v.comm_lost(NOW + 1_000).update is None  # one marker per outage
    v.reset()  # the new session
    back = v.process(RawSample(42.0, GOOD, NOW - 50_000), NOW + 7_000, force=True)
    recovered(back.update, 42.0)
    assert back.update is not None and back.update.timestamp == NOW - 50_000
    assert back.event is not None and back.event.kind is QualityEventKind.BAD_END
    # the subscription's initial notification repeats it: now a duplicate
    assert v.process(RawSample(42.0, GOOD, NOW - 50_000), NOW + 7_100).drop is not None


def test_no_staleness_check_while_bad_or_before_a_value() -> None:
    v = validator(max_age_s=1, frozen_after_s=1)
    assert v.check_age(NOW).update is None  # nothing sent yet
    v.process(RawSample(None, 0x808C0000, NOW), NOW)
    assert v.check_age(NOW + 10_000).update is None  # Bad already says the value is unknown
