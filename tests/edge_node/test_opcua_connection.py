"""The OPC UA connection supervisor (edge_node.opcua.connection) against a real asyncua server.

Checks the rules of its module docstring: a server restart gives a new session on a new Client
with the hooks in their order; a peer that accepts TCP and never answers costs one bounded
timeout; a cancel during connect, during the session or during the backoff ends ``run()`` as
cancelled (never swallowed), leaves no task behind and closes the client's socket (the peer sees
EOF).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from asyncua import Client
from asyncua.client.ua_client import UASocketState

from edge_node.config import OpcUaEndpointConfig
from edge_node.opcua.connection import OpcUaConnection, watch_server_state
from tests.edge_node.opcua_test_server import TestOpcUaServer
from tests.support.mqtt_faults import until
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(60)


def _endpoint(url: str, **extra: float) -> OpcUaEndpointConfig:
    fields: dict[str, float] = {"keepalive_interval_s": 0.2, "timeout_s": 0.5, "reconnect_min_s": 0.1,
                                "reconnect_max_s": 0.4}
    fields.update(extra)
    return OpcUaEndpointConfig(url=url, **fields)  # type: ignore[arg-type]


class _Recorder:
    """The hooks of one supervised connection, recording what happened in which order."""

    def __init__(self, endpoint: OpcUaEndpointConfig, data_dir: Path) -> None:
        self.events: list[str] = []
        self.errors: list[Exception] = []
        self.clients: list[Client] = []
        self.up = asyncio.Event()
        self.lost = asyncio.Event()
        self.connection = OpcUaConnection(endpoint, data_dir, label="test", session=self._session,
                                          on_error=self._error, on_closed=self._closed, on_lost=self._lost)

    async def _session(self, client: Client) -> None:
        self.events.append("session")
        self.clients.append(client)
        self.connection.backoff.reset()
        self.up.set()
        await watch_server_state(client, self.connection.endpoint)

    def _error(self, exc: Exception) -> None:
        self.events.append("error")
        self.errors.append(exc)

    def _closed(self) -> None:
        self.events.append("closed")
        self.up.clear()

    async def _lost(self) -> None:
        self.events.append("lost")
        self.lost.set()


class _SilentPeer:
    """Accepts TCP connections, never answers, and notes when the client closes its side (EOF)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = 0
        self.closed_by_client = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> _SilentPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        while await reader.read(4096):
            pass  # the client's Hello: no answer, ever
        self.closed_by_client += 1
        writer.close()


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task``; it must end *cancelled* (a swallowed cancel would make it run on)."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    assert task in done, "run() did not end after a cancel"
    assert task.cancelled()


def _socket_closed(client: Client) -> bool:
    protocol = client.uaclient.protocol
    return protocol is None or protocol.state is UASocketState.CLOSED


def _other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_server_restart_new_session_on_a_new_client_hooks_in_order(tmp_path: Path) -> None:
    server = await TestOpcUaServer().start()
    recorder = _Recorder(_endpoint(server.url), tmp_path)
    task = asyncio.create_task(recorder.connection.run())
    try:
        await asyncio.wait_for(recorder.up.wait(), 15)
        first = recorder.clients[0]
        assert recorder.connection.client is first
        await server.stop()
        await asyncio.wait_for(recorder.lost.wait(), 15)
        assert recorder.events[:4] == ["session", "error", "closed", "lost"]
        # the watchdog's SessionDeadError or asyncua's "client is disconnected", whichever notices first
        assert isinstance(recorder.errors[0], ConnectionError)
        await until(lambda: len(recorder.errors) >= 2, 15, "a refused reconnect")  # while the server is down

        await server.start()  # same port
        await asyncio.wait_for(recorder.up.wait(), 15)
        assert recorder.events.count("session") == 2
        assert all(isinstance(e, ConnectionRefusedError) for e in recorder.errors[1:])  # nothing listened
        assert recorder.clients[1] is not first  # rule 1: a new Client, never the old one again
        assert _socket_closed(first)  # the old one was closed when its session died
        assert recorder.connection.client is recorder.clients[1]
        # every failed attempt: error, then closed, then lost, in that order
        failures = recorder.events[1:recorder.events.index("session", 1)]
        assert failures == ["error", "closed", "lost"] * (len(failures) // 3) and failures
    finally:
        await _cancelled(task)
        await server.stop()
    assert recorder.connection.client is None
    assert recorder.events[-1] == "closed"  # cancelled: closed, but no "lost" (no DDEATH on shutdown)


async def test_a_peer_that_accepts_and_never_answers_costs_one_timeout_per_attempt(tmp_path: Path) -> None:
    async with _SilentPeer() as peer:
        recorder = _Recorder(_endpoint(f"opc.tcp://127.0.0.1:{peer.port}/"), tmp_path)
        task = asyncio.create_task(recorder.connection.run())
        try:
            await until(lambda: len(recorder.errors) >= 2, 20, "two timed-out attempts")
            assert all(isinstance(e, TimeoutError) for e in recorder.errors)
            assert "session" not in recorder.events
            await until(lambda: peer.closed_by_client >= 2, 10, "the timed-out sockets closed")
        finally:
            await _cancelled(task)
        assert peer.accepted == peer.closed_by_client  # no socket left open by a timed-out attempt


async def test_cancel_during_connect_ends_run_and_closes_the_socket(tmp_path: Path) -> None:
    before = _other_tasks()
    async with _SilentPeer() as peer:
        # a long timeout: the cancel arrives while connect() is still waiting for an answer
        recorder = _Recorder(_endpoint(f"opc.tcp://127.0.0.1:{peer.port}/", timeout_s=30), tmp_path)
        task = asyncio.create_task(recorder.connection.run())
        await until(lambda: peer.accepted == 1, 10, "connecting")
        await _cancelled(task)
        assert recorder.events == ["closed"]  # no error, no "lost": a cancel is not a failure
        assert recorder.connection.client is None
        await until(lambda: peer.closed_by_client == 1, 10, "the socket closed")
    await until(lambda: _other_tasks() <= before, 10, "no task left behind")


async def test_cancel_during_the_session_closes_the_client(tmp_path: Path) -> None:
    server = await TestOpcUaServer().start()
    before = _other_tasks()
    try:
        recorder = _Recorder(_endpoint(server.url), tmp_path)
        task = asyncio.create_task(recorder.connection.run())
        await asyncio.wait_for(recorder.up.wait(), 15)
        await _cancelled(task)
        assert recorder.events == ["session", "closed"]
        assert recorder.connection.client is None
        assert _socket_closed(recorder.clients[0])  # rule 6
        await until(lambda: _other_tasks() <= before, 10, "no task left behind")
    finally:
        await server.stop()


async def test_cancel_during_backoff_ends_run_at_once(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: every attempt is refused
    before = _other_tasks()
    recorder = _Recorder(_endpoint(f"opc.tcp://127.0.0.1:{port}/", reconnect_min_s=30, reconnect_max_s=60),
                         tmp_path)
    task = asyncio.create_task(recorder.connection.run())
    await asyncio.wait_for(recorder.lost.wait(), 15)  # the first attempt failed: now in a 15-30 s backoff
    assert recorder.events == ["error", "closed", "lost"]
    assert isinstance(recorder.errors[0], OSError)
    await _cancelled(task)
    assert recorder.events == ["error", "closed", "lost"]  # nothing ran after the cancel
    await until(lambda: _other_tasks() <= before, 10, "no task left behind")


async def test_the_command_writer_bounds_build_client_against_a_silent_secure_peer(tmp_path: Path) -> None:
    """build_client of a secure endpoint asks the server for its certificate (GetEndpoints): a peer
    that never answers costs one bounded attempt, then another, and the writer stays down."""
    from edge_node.commands.opcua_writer import OpcUaWriter

    async with _SilentPeer() as peer:
        endpoint = OpcUaEndpointConfig(url=f"opc.tcp://127.0.0.1:{peer.port}/", security_policy="Basic256Sha256",
                                       security_mode="Sign", timeout_s=0.5, reconnect_min_s=0.1,
                                       reconnect_max_s=0.2)  # type: ignore[arg-type]
        writer = OpcUaWriter(endpoint, tmp_path)
        task = asyncio.create_task(writer.run())
        try:
            await until(lambda: peer.accepted >= 2, 30, "a second attempt after the first timed out")
            assert writer.last_error == "TimeoutError: "
            assert not writer.connected.is_set() and writer.disconnected.is_set()
        finally:
            await _cancelled(task)
        assert writer.connection.client is None


class _LateReader:
    """A client whose keep-alive reads are answered only after ``answer_after`` reads (none before)."""

    def __init__(self, answer_after: int) -> None:
        self.reads = 0
        self.answer_after = answer_after
        self.uaclient = self

    async def read_attributes(self, nodes: object, attr: object) -> list[object]:
        from asyncua import ua

        self.reads += 1
        if self.reads <= self.answer_after:
            await asyncio.sleep(10)  # beyond timeout_s: late
        return [ua.DataValue(ua.Variant(ua.ServerState.Shutdown, ua.VariantType.Int32))]


async def test_a_late_keepalive_read_keeps_a_session_whose_server_still_publishes() -> None:
    # an alarm flood on a busy machine: the read's answer queues behind notifications; ending that
    # session lost every event the server held for it (bench/alarm_flood.py). Publishing = alive.
    endpoint = _endpoint("opc.tcp://127.0.0.1:1", keepalive_interval_s=0.01, timeout_s=0.05)
    late: list[int] = []
    client = _LateReader(answer_after=2)
    with pytest.raises(Exception, match="server state is Shutdown"):  # the third read answers: a real end
        await watch_server_state(client, endpoint, heard=time.monotonic, on_late=lambda: late.append(1))  # type: ignore[arg-type]
    assert (client.reads, len(late)) == (3, 2)
    silent = _LateReader(answer_after=5)  # nothing published either: dead at the first late read
    with pytest.raises(Exception, match="no answer to the keep-alive read within 0.05 s"):
        await watch_server_state(silent, endpoint, heard=lambda: None, on_late=lambda: late.append(1))  # type: ignore[arg-type]
    assert (silent.reads, len(late)) == (1, 2)
