"""Broker test fixtures: the embedded broker (ours) and plain amqtt (the control), as subprocesses."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.embedded_broker import EmbeddedBrokerEndpoint, User, embedded_broker
from tests.support.mosquitto import BrokerEndpoint
from tests.support.net import free_port, wait_for_port
from tests.support.procs import running

HERE = Path(__file__).parent

# the users of the "secured" broker: password file, TLS and WebSocket, anonymous access off
USERS = {
    "admin": User("admin-pw", "admin"),
    "host": User("host-pw", "host"),
    "viewer": User("viewer-pw", "explorer"),
    "e1": User("e1-pw", "edge", "G1", "E1"),
    "e2": User("e2-pw", "edge", "G1", "E2"),
}


@pytest.fixture(scope="module")
def plain_amqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerEndpoint]:
    """PLAIN amqtt 0.12.1 with anonymous access: the broker our fixes are measured against."""
    port = free_port()
    log = tmp_path_factory.mktemp("plain-amqtt") / "amqtt.log"
    with running([sys.executable, str(HERE / "plain_amqtt_broker.py"), str(port)], log_path=log) as proc:
        wait_for_port(port)
        yield BrokerEndpoint("127.0.0.1", port, "plain-amqtt", proc.pid)


@pytest.fixture(scope="module")
def ours_anonymous(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBrokerEndpoint]:
    """Our embedded broker with anonymous read-write access (same footing as plain_amqtt)."""
    with embedded_broker(tmp_path_factory.mktemp("ours-anon"), websocket=False) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBrokerEndpoint]:
    """Our embedded broker with users, TLS and WebSocket listeners, anonymous access off."""
    with embedded_broker(tmp_path_factory.mktemp("ours-secured"), users=USERS, demo_anonymous="off",
                         tls=True, websocket=True, sys_interval=0.5) as endpoint:
        yield endpoint


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedBrokerEndpoint]:
    """A fresh embedded broker for one test (anonymous read-write, TCP + WebSocket)."""
    with embedded_broker(tmp_path) as endpoint:
        yield endpoint
