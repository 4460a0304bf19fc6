"""A quiet simulator for the structure tests, and asyncua structure values as plain dicts.

Quiet: no sensor or speed noise, so at rest (Idle, Complete) every structure holds still and a test
compares exact values with the simulator's own truth instead of "something arrived".
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from simulator.config import SimulatorConfig, default_cells
from simulator.server import SimulatedLineServer
from tests.support.net import free_port


def quiet_config(**overrides: Any) -> SimulatorConfig:
    cells = [cell.model_copy(update={"temperature_noise_c": 0.0, "speed_noise": 0.0}) for cell in default_cells()]
    values: dict[str, Any] = {"port": free_port(), "rate": 20.0, "tick_s": 0.05, "acting_state_s": 0.1,
                              "seed": 3, "cells": cells}
    values.update(overrides)
    return SimulatorConfig(**values)


def plain(value: Any) -> Any:
    """An asyncua structure (a generated dataclass), or a list of them, as dicts by field name."""
    if isinstance(value, list):
        return [plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


@contextlib.asynccontextmanager
async def quiet_simulator(**overrides: Any) -> AsyncIterator[SimulatedLineServer]:
    """A running quiet simulator on a free loopback port, stopped on exit."""
    async with SimulatedLineServer(quiet_config(**overrides)) as server:
        yield server
