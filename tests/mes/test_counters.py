"""CounterTracker: resets, rollovers, births, bad quality, duplicates and out-of-order samples."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from mes_adapter.production.counters import CounterSample, CounterTracker, DeltaReason
from uns.conventions import Quality


def feed(tracker: CounterTracker, *samples: CounterSample) -> list[tuple[int, float, DeltaReason]]:
    out = []
    for s in samples:
        out.extend((d.source_ts_ms, d.delta, d.reason) for d in tracker.observe(s))
    return out


def S(value: float | None, ts: int, birth: bool = False,  # noqa: N802 - reads like a table row
      quality: Quality = Quality.GOOD) -> CounterSample:
    return CounterSample(value, ts, birth, quality)


def test_first_sample_is_baseline_then_increments() -> None:
    t = CounterTracker()
    assert feed(t, S(1000, 1), S(1005, 2), S(1005, 3), S(1012, 4)) == [
        (2, 5, DeltaReason.INCREMENT), (4, 7, DeltaReason.INCREMENT)]


def test_reset_counts_new_value_from_zero() -> None:
    t = CounterTracker()
    assert feed(t, S(500, 1), S(520, 2), S(3, 3), S(10, 4)) == [
        (2, 20, DeltaReason.INCREMENT), (3, 3, DeltaReason.RESET), (4, 7, DeltaReason.INCREMENT)]
    assert t.stats.resets == 1


def test_rollover_uint32_and_uint16() -> None:
    t32 = CounterTracker(modulus=2**32)
    assert feed(t32, S(2**32 - 3, 1), S(4, 2)) == [(2, 7, DeltaReason.ROLLOVER)]
    t16 = CounterTracker(modulus=2**16)
    assert feed(t16, S(65_000, 1), S(100, 2)) == [(2, 636, DeltaReason.ROLLOVER)]
    # a big fall is a reset even with a modulus (wrapping would mean an absurd jump)
    assert feed(t16, S(5, 3)) == [(3, 5, DeltaReason.RESET)]
    never_wraps = CounterTracker(modulus=None)
    assert feed(never_wraps, S(100, 1), S(2, 2)) == [(2, 2, DeltaReason.RESET)]


def test_birth_restatement_is_not_an_increment() -> None:
    t = CounterTracker()
    assert feed(t, S(1000, 1, birth=True)) == []  # first ever: baseline
    assert feed(t, S(1010, 2), S(1010, 3, birth=True)) == [(2, 10, DeltaReason.INCREMENT)]
    # a rebirth after a PLC restart (lower value) starts a new baseline without counting
    assert feed(t, S(4, 4, birth=True), S(9, 5)) == [(5, 5, DeltaReason.INCREMENT)]
    # a birth higher than the last value: production the host did not see data for
    assert feed(t, S(20, 6, birth=True)) == [(6, 11, DeltaReason.BIRTH_RISE)]


def test_bad_stale_and_duplicates_are_ignored() -> None:
    t = CounterTracker()
    assert feed(t, S(10, 1), S(None, 2, quality=Quality.BAD), S(0, 3, quality=Quality.STALE),
                S(15, 4, quality=Quality.UNCERTAIN), S(15, 4), S(99, 4), S("x", 5), S(True, 6)) == [  # type: ignore[arg-type]
        (4, 5, DeltaReason.INCREMENT)]
    assert (t.stats.ignored_quality, t.stats.duplicates, t.stats.conflicts) == (4, 1, 1)


def test_out_of_order_sample_moves_attribution_back() -> None:
    t = CounterTracker()
    feed(t, S(100, 10_000))
    # after an outage the live value arrives first, then the replayed history
    assert feed(t, S(300, 40_000)) == [(40_000, 200, DeltaReason.INCREMENT)]
    assert feed(t, S(150, 20_000)) == [(20_000, 50, DeltaReason.INCREMENT),
                                       (40_000, -50, DeltaReason.CORRECTION)]
    assert feed(t, S(250, 30_000)) == [(30_000, 100, DeltaReason.INCREMENT),
                                       (40_000, -100, DeltaReason.CORRECTION)]
    assert t.stats.out_of_order == 2


def test_too_late_beyond_horizon_and_restore() -> None:
    t = CounterTracker(horizon_ms=1000)
    feed(t, S(1, 0), S(2, 500), S(3, 5000))
    assert feed(t, S(2, 100)) == [] and t.stats.too_late == 1
    copy = CounterTracker(horizon_ms=1000)
    copy.restore(t.snapshot())
    assert feed(copy, S(3, 5000)) == [] and copy.stats.duplicates == 1
    assert feed(copy, S(8, 6000)) == [(6000, 5, DeltaReason.INCREMENT)]


def _attribution(samples: list[CounterSample]) -> dict[int, float]:
    t = CounterTracker(modulus=2**16)
    per_ts: dict[int, float] = defaultdict(float)
    for s in samples:
        for d in t.observe(s):
            per_ts[d.source_ts_ms] += d.delta
    return {ts: v for ts, v in per_ts.items() if v}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**16 - 1), st.booleans()), min_size=1, max_size=25),
       st.randoms(use_true_random=False))
def test_attribution_does_not_depend_on_arrival_order(values: list[tuple[int, bool]], rnd) -> None:  # type: ignore[no-untyped-def]
    samples = [CounterSample(v, 1000 * i, birth) for i, (v, birth) in enumerate(values)]
    shuffled = list(samples)
    rnd.shuffle(shuffled)
    assert _attribution(shuffled) == _attribution(samples)
