"""Shared fixtures: loopback brokers, a PostgreSQL per test module, and temporary data directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import hang_report
from tests.support.mosquitto import BrokerEndpoint, mosquitto_binary, mosquitto_broker
from tests.support.postgres import PostgresServer, postgres_bin_dir, postgres_server


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[BrokerEndpoint]:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is missing: scripts/test installs it (apt-get install mosquitto)")
    with mosquitto_broker(tmp_path) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL for a module that runs on both backends (one database per test: fresh_database)."""
    if postgres_bin_dir() is None:
        pytest.fail("PostgreSQL is missing: scripts/test installs it (apt-get install postgresql)")
    with postgres_server(tmp_path_factory.mktemp("postgres-logs")) as server:
        yield server


_HANG_TIMERS: dict[str, Any] = {}


def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """Arm the asyncio task report (tests/support/hang_report.py); pytest-timeout sets its own timer after."""
    timer = hang_report.arm(settings.timeout) if settings.timeout else None
    if timer is not None:
        _HANG_TIMERS[item.nodeid] = timer


def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    timer = _HANG_TIMERS.pop(item.nodeid, None)
    if timer is not None:
        timer.cancel()
