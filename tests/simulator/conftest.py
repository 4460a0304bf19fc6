"""Fixtures for the simulator tests: a fake clock and small line configs."""

from __future__ import annotations

import pytest

from simulator.config import SimulatorConfig
from simulator.model import LineModel


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now = round(self.now + seconds, 6)  # no drift from summing 0.1 s steps
        return self.now


def run(model: LineModel, clock: FakeClock, seconds: float, tick_s: float = 0.1) -> None:
    """Tick the model through ``seconds`` of fake time."""
    for _ in range(round(seconds / tick_s)):
        clock.advance(tick_s)
        model.tick()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config() -> SimulatorConfig:
    return SimulatorConfig(rate=10.0, acting_state_s=0.5, seed=7)


@pytest.fixture
def model(config: SimulatorConfig, clock: FakeClock) -> LineModel:
    return LineModel(config, clock=clock)
