"""A refused CONNECT leaves nothing behind and kicks nobody off.

amqtt 0.12.1 takes over a live client with the same client id and files the new session as
connected before it looks at the authentication verdict; our broker refuses first.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.embedded_broker import EmbeddedBrokerEndpoint, User, embedded_broker
from tests.support.net import free_port

from .clients import collector, try_connect


@pytest.fixture
def broker_with_metrics(tmp_path: Path) -> Iterator[EmbeddedBrokerEndpoint]:
    with embedded_broker(tmp_path, users={"admin": User("admin-pw", "admin")}, demo_anonymous="off",
                         metrics_port=free_port()) as endpoint:
        yield endpoint


def _gauge(endpoint: EmbeddedBrokerEndpoint, name: str) -> float:
    with urllib.request.urlopen(f"{endpoint.metrics_url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_refused_connects_leave_no_sessions_and_do_not_take_over(broker_with_metrics: EmbeddedBrokerEndpoint) -> None:
    broker = broker_with_metrics
    with collector(broker.url_for("admin", "admin-pw"), client_id="victim") as victim:
        victim.subscribe("probe/#", qos=1)
        before = _gauge(broker, "uns_broker_sessions")
        for index in range(10):
            client, accepted = try_connect(broker.url_for("admin", "wrong"), client_id=f"intruder-{index}")
            client.disconnect()
            client.loop_stop()
            assert not accepted
        # the same client id as a live client, with a wrong password: the victim must stay connected
        client, accepted = try_connect(broker.url_for("admin", "wrong"), client_id="victim")
        client.disconnect()
        client.loop_stop()
        assert not accepted
        time.sleep(0.3)
        assert _gauge(broker, "uns_broker_sessions") == before
        assert _gauge(broker, "uns_broker_connects_refused_total") >= 11
        with collector(broker.url_for("admin", "admin-pw"), client_id="publisher") as publisher:
            publisher.publish("probe/still-here", b"1", qos=1)
        assert victim.wait_for("probe/still-here").payload == b"1"
