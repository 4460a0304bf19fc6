"""`uns init` gives the edge node and the broker their metrics endpoints, loopback or container-wide."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unshub.cli.stack import Profile, StackPorts, write_stack_config


@pytest.mark.parametrize(("profile", "host"), [(Profile.LOCAL, "127.0.0.1"), (Profile.COMPOSE, "0.0.0.0")])
def test_generated_configs_serve_metrics(tmp_path: Path, profile: Profile, host: str) -> None:
    from broker.config import load_settings
    from edge_node.config import load_edge_config

    summary = write_stack_config(tmp_path, profile, StackPorts(edge_http=19102, broker_http=19101))
    assert summary["ports"]["edge_http"] == 19102 and summary["ports"]["broker_http"] == 19101
    assert load_settings(tmp_path / "broker.yaml").http_address() == (host, 19101)
    edge = load_edge_config(tmp_path / "plant.yaml")
    assert edge.http is not None and (edge.http.host, edge.http.port) == (host, 19102)


def test_default_ports_and_compose_mapping() -> None:
    ports = StackPorts()
    assert (ports.edge_http, ports.broker_http) == (9102, 9101)
    assert ports.as_dict() == {"mqtt": 1883, "ws": 9001, "opcua": 4840, "http": 8080, "edge_http": 9102,
                               "broker_http": 9101}
    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
    # "<publish address>:host:container" (tests/deploy/test_compose_hardening.py checks the address)
    assert any(p.endswith(":9101:9101") for p in compose["services"]["broker"]["ports"])
    assert any(p.endswith(":9102:9102") for p in compose["services"]["edge"]["ports"])


def test_uns_up_prints_the_metrics_urls() -> None:
    from rich.console import Console

    from unshub.cli.up import BrokerEngine, _print_urls

    console = Console(record=True, width=200)
    ports = StackPorts(edge_http=19102, broker_http=19101)
    _print_urls(console, {"tokens": {}, "line": "acme/plant1/packaging/line1"}, ports, BrokerEngine.EMBEDDED,
                edge_metrics=True)
    text = console.export_text()
    assert "http://127.0.0.1:19101/metrics" in text and "http://127.0.0.1:19102/metrics" in text
    console = Console(record=True, width=200)
    _print_urls(console, {"tokens": {}}, ports, None, edge_metrics=False)  # external broker, own plant.yaml
    assert "1910" not in console.export_text()


def test_uns_up_with_mosquitto_says_there_is_no_broker_metrics_endpoint() -> None:
    """Mosquitto has no HTTP /metrics: the summary says where its counters are instead of a dead URL."""
    from rich.console import Console

    from unshub.cli.up import BrokerEngine, _print_urls

    console = Console(record=True, width=200)
    ports = StackPorts(mqtt=11883, ws=19001, edge_http=19102, broker_http=19101)
    _print_urls(console, {"tokens": {}, "line": "acme/plant1/packaging/line1"}, ports, BrokerEngine.MOSQUITTO,
                "mosquitto version 2.0.11 (/usr/sbin/mosquitto -c conf/mosquitto.conf)", edge_metrics=True)
    text = console.export_text()
    assert "  Broker           mosquitto version 2.0.11 (/usr/sbin/mosquitto -c conf/mosquitto.conf)" in text
    assert "no broker /metrics with Mosquitto: its counters are on the MQTT topics $SYS/#" in text
    assert "19101" not in text and "19001" not in text  # no broker metrics port, no WebSocket listener
    assert "mqtt://127.0.0.1:11883" in text and "topics: '#' and '$SYS/#'" in text
