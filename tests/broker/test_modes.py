"""Anonymous demo modes, password-file reload, and argon2 verification off the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from broker.config import BrokerSettings, Listener
from broker.server import EmbeddedBroker
from tests.support.embedded_broker import User, embedded_broker, write_password_file

from .clients import collector, try_connect


def test_read_only_demo_lets_anonymous_watch_but_not_publish(tmp_path: Path) -> None:
    with embedded_broker(tmp_path, users={"edge": User("pw", "edge", "G", "E")}, demo_anonymous="read-only",
                         websocket=False) as broker:
        with collector(broker.url) as anonymous, collector(broker.url_for("edge", "pw")) as edge:
            assert anonymous.subscribe("spBv1.0/#", 1) == 1
            anonymous.publish("spBv1.0/G/NCMD/E", b"anonymous command", qos=1)  # dropped
            edge.publish("spBv1.0/G/NDATA/E", b"data", qos=1)
            assert anonymous.wait_for("spBv1.0/G/NDATA/E").payload == b"data"
            assert all(m.topic != "spBv1.0/G/NCMD/E" for m in anonymous.drain(0.3))


def test_anonymous_refused_when_demo_mode_is_off(tmp_path: Path) -> None:
    with embedded_broker(tmp_path, users={"a": User("pw")}, demo_anonymous="off", websocket=False) as broker:
        client, accepted = try_connect(broker.url)
        client.loop_stop()
        assert not accepted
        client, accepted = try_connect(broker.url_for("a", "pw"))
        client.disconnect()
        client.loop_stop()
        assert accepted


async def test_password_verified_off_the_event_loop_and_file_reloaded(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import broker.auth_plugin as auth_plugin

    verify_threads: list[bool] = []
    real_verify = auth_plugin.verify_password

    def spy(password_hash: str, password: str) -> bool:
        verify_threads.append(threading.current_thread() is threading.main_thread())
        return real_verify(password_hash, password)

    monkeypatch.setattr(auth_plugin, "verify_password", spy)
    users = write_password_file(tmp_path / "users.yaml", {"a": User("pw-a")})
    settings = BrokerSettings(tcp=Listener(host="127.0.0.1", port=0), websocket=None, password_file=users,
                              sys_interval=0)
    async with EmbeddedBroker(settings) as embedded:
        url = f"mqtt://127.0.0.1:{embedded.ports['tcp']}"

        def connect(user: str, password: str) -> bool:
            client, accepted = try_connect(url.replace("mqtt://", f"mqtt://{user}:{password}@"))
            client.disconnect()
            client.loop_stop()
            return accepted

        assert await asyncio.to_thread(connect, "a", "pw-a")
        assert not await asyncio.to_thread(connect, "b", "pw-b")
        write_password_file(users, {"a": User("pw-a"), "b": User("pw-b")})  # `uns broker passwd` meanwhile
        assert await asyncio.to_thread(connect, "b", "pw-b")
    assert verify_threads and not any(verify_threads), "argon2 ran on the event loop thread"
