"""The live model's acceptance rule around markers and wrong clocks (issue 12, defects 2 and 3).

A Bad / STALE / degraded value is the edge's own statement about a tag, not a newer sample: the
value that follows it replaces it even when its source timestamp is older (after an OPC UA server
restart the recovery value keeps the time it last changed). A sample with a flagged clock is
applied but never holds back the samples after it. The reason travels to the UNS JSON payload.
"""

from __future__ import annotations

from typing import Any

from tests.host.edge import EDGE, GROUP, EdgeScript
from tests.host.test_model_mirror import LINE, Pipeline
from uns.conventions import (
    PROP_FUTURE_TIMESTAMP,
    PROP_OLD_TIMESTAMP,
    PROP_QUALITY,
    PROP_QUALITY_REASON,
    PROP_RAW_VALUE,
    PROP_STATUS_CODE,
    Quality,
)
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload, PropertySet, PropertyValue, now_ms
from uns.sparkplug.topic import MessageType

GOOD_COUNT = "Line/GoodCount"
BAD_NO_COMMUNICATION = 0x80310000


def ndata(edge: EdgeScript, name: str, value: Any, ts: int, props: PropertySet | None = None) -> tuple[str, bytes]:
    """One NDATA metric with properties, the way the edge sends markers and flags."""
    alias, datatype = {n: (a, d) for n, a, d, _ in edge.node_metrics}[name]
    metric = Metric(alias=alias, datatype=datatype, value=value, timestamp=ts, is_null=value is None,
                    properties=props)
    payload = Payload([metric], timestamp=now_ms(), seq=edge._next_seq())
    return edge.topic(MessageType.NDATA), encode_payload(payload, MessageType.NDATA)


def comm_lost() -> PropertySet:
    return {PROP_QUALITY: PropertyValue(DataType.Int32, 0),
            PROP_STATUS_CODE: PropertyValue(DataType.UInt32, BAD_NO_COMMUNICATION),
            PROP_QUALITY_REASON: PropertyValue(DataType.String, "comm_lost")}


def born() -> tuple[Pipeline, EdgeScript, int]:
    p = Pipeline()
    edge = EdgeScript()
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    state = p.model.metric(GROUP, EDGE, None, GOOD_COUNT)
    assert state is not None
    return p, edge, state.source_timestamp_ms


def test_recovery_value_older_than_the_bad_marker_replaces_it() -> None:
    """Defect 2: the edge's BadNoCommunication marker (stamped when the session died) is followed
    by the value read after the restart, whose source time is its last change, before the marker."""
    p, edge, t0 = born()
    p.feed(ndata(edge, GOOD_COUNT, None, t0 + 10_000, comm_lost()))
    p.flush()
    assert p.published[f"{LINE}/Line/GoodCount"] == {
        "value": None, "timestamp_ms": t0 + 10_000, "quality": "BAD", "status_code": BAD_NO_COMMUNICATION,
        "datatype": "UInt64", "is_historical": False, "future_timestamp": False, "reason": "comm_lost"}
    p.feed(ndata(edge, GOOD_COUNT, 1000, t0 + 2_000, {PROP_QUALITY: PropertyValue(DataType.Int32, 192)}))
    p.flush()
    state = p.model.metric(GROUP, EDGE, None, GOOD_COUNT)
    assert state is not None and (state.value, state.quality, state.quality_reason) == (1000, Quality.GOOD, None)
    assert p.published[f"{LINE}/Line/GoodCount"] == {
        "value": 1000, "timestamp_ms": t0 + 2_000, "quality": "GOOD", "datatype": "UInt64",
        "is_historical": False, "future_timestamp": False}
    assert p.model.out_of_order_values == 0


def test_recovery_after_a_death_stale_replaces_it_and_the_stale_says_comm_lost() -> None:
    p, edge, t0 = born()
    p.feed(edge.ddeath())
    p.flush()
    stale = p.published[f"{LINE}/filler/Speed"]
    assert (stale["quality"], stale["value"], stale["reason"]) == ("STALE", 120.5, "comm_lost")
    p.feed(edge.dbirth())
    p.flush()
    assert p.published[f"{LINE}/filler/Speed"]["quality"] == "GOOD"
    assert "reason" not in p.published[f"{LINE}/filler/Speed"]


def test_an_older_sample_after_a_good_value_is_still_refused() -> None:
    """The marker rule is narrow: between plain samples the older one still loses."""
    p, edge, t0 = born()
    p.feed(ndata(edge, GOOD_COUNT, 1010, t0 + 1_000))
    p.feed(ndata(edge, GOOD_COUNT, 1005, t0 + 500))
    assert p.model.metric(GROUP, EDGE, None, GOOD_COUNT).value == 1010  # type: ignore[union-attr]
    assert p.model.out_of_order_values == 1


def test_future_timestamp_sample_is_applied_flagged_and_does_not_freeze_the_tag() -> None:
    """Defect 3 (host half): a sample an hour ahead, flagged by the edge, then correct samples."""
    p, edge, t0 = born()
    future = {PROP_FUTURE_TIMESTAMP: PropertyValue(DataType.Boolean, True),
              PROP_STATUS_CODE: PropertyValue(DataType.UInt32, 0x40000000),
              PROP_QUALITY_REASON: PropertyValue(DataType.String, "future_timestamp")}
    p.feed(ndata(edge, GOOD_COUNT, 1010, t0 + 3_600_000, future))
    p.flush()
    flagged = p.published[f"{LINE}/Line/GoodCount"]
    assert (flagged["value"], flagged["quality"], flagged["future_timestamp"], flagged["reason"]) == (
        1010, "UNCERTAIN", True, "future_timestamp")
    p.feed(ndata(edge, GOOD_COUNT, 1011, t0 + 1_000, {PROP_QUALITY: PropertyValue(DataType.Int32, 192)}))
    p.feed(ndata(edge, GOOD_COUNT, 1012, t0 + 2_000))
    p.flush()
    state = p.model.metric(GROUP, EDGE, None, GOOD_COUNT)
    assert state is not None and (state.value, state.quality, state.future_timestamp) == (1012, Quality.GOOD, False)
    assert p.published[f"{LINE}/Line/GoodCount"]["value"] == 1012
    assert (p.model.out_of_order_values, p.model.flagged_timestamps) == (0, 1)


def test_far_past_and_2_pow_63_timestamps_do_not_hold_back_later_samples() -> None:
    p, edge, t0 = born()
    old = {PROP_OLD_TIMESTAMP: PropertyValue(DataType.Boolean, True),
           PROP_STATUS_CODE: PropertyValue(DataType.UInt32, 0x40000000),
           PROP_QUALITY_REASON: PropertyValue(DataType.String, "old_timestamp")}
    p.feed(ndata(edge, GOOD_COUNT, 1001, 1_000, old))  # 1970: flagged old, applied as the latest reading
    state = p.model.metric(GROUP, EDGE, None, GOOD_COUNT)
    assert state is not None and (state.value, state.quality, state.old_timestamp) == (1001, Quality.UNCERTAIN, True)
    future = {PROP_FUTURE_TIMESTAMP: PropertyValue(DataType.Boolean, True),
              PROP_QUALITY_REASON: PropertyValue(DataType.String, "future_timestamp")}
    p.feed(ndata(edge, GOOD_COUNT, 1002, 2**63, future))
    p.feed(ndata(edge, GOOD_COUNT, 1003, t0 + 5_000))
    p.flush()
    assert p.model.metric(GROUP, EDGE, None, GOOD_COUNT).value == 1003  # type: ignore[union-attr]
    assert p.published[f"{LINE}/Line/GoodCount"]["quality"] == "GOOD"
    assert p.model.flagged_timestamps == 2


def test_out_of_range_bad_carries_reason_and_raw_value_to_the_uns() -> None:
    p, edge, t0 = born()
    props = {PROP_QUALITY: PropertyValue(DataType.Int32, 0),
             PROP_STATUS_CODE: PropertyValue(DataType.UInt32, 0x803C0000),
             PROP_QUALITY_REASON: PropertyValue(DataType.String, "out_of_range"),
             PROP_RAW_VALUE: PropertyValue(DataType.String, "-9999.0")}
    p.feed(ndata(edge, GOOD_COUNT, None, t0 + 1_000, props))
    p.flush()
    payload = p.published[f"{LINE}/Line/GoodCount"]
    assert (payload["value"], payload["quality"], payload["reason"], payload["raw_value"]) == (
        None, "BAD", "out_of_range", "-9999.0")
    state = p.model.metric(GROUP, EDGE, None, GOOD_COUNT)
    assert state is not None and state.to_dict()["quality_reason"] == "out_of_range"
