"""MQTT connection faults for tests: a TCP peer on a real loopback port that accepts and never
completes the MQTT handshake, and a polling wait for asyncio tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` on the running loop (the code under test keeps running meanwhile)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout}s")
        await asyncio.sleep(0.05)


class MuteListener:
    """A TCP peer that accepts connections and never answers CONNECT (``close_after_read``:
    reads the CONNECT, then resets the connection: a broker killed during the handshake)."""

    def __init__(self, port: int, *, close_after_read: bool) -> None:
        self.port = port
        self.close_after_read = close_after_read
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> MuteListener:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        if self.close_after_read:
            await reader.read(1)
            writer.transport.abort()
