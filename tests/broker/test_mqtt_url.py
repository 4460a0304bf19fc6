"""uns.mqtt_url: parsing, errors, and the aiomqtt / paho helpers."""

from __future__ import annotations

import ssl

import paho.mqtt.client as paho
import pytest

from uns.mqtt_url import BrokerURLError, configure_paho, paho_client, parse_broker_url


@pytest.mark.parametrize(("text", "scheme", "host", "port", "tls", "path"), [
    ("mqtt://localhost", "mqtt", "localhost", 1883, False, None),
    ("mqtts://broker.plant:8884", "mqtts", "broker.plant", 8884, True, None),
    ("ws://10.0.0.5", "ws", "10.0.0.5", 9001, False, "/mqtt"),
    ("wss://h:443/ws", "wss", "h", 443, True, "/ws"),
    ("mqtt://[::1]:1884", "mqtt", "::1", 1884, False, None),
    ("MQTT://h:1/", "mqtt", "h", 1, False, None),
])
def test_parse(text: str, scheme: str, host: str, port: int, tls: bool, path: str | None) -> None:
    url = parse_broker_url(text)
    assert (url.scheme, url.host, url.port, url.tls, url.websocket_path) == (scheme, host, port, tls, path)


def test_credentials_are_decoded_and_never_shown() -> None:
    url = parse_broker_url("mqtt://edge%3A1:p%40ss%3Aw@h:1883")
    assert (url.username, url.password) == ("edge:1", "p@ss:w")
    assert "p@ss" not in str(url) and "p%40ss" not in repr(url) and "***" in str(url)
    assert parse_broker_url(url.to_string()) == url


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"), ("localhost:1883", "no scheme"), ("tcp://h", "unknown scheme"), ("ssl://h", "mqtts://"),
    ("mqtt://", "no host"), ("mqtt://h:99999", "bad port"), ("mqtt://h:0", "1-65535"),
    ("mqtt://h/x", "only makes sense for ws"), ("mqtt://h?cafile=/x", "need a TLS scheme"),
    ("mqtts://h?foo=1", "unknown option"), ("mqtts://h?insecure=maybe", "true or false"),
    ("mqtt://:pw@h", "no user name"),
])
def test_errors_are_specific(text: str, message: str) -> None:
    with pytest.raises(BrokerURLError, match=message):
        parse_broker_url(text)


def test_error_hides_password() -> None:
    with pytest.raises(BrokerURLError) as info:
        parse_broker_url("tcp://u:topsecret@h")
    assert "topsecret" not in str(info.value)


async def test_aiomqtt_kwargs() -> None:
    import aiomqtt

    kwargs = parse_broker_url("wss://u:p@h:9443/mqtt?insecure=true").aiomqtt_kwargs(identifier="x")
    assert kwargs["transport"] == "websockets" and kwargs["websocket_path"] == "/mqtt"
    assert isinstance(kwargs["tls_context"], ssl.SSLContext) and kwargs["tls_context"].verify_mode == ssl.CERT_NONE
    assert (kwargs["hostname"], kwargs["port"], kwargs["username"], kwargs["password"]) == ("h", 9443, "u", "p")
    aiomqtt.Client(**kwargs)  # accepted by the real constructor
    plain = parse_broker_url("mqtt://h").aiomqtt_kwargs()
    assert "tls_context" not in plain and plain["transport"] == "tcp"


def test_paho_helpers() -> None:
    client = paho_client("ws://u:p@h:9001/mqtt", client_id="c")
    assert client._transport == "websockets" and client._username == b"u"
    tcp = paho.Client(paho.CallbackAPIVersion.VERSION2)
    with pytest.raises(BrokerURLError, match="transport"):
        configure_paho(tcp, parse_broker_url("ws://h"))
    assert configure_paho(tcp, parse_broker_url("mqtts://h:1?insecure=1")) == ("h", 1)
