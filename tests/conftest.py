"""Shared fixtures: loopback brokers and temporary data directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import BrokerEndpoint, mosquitto_binary, mosquitto_broker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[BrokerEndpoint]:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is missing: scripts/test installs it (apt-get install mosquitto)")
    with mosquitto_broker(tmp_path) as endpoint:
        yield endpoint
