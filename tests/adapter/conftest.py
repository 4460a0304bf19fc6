"""An adapter served by uvicorn on a free loopback port, in the test's event loop, against Mosquitto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from mes_adapter.api.app import build
from mes_adapter.config.application import load_adapter_config
from mes_adapter.service import AdapterService
from tests.support.mosquitto import BrokerEndpoint
from tests.support.net import free_port

from .setup import AdapterFiles, write_files


@dataclass
class RunningAdapter:
    base_url: str
    service: AdapterService
    files: AdapterFiles
    broker: BrokerEndpoint
    client: httpx.AsyncClient


@pytest.fixture
async def adapter(tmp_path: Path, mosquitto: BrokerEndpoint) -> AsyncIterator[RunningAdapter]:
    files = write_files(tmp_path, mosquitto.url, free_port())
    async with serve(files, mosquitto) as running:
        yield running


@asynccontextmanager
async def serve(files: AdapterFiles, broker: BrokerEndpoint) -> AsyncIterator[RunningAdapter]:
    """The adapter of ``files`` (its ``adapter.yaml`` as written) served until the block ends."""
    port = files.config["http"]["port"]
    app, service = build(load_adapter_config(files.directory / "adapter.yaml"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        await service.host.wait_online(15)
        await service.link.wait_connected(15)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield RunningAdapter(base, service, files, broker, client)
    finally:
        service.feed.close()
        server.should_exit = True
        await asyncio.wait_for(task, 20)


async def eventually(check, timeout: float = 10.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Retry an async check until it returns a truthy value; return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
