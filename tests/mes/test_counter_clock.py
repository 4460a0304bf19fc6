"""Issue 12 defect 3: a counter sample with a wrong clock is counted at its receive time, and the
samples after it are still counted (counts are steps between cumulative values)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mes_adapter.production.counters import CounterSample, CounterTracker, DeltaReason

HOUR = 3_600_000


def live(value: int, ts: int, received: int | None = None, *, future: bool = False) -> CounterSample:
    return CounterSample(value, ts, received_ms=ts if received is None else received, clock_flagged=future)


def run(tracker: CounterTracker, *samples: CounterSample) -> list[tuple[int, float, DeltaReason]]:
    out = []
    for s in samples:
        out.extend((d.source_ts_ms, d.delta, d.reason) for d in tracker.observe(s))
    return out


def test_flagged_future_sample_is_counted_at_receive_time_and_does_not_freeze_counting() -> None:
    t = CounterTracker()
    deltas = run(t, live(100, 1_000), live(110, 2_000),
                 live(175, 3_000 + HOUR, received=3_000, future=True), live(180, 4_000), live(200, 5_000))
    assert deltas == [(2_000, 10, DeltaReason.INCREMENT), (3_000, 65, DeltaReason.INCREMENT),
                      (4_000, 5, DeltaReason.INCREMENT), (5_000, 20, DeltaReason.INCREMENT)]
    assert (t.stats.restamped, t.stats.resets, t.stats.out_of_order) == (1, 0, 0)


def test_unflagged_far_future_and_2_pow_63_are_restamped() -> None:
    t = CounterTracker(max_ahead_ms=5_000)
    deltas = run(t, live(10, 1_000), live(20, 2_000 + HOUR, received=2_000), live(30, 2**63, received=3_000),
                 live(40, 4_000))
    assert deltas == [(2_000, 10, DeltaReason.INCREMENT), (3_000, 10, DeltaReason.INCREMENT),
                      (4_000, 10, DeltaReason.INCREMENT)]
    assert t.stats.restamped == 2
    # a few seconds of skew inside max_ahead_ms keep their source time
    assert run(t, live(45, 6_000, received=4_500)) == [(6_000, 5, DeltaReason.INCREMENT)]


def test_impossible_time_without_receive_time_is_ignored_and_spanned_by_the_next_sample() -> None:
    t = CounterTracker()
    assert run(t, CounterSample(10, 1_000), CounterSample(25, 2**63), CounterSample(40, -5),
               CounterSample(50, 2_000)) == [(2_000, 40, DeltaReason.INCREMENT)]
    assert t.stats.bad_clock == 2


def test_far_past_live_sample_is_restamped_but_historical_replay_keeps_its_time() -> None:
    t = CounterTracker(max_live_behind_ms=60_000)
    deltas = run(t, live(100, 10 * HOUR), live(120, 10 * HOUR - 2 * HOUR, received=10 * HOUR + 1_000),
                 live(130, 10 * HOUR + 2_000))
    assert deltas == [(10 * HOUR + 1_000, 20, DeltaReason.INCREMENT), (10 * HOUR + 2_000, 10, DeltaReason.INCREMENT)]
    # store-and-forward replay is late by design: placed at its source time, corrections follow
    replay = CounterSample(125, 10 * HOUR + 1_500, received_ms=10 * HOUR + 9_000, historical=True)
    assert run(t, replay) == [(10 * HOUR + 1_500, 5, DeltaReason.INCREMENT),
                              (10 * HOUR + 2_000, -5, DeltaReason.CORRECTION)]


def test_edge_clock_behind_the_host_never_places_live_samples_before_a_restamped_one() -> None:
    t = CounterTracker()
    # the edge's clock is 2 s behind: source times are received - 2000
    deltas = run(t, live(100, 8_000, received=10_000), live(150, 11_000 + HOUR, received=11_000, future=True),
                 live(160, 10_000, received=12_000), live(170, 11_000, received=13_000),
                 live(180, 12_000, received=14_000))
    assert sum(d for _, d, _ in deltas) == 80
    assert all(reason is DeltaReason.INCREMENT for _, _, reason in deltas)
    assert t.stats.clamped == 2  # 160 @ 10 000 and 170 @ 11 000 went just after the restamped 150 @ 11 000


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 50), st.sampled_from(["ok", "future", "flagged", "past", "huge"])),
                      min_size=2, max_size=60),
       edge_lag=st.integers(-3_000, 3_000))
def test_wrong_clocks_never_lose_or_invent_counts(steps: list[tuple[int, str]], edge_lag: int) -> None:
    """Whatever the clocks of single samples say, the credited total is last value - first value."""
    t = CounterTracker()
    value, received, total = 1_000, 100 * HOUR, 0.0
    first = value + steps[0][0]  # the first sample is the baseline
    for increment, clock in steps:
        value += increment
        received += 500
        source = {"ok": received - edge_lag, "future": received + 10 * HOUR, "flagged": received + 2 * HOUR,
                  "past": received - 20 * HOUR, "huge": 2**63}[clock]
        for d in t.observe(CounterSample(value, source, received_ms=received, clock_flagged=clock == "flagged")):
            total += d.delta
            assert d.delta >= 0 and d.source_ts_ms <= received + 5_000
    assert total == value - first
    assert t.stats.resets == 0


def test_ingest_passes_the_edges_clock_flags_and_receive_time_to_the_counters(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import dataclass

    from mes_adapter.oee.compute import Interval
    from mes_adapter.production.ingest import Ingest, observation_from_change
    from tests.mes.helpers import LINE, build
    from uns.conventions import Quality
    from uns.isa95 import NamespaceMapping

    @dataclass
    class Metric:  # the attributes of the host's MetricState that ingest reads
        value: int
        timestamp_ms: int
        received_ms: int
        future_timestamp: bool = False
        old_timestamp: bool = False
        group_id: str = "acme:plant1"
        edge_node_id: str = "packaging:line2"
        device_id: str | None = None
        name: str = "GoodCount"
        quality: Quality = Quality.GOOD

    @dataclass
    class Change:
        metric: Metric
        birth: bool = False
        historical: bool = False

    p = build(tmp_path)
    ingest = Ingest(p.config, p.production, p.records)
    mapping = NamespaceMapping()
    for metric in (Metric(100, 10 * HOUR, 10 * HOUR), Metric(150, 13 * HOUR, 10 * HOUR + 1_000, future_timestamp=True),
                   Metric(170, 9 * HOUR, 10 * HOUR + 2_000, old_timestamp=True), Metric(200, 10 * HOUR + 3_000,
                                                                                    10 * HOUR + 3_000)):
        obs = observation_from_change(Change(metric), mapping)
        assert obs is not None
        ingest.observe(obs)
    deltas = p.production._store.deltas(LINE, 0, 20 * HOUR)  # noqa: SLF001
    assert [(ts, d) for _, ts, d, _ in deltas] == [(10 * HOUR + 1_000, 50), (10 * HOUR + 2_000, 20),
                                                   (10 * HOUR + 3_000, 30)]
    assert p.production.quantities(LINE, [Interval(0, 20 * HOUR)]).good == 100
