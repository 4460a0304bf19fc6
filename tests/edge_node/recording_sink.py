"""A test double for the Sparkplug edge client: records what the OPC UA source hands it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from edge_node.model import DeviceOffline, DeviceOnline, MetricUpdate


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def submit(self, update: MetricUpdate) -> None:
        self.events.append(("data", update))

    def set_current(self, update: MetricUpdate) -> None:
        self.events.append(("current", update))

    async def device_online(self, event: DeviceOnline) -> None:
        self.events.append(("online", event))

    async def device_offline(self, event: DeviceOffline) -> None:
        self.events.append(("offline", event))

    def data(self, name: str, device: str | None = None) -> list[MetricUpdate]:
        return [e for k, e in self.events if k == "data" and e.name == name and e.device_id == device]

    def current(self, name: str) -> list[MetricUpdate]:
        """Node metric values read at (re)connect."""
        return [e for k, e in self.events if k == "current" and e.name == name]

    def kinds(self, device: str) -> list[str]:
        return [k for k, e in self.events if k in ("online", "offline") and e.device_id == device]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met in {timeout}s; events: {self.events[-20:]}")
            await asyncio.sleep(0.02)
