"""Quality episodes: the pure detector, the versioned store and its migration, the shell over a real
live model, SQLite and context timeline (publishing into a list instead of a broker)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mes_adapter.context import ContextAssertion, ContextService, ContextStore
from mes_adapter.episodes import (
    SCHEMA_VERSION,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeService,
    EpisodeStore,
    OpenEpisode,
    QualityEpisodeDetector,
    QualitySample,
    TagKey,
)
from mes_adapter.host.live_model import LiveModel
from mes_adapter.host.tracker import DeviceBorn, DeviceDied, MetricsChanged, NodeBorn
from mes_adapter.oee.compute import Interval
from mes_adapter.oee.service import OeeService
from mes_adapter.status.data_status import iso
from tests.mes.helpers import LINE as LINE2
from tests.mes.helpers import MIN, build
from uns.conventions import PROP_QUALITY, PROP_QUALITY_REASON, PROP_RAW_VALUE, PROP_STATUS_CODE, Quality
from uns.isa95 import NamespaceMapping
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import QUALITY_BAD, Metric, PropertyValue
from uns.sqlite_schema import SchemaVersionError

KEY = TagKey("acme:plant1", "packaging:line1", "Filler", "Temperature")
T0 = 1_700_000_000_000
LINE = "acme/plant1/packaging/line1"


def sample(quality: Quality, ts: int, *, reason: str | None = None, received: int | None = None) -> QualitySample:
    if reason is None and quality is not Quality.GOOD:
        reason = "stale" if quality is Quality.STALE else "bad_status"
    return QualitySample(KEY, quality, ts, received if received is not None else ts + 5, reason)


# -- the pure detector -----------------------------------------------------------------------------

def test_one_episode_per_run_from_first_non_good_to_next_good() -> None:
    d = QualityEpisodeDetector()
    assert d.observe(sample(Quality.GOOD, T0)) == []
    opened = d.observe(sample(Quality.BAD, T0 + 100))
    assert len(opened) == 1 and isinstance(opened[0], EpisodeOpened)
    assert opened[0].start_ms == T0 + 100 and opened[0].sample.reason == "bad_status"
    assert d.observe(sample(Quality.BAD, T0 + 200)) == []  # still the same run
    assert d.observe(sample(Quality.STALE, T0 + 300)) == []  # the device died meanwhile: same run
    d.bind(KEY, 7, T0 + 99)  # not this episode's start: an id of an earlier episode is never taken
    d.bind(KEY, 7, T0 + 100)
    d.bind(KEY, 8, T0 + 100)  # bound once
    closed = d.observe(sample(Quality.GOOD, T0 + 900))
    assert closed == [EpisodeClosed(OpenEpisode(7, KEY, T0 + 100), T0 + 900, sample(Quality.GOOD, T0 + 900))]
    assert not d.is_open(KEY)
    assert d.observe(sample(Quality.GOOD, T0 + 1000)) == []


def test_uncertain_and_stale_open_episodes_too() -> None:
    for quality in (Quality.UNCERTAIN, Quality.STALE):
        d = QualityEpisodeDetector()
        [action] = d.observe(sample(quality, T0))
        assert isinstance(action, EpisodeOpened) and action.sample.quality is quality


def test_a_recovered_value_older_than_the_start_ends_when_the_host_learned_it() -> None:
    """After an outage the edge restates the unchanged value with its old source timestamp."""
    d = QualityEpisodeDetector()
    d.observe(sample(Quality.STALE, T0 + 1000))
    [closed] = d.observe(sample(Quality.GOOD, T0 - 50_000, received=T0 + 7000))
    assert isinstance(closed, EpisodeClosed) and closed.end_ms == T0 + 7000


def test_historical_values_neither_open_nor_close() -> None:
    d = QualityEpisodeDetector()
    assert d.observe(sample(Quality.BAD, T0), historical=True) == []
    d.observe(sample(Quality.BAD, T0 + 1))
    assert d.observe(sample(Quality.GOOD, T0 + 2), historical=True) == []
    assert d.is_open(KEY)


def test_restored_open_episode_is_closed_not_reopened() -> None:
    d = QualityEpisodeDetector()
    d.restore([OpenEpisode(3, KEY, T0)])
    assert d.observe(sample(Quality.BAD, T0 + 5000)) == []  # the birth restating the bad tag
    [closed] = d.observe(sample(Quality.GOOD, T0 + 9000))
    assert isinstance(closed, EpisodeClosed) and closed.episode.episode_id == 3 and closed.end_ms == T0 + 9000


# -- the store and its schema version --------------------------------------------------------------

def _open(store: EpisodeStore, start: int, batch: str | None = "B-1") -> int:
    return store.open(line=LINE, cell="Filler", key=KEY, topic=f"{LINE}/Filler/Temperature", quality="BAD",
                      reason="bad_status", status_code=0x808C0000, status="BadSensorFailure", raw_value=None,
                      start_ms=start, batch_id=batch, work_order_id="WO-1", phase="fill", received_ms=start + 3)


def test_store_creates_the_current_schema_and_keeps_open_episodes_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "episodes.sqlite"
    store = EpisodeStore(path)
    assert store.migrated_from == 0
    first = _open(store, T0)
    store.close_episode(first, T0 + 500, T0 + 505)
    second = _open(store, T0 + 1000)
    store.close()
    store = EpisodeStore(path)
    assert store.migrated_from == SCHEMA_VERSION  # nothing to do the second time
    assert store.open_episodes() == [OpenEpisode(second, KEY, T0 + 1000)]
    rows = store.query(LINE)
    assert [(e.id, e.start_ms, e.end_ms, e.active) for e in rows] == [(first, T0, T0 + 500, False),
                                                                       (second, T0 + 1000, None, True)]
    assert rows[0].batch_id == "B-1" and rows[0].phase == "fill" and rows[0].status == "BadSensorFailure"
    # window and batch filters: overlap with [from, to)
    assert [e.id for e in store.query(LINE, T0 + 500, T0 + 1000)] == []
    assert [e.id for e in store.query(LINE, T0 + 400, T0 + 1001)] == [first, second]
    assert [e.id for e in store.query(LINE, 0, 2**62, batch_id="B-2")] == []
    store.close()


def test_store_migrates_a_file_from_before_versioning(tmp_path: Path) -> None:
    """A file at user_version 0 that already holds other data is brought to the current schema."""
    path = tmp_path / "episodes.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE unrelated (x INTEGER)")
    conn.execute("INSERT INTO unrelated VALUES (42)")
    conn.commit()
    conn.close()
    store = EpisodeStore(path)
    assert store.migrated_from == 0
    _open(store, T0)
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert conn.execute("SELECT x FROM unrelated").fetchall() == [(42,)]
    assert conn.execute("SELECT count(*) FROM quality_episode").fetchone() == (1,)
    conn.close()


def test_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "episodes.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        EpisodeStore(path)


# -- the shell: live model → detector → store + retained _alarms -----------------------------------

def _bad(name: str, ts: int) -> Metric:
    return Metric(name=name, datatype=DataType.Double, value=None, is_null=True, timestamp=ts,
                  properties={PROP_QUALITY: PropertyValue(DataType.Int32, QUALITY_BAD),
                              PROP_STATUS_CODE: PropertyValue(DataType.UInt32, 0x808C0000)})


def _good(name: str, value: float, ts: int) -> Metric:
    return Metric(name=name, datatype=DataType.Double, value=value, timestamp=ts)


class Shell:
    def __init__(self, tmp_path: Path) -> None:
        self.context = ContextService(ContextStore(tmp_path / "context.sqlite"))
        self.model = LiveModel()
        self.published: list[tuple[str, dict, bool]] = []
        self.store = EpisodeStore(tmp_path / "episodes.sqlite")
        self.service = EpisodeService(self.store, self.context, NamespaceMapping(), lambda s: None,
                                      lambda t, p, r: self.published.append((t, json.loads(p), r)))

    def apply(self, event: object) -> None:
        for change in self.model.apply(event):  # type: ignore[arg-type]
            self.service.handle(change)


def test_shell_binds_the_batch_at_source_start_stores_and_publishes_active_then_cleared(tmp_path: Path) -> None:
    shell = Shell(tmp_path)
    node = ("acme:plant1", "packaging:line1")
    shell.context.assert_context(ContextAssertion(line=LINE, seq=1, since_ms=T0, batch_id="B-7",
                                                  work_order_id="WO-7", phase="fill"))
    shell.context.assert_context(ContextAssertion(line=LINE, seq=2, since_ms=T0 + 10_000, batch_id="B-8"))
    shell.apply(NodeBorn(node, 0, T0))
    shell.apply(DeviceBorn(node, "Filler", T0))
    shell.apply(MetricsChanged(node, "Filler", [_good("Temperature", 20.5, T0)], T0, birth=True))
    # the bad sample's source time is inside B-7 although the host receives it during B-8
    shell.apply(MetricsChanged(node, "Filler", [_bad("Temperature", T0 + 9_000)], T0 + 11_000))
    topic = f"{LINE}/_alarms/Filler/Temperature"
    [(t, active, retain)] = shell.published
    assert t == topic and retain
    assert {k: active[k] for k in ("kind", "state", "reason", "quality", "status", "start_ms", "end_ms",
                                   "batch_id", "work_order_id", "phase")} == {
        "kind": "quality", "state": "active", "reason": "bad_status", "quality": "BAD",
        "status": "BadSensorFailure", "start_ms": T0 + 9_000, "end_ms": None, "batch_id": "B-7",
        "work_order_id": "WO-7", "phase": "fill"}
    shell.apply(MetricsChanged(node, "Filler", [_good("Temperature", 21.0, T0 + 12_000)], T0 + 12_010))
    (t, cleared, _) = shell.published[-1]
    assert t == topic and cleared["state"] == "cleared" and cleared["end_ms"] == T0 + 12_000
    assert cleared["episode_id"] == active["episode_id"] and cleared["batch_id"] == "B-7"
    [episode] = shell.store.query(LINE, batch_id="B-7")
    assert (episode.start_ms, episode.end_ms, episode.active) == (T0 + 9_000, T0 + 12_000, False)


def test_shell_restart_closes_the_stored_open_episode_once(tmp_path: Path) -> None:
    node = ("acme:plant1", "packaging:line1")
    shell = Shell(tmp_path)
    shell.apply(NodeBorn(node, 0, T0))
    shell.apply(DeviceBorn(node, "Filler", T0))
    shell.apply(MetricsChanged(node, "Filler", [_good("Temperature", 20.5, T0), _good("Speed", 1.0, T0)], T0,
                               birth=True))
    shell.apply(DeviceDied(node, "Filler", T0 + 1000, "ddeath"))
    assert [e.reason for e in shell.store.query(LINE)] == ["comm_lost", "comm_lost"]  # the host's reason for a death
    shell.store.close()
    # a new adapter: new model, the device is born again with Temperature still bad, Speed good
    again = Shell(tmp_path)
    again.apply(NodeBorn(node, 1, T0 + 5000))
    again.apply(DeviceBorn(node, "Filler", T0 + 5000))
    again.apply(MetricsChanged(node, "Filler", [_bad("Temperature", T0 + 5000), _good("Speed", 2.0, T0 + 5000)],
                               T0 + 5000, birth=True))
    # a broker's birth certificate replays the original DBIRTH (GOOD, old values): not a current statement
    again.apply(MetricsChanged(node, "Filler", [_good("Temperature", 20.5, T0), _good("Speed", 1.0, T0)], T0 + 5001,
                               birth=True, from_certificate=True))
    assert [e.end_ms for e in again.store.query(LINE) if e.metric == "Temperature"] == [None]
    again.apply(MetricsChanged(node, "Filler", [_good("Temperature", 22.0, T0 + 8000)], T0 + 8000))
    episodes = again.store.query(LINE)
    assert [(e.metric, e.start_ms, e.end_ms, e.reason) for e in episodes] == [
        ("Temperature", T0 + 1000, T0 + 8000, "comm_lost"), ("Speed", T0 + 1000, T0 + 5000, "comm_lost")]
    assert again.store.open_episodes() == []


def test_a_metric_without_a_value_opens_no_episode_when_its_device_dies(tmp_path: Path) -> None:
    """A command-only metric (a method call such as StartBatch) is born as a null and never gets a
    value: its device's death and rebirth must leave no episode open on ``_alarms`` (found by the
    broker-restart fault test after the demo allowlist gained StartBatch)."""
    shell = Shell(tmp_path)
    node = ("acme:plant1", "packaging:line1")
    start_batch = Metric(name="StartBatch", datatype=DataType.String, value=None, is_null=True, timestamp=T0)
    shell.apply(NodeBorn(node, 0, T0))
    shell.apply(DeviceBorn(node, "Filler", T0))
    shell.apply(MetricsChanged(node, "Filler", [_good("Temperature", 20.5, T0), start_batch], T0, birth=True))
    shell.apply(DeviceDied(node, "Filler", T0 + 1000, "ddeath"))
    assert [e.metric for e in shell.store.query(LINE)] == ["Temperature"]  # the tag with a value only
    shell.apply(DeviceBorn(node, "Filler", T0 + 2000))
    again = Metric(name="StartBatch", datatype=DataType.String, value=None, is_null=True, timestamp=T0 + 2000)
    shell.apply(MetricsChanged(node, "Filler", [_good("Temperature", 21.0, T0 + 2000), again], T0 + 2000,
                               birth=True))
    assert shell.store.open_episodes() == []
    assert [(e.metric, e.end_ms) for e in shell.store.query(LINE)] == [("Temperature", T0 + 2000)]


# -- OEE over a window with an episode on one of its inputs ----------------------------------------

def test_oee_over_a_window_with_an_input_episode_says_so(tmp_path: Path) -> None:
    p = build(tmp_path)
    store = EpisodeStore(tmp_path / "episodes.sqlite")
    episodes = EpisodeService(store, p.context, NamespaceMapping(), lambda s: None, lambda t, b, r: None)
    oee = OeeService(p.config, p.context, p.production, p.records, clock=lambda: T0 + 60 * MIN,
                     gaps=episodes.window_gaps)
    p.context.assert_context(ContextAssertion(line=LINE2, seq=1, since_ms=T0, batch_id="B-1"))
    line_key = TagKey("acme:plant1", "packaging:line2", None, "State")
    store.open(line=LINE2, cell=None, key=line_key, topic=None, quality="STALE", reason="stale", status_code=None,
               status=None, raw_value=None, start_ms=T0 + 10 * MIN, batch_id="B-1", work_order_id=None, phase=None,
               received_ms=T0 + 10 * MIN)
    # an episode on a tag that is no OEE input does not make the OEE incomplete
    store.open(line=LINE2, cell="Filler", key=KEY, topic=None, quality="BAD", reason="bad_status", status_code=None,
               status=None, raw_value=None, start_ms=T0 + 5 * MIN, batch_id="B-1", work_order_id=None, phase=None,
               received_ms=T0 + 5 * MIN)
    result = oee.batch_oee(LINE2, "B-1")
    assert not result.data_complete
    assert result.as_dict()["incomplete_reasons"] == [f"State STALE (stale) since {iso(T0 + 10 * MIN)}, still active"]
    assert result.as_dict()["data_complete"] is False
    store.close_episode(1, T0 + 12 * MIN, T0 + 12 * MIN)
    assert oee.batch_oee(LINE2, "B-1").incomplete_reasons == (
        f"State STALE (stale) from {iso(T0 + 10 * MIN)} to {iso(T0 + 12 * MIN)}",)
    # a window after the episode is complete again
    assert oee.window_oee(LINE2, Interval(T0 + 20 * MIN, T0 + 30 * MIN)).data_complete


def test_the_edge_reason_and_raw_value_win_over_the_derived_reason(tmp_path: Path) -> None:
    """The edge's verdict on the wire (``QualityReason`` / ``RawValue``, decoded by the real live
    model) names an out-of-range or frozen value; without it the host derives ``bad_status`` from
    the status code and ``comm_lost`` from a death."""
    from mes_adapter.episodes.service import sample_of

    shell = Shell(tmp_path)
    node = ("acme:plant1", "packaging:line1")
    shell.apply(NodeBorn(node, 0, T0))
    shell.apply(DeviceBorn(node, "Filler", T0))
    shell.apply(MetricsChanged(node, "Filler", [_good("Temperature", 20.5, T0), _good("Speed", 1.0, T0)], T0,
                               birth=True))

    def sample(name: str) -> object:
        state = shell.model.metric(node[0], node[1], "Filler", name)
        assert state is not None
        return sample_of(state)

    spike = _bad("Temperature", T0 + 1000)
    spike.properties[PROP_QUALITY_REASON] = PropertyValue(DataType.String, "out_of_range")
    spike.properties[PROP_RAW_VALUE] = PropertyValue(DataType.String, "-9999.0")
    shell.apply(MetricsChanged(node, "Filler", [spike], T0 + 1010))
    on_wire = sample("Temperature")
    assert (on_wire.reason, on_wire.raw_value) == ("out_of_range", "-9999.0")  # type: ignore[attr-defined]
    frozen = Metric(name="Speed", datatype=DataType.Double, value=1.0, timestamp=T0 + 2000, properties={
        PROP_STATUS_CODE: PropertyValue(DataType.UInt32, 0x40900000),
        PROP_QUALITY_REASON: PropertyValue(DataType.String, "frozen")})
    shell.apply(MetricsChanged(node, "Filler", [frozen], T0 + 2010))
    assert (sample("Speed").reason, sample("Speed").quality) == ("frozen", Quality.UNCERTAIN)  # type: ignore[attr-defined]
    shell.apply(MetricsChanged(node, "Filler", [_bad("Temperature", T0 + 3000)], T0 + 3010))
    assert sample("Temperature").reason == "bad_status"  # type: ignore[attr-defined]  # no verdict: derived
    shell.apply(MetricsChanged(node, "Filler", [_good("Temperature", 21.0, T0 + 4000)], T0 + 4010))
    assert sample("Temperature").reason is None  # type: ignore[attr-defined]
    shell.apply(DeviceDied(node, "Filler", T0 + 5000, "ddeath"))
    assert sample("Temperature").reason == "comm_lost"  # type: ignore[attr-defined]  # the host's own STALE


def test_a_failing_store_loses_no_episode_and_a_rolled_back_id_never_closes_another_tags(tmp_path: Path) -> None:
    """A store that refuses writes (a read-only file: SQLite's own error) while Temperature goes BAD
    and comes back and Speed goes BAD: nothing is stored or published while it lasts, readiness says
    so; when writes work again the kept opens and closes are written in order and published, each
    episode with its own times. Before, the BAD run was lost and the detector kept the rolled-back
    row id, which SQLite hands to the next insert: a later close ended another tag's episode."""
    shell = Shell(tmp_path)
    node = ("acme:plant1", "packaging:line1")
    shell.apply(NodeBorn(node, 0, T0))
    shell.apply(DeviceBorn(node, "Filler", T0))
    shell.apply(MetricsChanged(node, "Filler", [_good("Temperature", 20.5, T0), _good("Speed", 1.0, T0),
                                                _good("Pressure", 2.0, T0)], T0, birth=True))
    conn = shell.store._conn
    conn.execute("PRAGMA query_only = ON")  # every write now fails: "attempt to write a readonly database"
    shell.apply(MetricsChanged(node, "Filler", [_bad("Temperature", T0 + 100)], T0 + 100))
    shell.apply(MetricsChanged(node, "Filler", [_good("Temperature", 21.0, T0 + 200)], T0 + 200))
    shell.apply(MetricsChanged(node, "Filler", [_bad("Speed", T0 + 300)], T0 + 300))
    assert shell.service.failing is not None and "readonly" in shell.service.failing
    assert "3 action(s) waiting" in shell.service.failing and shell.service.waiting == 3
    assert shell.published == [] and shell.store.query(LINE) == [] and shell.service.errors == 3
    assert (shell.service.opened, shell.service.closed) == (0, 0)

    conn.execute("PRAGMA query_only = OFF")  # writable again
    shell.apply(MetricsChanged(node, "Filler", [_bad("Pressure", T0 + 400)], T0 + 400))
    assert shell.service.failing is None and shell.service.waiting == 0
    assert [(e.metric, e.start_ms, e.end_ms) for e in sorted(shell.store.query(LINE), key=lambda e: e.start_ms)] == [
        ("Temperature", T0 + 100, T0 + 200), ("Speed", T0 + 300, None), ("Pressure", T0 + 400, None)]
    assert [(t.rsplit("/", 1)[1], p["state"], p["start_ms"], p["end_ms"]) for t, p, _ in shell.published] == [
        ("Temperature", "cleared", T0 + 100, T0 + 200), ("Speed", "active", T0 + 300, None),
        ("Pressure", "active", T0 + 400, None)]  # each episode once, as stored now
    assert (shell.service.opened, shell.service.closed, shell.service.dropped) == (3, 1, 0)
    # Speed's close ends Speed's row, not the row id a rolled-back Temperature insert once had
    shell.apply(MetricsChanged(node, "Filler", [_good("Speed", 1.5, T0 + 500)], T0 + 500))
    assert {e.metric: e.end_ms for e in shell.store.query(LINE)} == {
        "Temperature": T0 + 200, "Speed": T0 + 500, "Pressure": None}


def test_a_store_that_stays_broken_gives_up_the_oldest_rows_only() -> None:
    from mes_adapter.unwritten import keep_newest

    assert keep_newest([1, 2, 3, 4, 5], limit=3) == ([3, 4, 5], 2)
    assert keep_newest([1, 2], limit=3) == ([1, 2], 0)
