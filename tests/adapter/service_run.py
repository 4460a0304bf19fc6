"""The adapter's service in the test's event loop (no HTTP), with edits to its written adapter.yaml."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from mes_adapter.config.application import load_adapter_config
from mes_adapter.service import AdapterService
from tests.support.mosquitto import BrokerEndpoint
from tests.support.net import free_port

from .setup import write_files


@asynccontextmanager
async def started_service(tmp_path: Path, broker: BrokerEndpoint,
                          edit: Callable[[dict[str, Any]], None]) -> AsyncIterator[AdapterService]:
    """Started, its Sparkplug host online; stopped when the block ends."""
    files = write_files(tmp_path, broker.url, free_port())
    config_file = files.directory / "adapter.yaml"
    config = yaml.safe_load(config_file.read_text())
    edit(config)
    config_file.write_text(yaml.safe_dump(config))
    service = AdapterService(load_adapter_config(config_file))
    await service.start()
    try:
        await service.host.wait_online(15)
        yield service
    finally:
        await service.stop()
