"""uns.mqtt_session: the reconnect policy (pure) and the aiomqtt reconnect loop against real brokers.

The loop runs a real aiomqtt session against Mosquitto that is killed and started again on the
same port, against the embedded broker that refuses a wrong password, and against a peer that
accepts TCP and never answers; it must reconnect, log each outage once, reset its backoff on
every accepted connection, and stop cleanly (``stop`` set, or cancelled) with nothing left
running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import aiomqtt
import pytest

from tests.support.embedded_broker import User, embedded_broker
from tests.support.mosquitto import mosquitto_broker
from tests.support.mqtt_faults import MuteListener, until
from tests.support.net import free_port
from uns.aio import run_until_first_done
from uns.mqtt_session import ErrorClass, ReconnectPolicy, classify, reconnect_forever

pytestmark = pytest.mark.timeout(90)

LOGGER = "tests.mqtt_session"


# -- the policy, no I/O ----------------------------------------------------------------------------

def test_backoff_doubles_to_the_maximum_and_an_accepted_connection_resets_it() -> None:
    policy = ReconnectPolicy("t", 0.5, 3.0)
    delays = []
    for _ in range(5):
        policy.failed("connection refused")
        delays.append(policy.next_delay())
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    policy.connected()
    policy.failed("connection lost", was_up=True)
    assert policy.next_delay() == 0.5  # a later outage starts from the minimum again


def test_one_log_line_per_outage_and_one_on_reconnect(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    times = iter([100.0, 107.5])
    policy = ReconnectPolicy("link x", 0.1, 1.0, logger=logging.getLogger(LOGGER), clock=lambda: next(times))
    for _ in range(4):
        policy.failed("[Errno 111] Connection refused")
        policy.next_delay()
    policy.connected()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert lines == [
        ("WARNING", "link x: cannot connect (network): [Errno 111] Connection refused; reconnecting in 0.10 s"),
        ("DEBUG", "link x: cannot connect (network): [Errno 111] Connection refused (attempt 2)"),
        ("DEBUG", "link x: cannot connect (network): [Errno 111] Connection refused (attempt 3)"),
        ("DEBUG", "link x: cannot connect (network): [Errno 111] Connection refused (attempt 4)"),
        ("INFO", "link x: connected again after 4 failed attempt(s) in 7.5 s"),
    ]


def test_errors_are_classified_from_codes_and_texts() -> None:
    from aiomqtt.exceptions import MqttCodeError, MqttConnectError

    assert classify(MqttConnectError(5)) is ErrorClass.NOT_AUTHORISED
    assert classify(MqttConnectError(4)) is ErrorClass.NOT_AUTHORISED
    assert classify(MqttConnectError(3)) is ErrorClass.REFUSED
    assert classify(MqttCodeError(4, "publish")) is ErrorClass.NETWORK  # paho's MQTT_ERR_NO_CONN, not a CONNACK
    assert classify(aiomqtt.MqttError("[Errno 111] Connection refused")) is ErrorClass.NETWORK
    assert classify("refused: Not authorized") is ErrorClass.NOT_AUTHORISED  # paho (mirror publisher) texts
    assert classify("refused: Server unavailable") is ErrorClass.REFUSED


def test_a_bad_range_is_refused_with_the_values() -> None:
    with pytest.raises(ValueError, match=r"0 < minimum \(2\) <= maximum \(1\)"):
        ReconnectPolicy("t", 2, 1)


# -- the loop, real brokers -------------------------------------------------------------------------

class _Session:
    """A real aiomqtt session body: connect, report it, hold the connection until stopped."""

    def __init__(self, port: int, policy: ReconnectPolicy, stop: asyncio.Event, **client: str) -> None:
        self.port = port
        self.policy = policy
        self.stop = stop
        self.client = client
        self.sessions = 0
        self.downs = 0
        self.retries = 0
        self.up = asyncio.Event()

    async def __call__(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="mqtt-session-test", keepalive=2,
                                  timeout=2, **self.client) as client:  # type: ignore[arg-type]
            self.policy.connected()
            self.sessions += 1
            await client.subscribe("t/#")
            self.up.set()
            # the contract: return once stop is set; the reader ends with an MqttError when the broker goes away
            await run_until_first_done(self._read(client), self.stop.wait())

    async def _read(self, client: aiomqtt.Client) -> None:
        async for _ in client.messages:
            pass

    def down(self) -> None:
        self.downs += 1
        self.up.clear()

    def retry(self) -> None:
        self.retries += 1


def _others() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.mark.mosquitto
async def test_broker_killed_and_started_again_reconnects_once_logged_and_stops(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    port = free_port()
    stop = asyncio.Event()
    policy = ReconnectPolicy("test session", 0.05, 0.2, logger=logging.getLogger(LOGGER))
    session = _Session(port, policy, stop)
    before = _others()
    with mosquitto_broker(tmp_path, port=port) as broker:
        loop = asyncio.create_task(reconnect_forever(session, stop=stop, policy=policy, on_down=session.down,
                                                     on_retry=session.retry))
        await asyncio.wait_for(session.up.wait(), 15)
        os.kill(broker.pid, signal.SIGKILL)  # the broker we started, by PID
        await until(lambda: policy.attempts >= 3, 20, "three failed attempts while the broker is down")
    again = tmp_path / "again"
    again.mkdir()
    with mosquitto_broker(again, port=port):
        await until(lambda: session.sessions == 2 and session.up.is_set(), 20, "connected again")
        connections = policy.connections  # read before stopping
        stop.set()
        await asyncio.wait_for(loop, 10)
    assert connections == 2 and session.sessions == 2
    assert session.downs == session.retries + 1  # every session ended once; the stop is not retried
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("test session: connection lost")  # one per outage
    infos = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert len(infos) == 1 and infos[0].startswith("test session: connected again after ")
    assert policy.delay_s == 0.05 and policy.attempts == 0  # reset by the accepted connection
    await until(lambda: _others() <= before, 10, "no task left behind")


async def test_wrong_password_is_logged_as_not_authorised_and_stop_ends_the_backoff(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with embedded_broker(tmp_path, users={"u1": User("right")}, demo_anonymous="off", websocket=False) as broker:
        stop = asyncio.Event()
        policy = ReconnectPolicy("auth session", 30, 60, logger=logging.getLogger(LOGGER))
        session = _Session(broker.port, policy, stop, username="u1", password="wrong")
        loop = asyncio.create_task(reconnect_forever(session, stop=stop, policy=policy, on_down=session.down,
                                                     on_retry=session.retry))
        await until(lambda: session.retries == 1, 20, "refused once, now in a 30 s backoff")
        stop.set()  # ends the backoff at once
        await asyncio.wait_for(loop, 10)
    assert session.sessions == 0 and session.downs == 1
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
    assert [r.levelname for r in errors] == ["ERROR"]
    assert errors[0].getMessage().startswith("auth session: cannot connect (not authorised): ")
    assert "check the credentials" in errors[0].getMessage()


async def test_cancel_while_connecting_to_a_silent_peer_propagates(tmp_path: Path) -> None:
    port = free_port()
    stop = asyncio.Event()
    policy = ReconnectPolicy("silent", 0.1, 0.2)
    session = _Session(port, policy, stop)
    before = _others()
    async with MuteListener(port, close_after_read=False) as peer:
        loop = asyncio.create_task(reconnect_forever(session, stop=stop, policy=policy, on_down=session.down))
        await until(lambda: peer.accepted == 1, 10, "connecting")
        loop.cancel()
        done, _ = await asyncio.wait({loop}, timeout=10)
        assert loop in done and loop.cancelled()  # never swallowed
    assert session.downs == 1 and session.sessions == 0 and policy.attempts == 0
    await until(lambda: _others() <= before, 10, "no task left behind")


async def test_cancel_during_the_backoff_propagates_at_once() -> None:
    port = free_port()  # nothing listens: refused, then a 30 s backoff
    stop = asyncio.Event()
    policy = ReconnectPolicy("refused", 30, 60)
    session = _Session(port, policy, stop)
    before = _others()
    loop = asyncio.create_task(reconnect_forever(session, stop=stop, policy=policy, on_down=session.down,
                                                 on_retry=session.retry))
    await until(lambda: session.retries == 1, 10, "refused once, now in the backoff")
    loop.cancel()
    done, _ = await asyncio.wait({loop}, timeout=10)
    assert loop in done and loop.cancelled()
    assert session.downs == 1 and session.sessions == 0 and policy.attempts == 1
    await until(lambda: _others() <= before, 10, "no task left behind")
