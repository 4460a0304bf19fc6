"""Stops and reasons from stored state records (real SQLite files), and the reason store's schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mes_adapter.downtime.config import DowntimeConfig, UnknownReasonError
from mes_adapter.downtime.losses import BucketLoss
from mes_adapter.downtime.service import DowntimeService, NoSuchStopError
from mes_adapter.downtime.store import MIGRATIONS, ReasonSource, ReasonStore, StopReason
from mes_adapter.oee.compute import Interval
from mes_adapter.oee.service import OeeService
from mes_adapter.production.records import Record, RecordKind
from tests.mes.helpers import LINE, MIN, build
from uns.conventions import Quality
from uns.sqlite_schema import SchemaVersionError

T0 = 1_705_471_200_000
S = 1000
DOWNTIME = DowntimeConfig(
    debounce_s=5,
    reasons={"breakdowns": {"mechanical": {"BD-JAM": "jam"}}, "external": {"material": {"EX-MAT": "no material"}}},
    reason_tags={LINE: {"metric": "StopReason", "codes": {"7": "EX-MAT"}}})


def rec(ts: int, metric: str, value: object, quality: Quality = Quality.GOOD) -> Record:
    return Record(line=LINE, cell=None, metric=metric, value=value, source_ts_ms=ts, quality=quality,
                  kind=RecordKind.STATE if metric == "State" else RecordKind.READING)


def service(tmp_path: Path, clock: int) -> tuple[DowntimeService, ReasonStore, OeeService]:
    p = build(tmp_path, downtime=DOWNTIME, oee={"micro_stop_threshold_s": 60})
    p.records.add_many([
        rec(T0 - 10 * MIN, "State", "Execute"),
        rec(T0 - 2 * MIN, "State", "Held"),               # a stop begun before the window
        rec(T0 + 3 * MIN, "State", "Execute"),
        rec(T0 + 10 * MIN, "StopReason", 7), rec(T0 + 10 * MIN, "State", "Aborted"),  # PLC reason 7
        rec(T0 + 10 * MIN + 20 * S, "State", "Execute"),  # run 2 s: debounced into one stop
        rec(T0 + 10 * MIN + 22 * S, "State", "Held"),
        rec(T0 + 15 * MIN, "State", "Execute"),
        rec(T0 + 20 * MIN, "StopReason", 7, Quality.BAD), rec(T0 + 20 * MIN, "State", "Held"),  # BAD: not used
        rec(T0 + 20 * MIN + 30 * S, "State", "Execute"),  # 30 s: micro
        rec(T0 + 30 * MIN, "State", "Held")])             # still stopped at the window's end
    oee = OeeService(p.config, p.context, p.production, p.records, clock=lambda: clock)
    store = ReasonStore(p.config.downtime_db)
    return DowntimeService(p.config, oee, p.records, store, clock=lambda: clock), store, oee


def test_stops_keep_their_true_start_and_take_the_plc_reason(tmp_path: Path) -> None:
    svc, _, oee = service(tmp_path, T0 + 60 * MIN)
    window = Interval(T0, T0 + 40 * MIN)
    stops = svc.stops(LINE, window)
    assert [(s.event.start_ms, s.lost_ms, s.event.micro, s.bucket) for s in stops] == [
        (T0 - 2 * MIN, 3 * MIN, False, "unexplained"),
        (T0 + 10 * MIN, 5 * MIN - 2 * S, False, "external"),
        (T0 + 20 * MIN, 30 * S, True, "small_stops"),
        (T0 + 30 * MIN, 10 * MIN, False, "unexplained")]
    assert stops[1].reason == StopReason(LINE, T0 + 10 * MIN, "EX-MAT", ReasonSource.PLC, "plc:StopReason",
                                         T0 + 10 * MIN)
    assert svc.losses(LINE, window) == {
        "breakdowns": BucketLoss(0, 0), "external": BucketLoss(5 * MIN - 2 * S, 1),
        "small_stops": BucketLoss(30 * S, 1), "unexplained": BucketLoss(13 * MIN, 2)}
    # machine time (item 5): the window minus the stopped time, the 2 s run inside the flap included
    assert oee.running_ms(LINE, [window]) == 40 * MIN - (3 * MIN + 5 * MIN - 2 * S + 30 * S + 10 * MIN)
    assert oee.running_ms(LINE, [Interval(T0, T0 + 10 * MIN), Interval(T0 + 15 * MIN, T0 + 20 * MIN)]) == 12 * MIN
    # a window opening during the 2 s run of the flapping stop still sees one stop with its true start
    inside = svc.stops(LINE, Interval(T0 + 10 * MIN + 21 * S, T0 + 16 * MIN))
    assert [(s.event.start_ms, s.lost_ms, s.bucket) for s in inside] == [
        (T0 + 10 * MIN, 5 * MIN - 22 * S, "external")]


def test_an_operator_reason_overrides_the_plc_and_history_is_kept(tmp_path: Path) -> None:
    now = T0 + 60 * MIN
    svc, store, _ = service(tmp_path, now)
    stop = svc.explain(LINE, T0 + 10 * MIN, "BD-JAM", "alice", "jam at infeed")
    assert (stop.bucket, stop.reason) == ("breakdowns", StopReason(
        LINE, T0 + 10 * MIN, "BD-JAM", ReasonSource.OPERATOR, "alice", now, "jam at infeed"))
    svc.explain(LINE, T0 + 10 * MIN, "EX-MAT", "bob")
    assert [(r.code, r.entered_by) for r in store.history(LINE, T0 + 10 * MIN)] == [
        ("BD-JAM", "alice"), ("EX-MAT", "bob")]
    with pytest.raises(UnknownReasonError):
        svc.explain(LINE, T0 + 30 * MIN, "NOPE", "alice")
    with pytest.raises(NoSuchStopError, match="no stop of line .* starts at"):
        svc.explain(LINE, T0 + 10 * MIN + 22 * S, "BD-JAM", "alice")  # inside the debounced stop, not its start
    assert store.history(LINE, T0 + 30 * MIN) == []
    store.close()
    reopened = ReasonStore(tmp_path / "downtime.sqlite")
    assert reopened.migrated_from == len(MIGRATIONS)
    assert reopened.between(LINE, T0, T0 + 60 * MIN)[T0 + 10 * MIN].code == "EX-MAT"
    reopened.close()


def test_reason_store_refuses_a_file_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "downtime.sqlite"
    ReasonStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="downtime reason store has schema version 2"):
        ReasonStore(path)


def test_a_stored_code_removed_from_the_hierarchy_counts_as_unexplained(tmp_path: Path) -> None:
    svc, store, _ = service(tmp_path, T0 + 60 * MIN)
    svc.explain(LINE, T0 + 30 * MIN, "BD-JAM", "alice")
    store.close()
    p = build(tmp_path, downtime=DowntimeConfig(reasons={"external": {"material": {"EX-MAT": "no material"}}}),
              oee={"micro_stop_threshold_s": 60})
    changed = DowntimeService(p.config, OeeService(p.config, p.context, p.production, p.records),
                              p.records, ReasonStore(p.config.downtime_db), clock=lambda: T0 + 60 * MIN)
    window = Interval(T0 + 25 * MIN, T0 + 40 * MIN)
    (stop,) = changed.stops(LINE, window)
    assert stop.bucket == "unexplained"
    assert stop.as_dict(p.config)["reason"] == {
        "code": "BD-JAM", "source": "operator", "entered_by": "alice", "entered_ms": T0 + 60 * MIN,
        "comment": None, "category": None, "bucket": None, "description": None}
    assert changed.losses(LINE, window)["unexplained"] == BucketLoss(10 * MIN, 1)
    changed.store.close()
