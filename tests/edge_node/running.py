"""Run an edge part (an :class:`OpcUaSource` or :class:`OpcUaWriter`) as an asyncio task for the
length of a ``with`` block, so each OPC UA test does not write its own start/cancel pair."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from edge_node.commands.opcua_writer import OpcUaWriter
from edge_node.config import EdgeConfig
from edge_node.opcua.source import OpcUaSource
from tests.edge_node.recording_sink import RecordingSink


@contextlib.asynccontextmanager
async def running(part: OpcUaSource | OpcUaWriter) -> AsyncIterator[None]:
    task = asyncio.create_task(part.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def running_source(config: EdgeConfig, sink: RecordingSink, data_dir: Path) -> AsyncIterator[OpcUaSource]:
    """The first endpoint of ``config`` with all its tags, feeding ``sink``."""
    source = OpcUaSource(config.opcua[0], [(t, config.device_id(t)) for t in config.tags], sink, data_dir=data_dir)
    async with running(source):
        yield source
