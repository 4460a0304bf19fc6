"""The supervisor's readiness probe finds a listener without connecting to it (issue 17 item 10).

A connect-and-close probe is a client that never speaks: the embedded broker logged an ERROR and
its WebSocket listener a traceback for it on every `uns up` start. The whole-stack check (no ERROR
or traceback in broker.log) is in tests/e2e/test_up_twice.py; this is the probe's own contract.
"""

from __future__ import annotations

import socket

import pytest

from tests.support.net import free_port
from unshub.supervisor import _port_answers


def test_a_listener_is_found_and_never_sees_a_connection() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        assert _port_answers(port) is True
        assert _port_answers(port) is True
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing in the backlog: the probe never connected


def test_a_free_port_is_not_ready() -> None:
    assert _port_answers(free_port()) is False
