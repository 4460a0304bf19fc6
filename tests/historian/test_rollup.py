"""The rollup accumulators alone (pure code): the fast path and the general loop agree, merging is exact."""

from __future__ import annotations

import random

import pytest

from historian import rollup
from historian.model import Quality

USABLE = [Quality.GOOD, Quality.UNCERTAIN]


def series(rng: random.Random, n: int, qualities: list[Quality]) -> list[tuple[int, float, Quality]]:
    t, out = 0, []
    for _ in range(n):
        t += rng.randint(0, 5_000)
        out.append((t, rng.uniform(-100, 100), rng.choice(qualities)))
    return out


def assert_same(a: rollup.Acc, b: rollup.Acc) -> None:
    for field in rollup.Acc.__slots__:
        want = getattr(b, field)
        assert getattr(a, field) == (want if want is None else pytest.approx(want, rel=1e-12, abs=1e-9)), field


def test_the_all_usable_float_fast_path_equals_the_general_loop() -> None:
    rng = random.Random(16)
    for _ in range(500):
        points = series(rng, rng.randint(2, 60), USABLE)
        assert_same(rollup.from_sorted(points), rollup._from_sorted_loop(points))


def test_merging_consecutive_parts_equals_one_pass_over_all_points() -> None:
    rng = random.Random(17)
    for _ in range(300):
        points = series(rng, rng.randint(2, 80), [*USABLE, Quality.BAD, Quality.STALE])
        cut = rng.randint(1, len(points) - 1)
        merged = rollup.merge(rollup.from_sorted(points[:cut]), rollup.from_sorted(points[cut:]))
        assert_same(merged, rollup.from_sorted(points))
