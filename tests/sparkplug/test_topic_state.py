"""Topic namespace and the 3.0 STATE JSON payload."""

from __future__ import annotations

import re

import pytest

from uns.sparkplug.errors import InvalidIdError, InvalidTopicError, MalformedPayloadError
from uns.sparkplug.state import StatePayload
from uns.sparkplug.topic import (
    MessageType,
    SparkplugTopic,
    StateTopic,
    certificate_topic,
    node_topic,
    parse_certificate_topic,
    parse_node_topic,
    parse_topic,
    validate_id,
)

EDGE_TYPES = [t for t in MessageType if t is not MessageType.STATE]


@pytest.mark.parametrize("message_type", EDGE_TYPES, ids=str)
def test_parse_and_format_every_message_type(message_type: MessageType) -> None:
    """tck-id-topic-structure, tck-id-topic-structure-namespace-a,
    tck-id-topic-structure-namespace-device-id-associated-message-types and -non-associated-."""
    device = "Press 1".replace(" ", "_") if message_type.is_device else None
    text = node_topic("Plant1", message_type, "Edge-01", device)
    expected = f"spBv1.0/Plant1/{message_type}/Edge-01" + (f"/{device}" if device else "")
    assert text == expected
    parsed = parse_topic(text)
    assert parsed == SparkplugTopic("Plant1", message_type, "Edge-01", device)
    assert str(parsed) == text and parsed.node == ("Plant1", "Edge-01")


def test_device_level_rules() -> None:
    with pytest.raises(InvalidTopicError, match="need a device_id"):
        parse_topic("spBv1.0/g/DDATA/e")
    with pytest.raises(InvalidTopicError, match="carry no device_id"):
        parse_topic("spBv1.0/g/NDATA/e/d")


def test_with_type_gives_sibling_topics() -> None:
    t = SparkplugTopic("g", MessageType.DBIRTH, "e", "d")
    assert str(t.with_type(MessageType.DCMD)) == "spBv1.0/g/DCMD/e/d"
    assert str(t.with_type(MessageType.NDEATH)) == "spBv1.0/g/NDEATH/e"


def test_state_topic() -> None:
    parsed = parse_topic("spBv1.0/STATE/scada-host")
    assert parsed == StateTopic("scada-host") and str(parsed) == "spBv1.0/STATE/scada-host"
    with pytest.raises(InvalidTopicError, match="STATE"):
        parse_topic("spBv1.0/STATE/a/b")
    with pytest.raises(InvalidTopicError, match="STATE"):
        parse_node_topic("spBv1.0/STATE/h")


def test_certificate_topics() -> None:
    """Sparkplug-aware broker: births under $sparkplug/certificates/ (spec: Sparkplug Aware MQTT Server)."""
    nbirth = SparkplugTopic("g", MessageType.NBIRTH, "e")
    dbirth = SparkplugTopic("g", MessageType.DBIRTH, "e", "d")
    assert certificate_topic(nbirth) == "$sparkplug/certificates/spBv1.0/g/NBIRTH/e"
    assert certificate_topic(dbirth) == "$sparkplug/certificates/spBv1.0/g/DBIRTH/e/d"
    assert parse_certificate_topic(certificate_topic(dbirth)) == dbirth
    with pytest.raises(InvalidTopicError):
        certificate_topic(SparkplugTopic("g", MessageType.NDATA, "e"))
    with pytest.raises(InvalidTopicError, match="NBIRTH or DBIRTH"):
        parse_certificate_topic("$sparkplug/certificates/spBv1.0/g/NDATA/e")
    with pytest.raises(InvalidTopicError, match="does not start"):
        parse_certificate_topic("spBv1.0/g/NBIRTH/e")


@pytest.mark.parametrize(("bad", "named"), [("a+b", "'+'"), ("a#", "'#'"), ("x\x00", "NUL"), ("a b", "whitespace")])
@pytest.mark.parametrize("level", ["group", "edge", "device"])
def test_invalid_ids_name_the_bad_character(bad: str, named: str, level: str) -> None:
    """tck-id-topic-structure-namespace-valid-group-id, -valid-edge-node-id, -valid-device-id."""
    ids = {"group": "g", "edge": "e", "device": "d"} | {level: bad}
    with pytest.raises(InvalidIdError, match=re.escape(named)):
        SparkplugTopic(ids["group"], MessageType.DDATA, ids["edge"], ids["device"])
    with pytest.raises(InvalidTopicError, match=re.escape(named)):
        parse_topic(f"spBv1.0/{ids['group']}/DDATA/{ids['edge']}/{ids['device']}")


def test_slash_in_id_and_other_bad_topics() -> None:
    with pytest.raises(InvalidIdError, match="'/'"):
        validate_id("a/b", "group_id")
    with pytest.raises(InvalidIdError, match="empty"):
        validate_id("", "group_id")
    for topic in ("spAv1.0/g/NDATA/e", "spBv1.0/g/XDATA/e", "spBv1.0/g", "spBv1.0/g/DDATA/e/d/x"):
        with pytest.raises(InvalidTopicError):
            parse_topic(topic)
    assert validate_id("Fábrica-Línea_1", "group_id") == "Fábrica-Línea_1"


def test_state_payload_round_trip_with_integer_timestamp() -> None:
    """tck-id-host-topic-phid-birth-payload: JSON {"online", "timestamp"} with an integer timestamp."""
    state = StatePayload(online=True, timestamp=1_700_000_000_123)
    assert state.to_bytes() == b'{"online":true,"timestamp":1700000000123}'
    assert StatePayload.from_bytes(state.to_bytes()) == state
    assert StatePayload.from_bytes(b'{"online": false, "timestamp": 5, "extra": 1}').online is False


@pytest.mark.parametrize("data", [
    b'{"online": true, "timestamp": 1700000000000.0}',  # float: the TCK's Jackson long parse fails
    b'{"online": true, "timestamp": 1.7e12}',
    b'{"online": "true", "timestamp": 1}',
    b'{"online": true}',
    b'ONLINE',  # Sparkplug 2.2 STATE
    b'[]',
    b'\xff\xfe',
])
def test_state_payload_rejects_bad_json(data: bytes) -> None:
    with pytest.raises(MalformedPayloadError):
        StatePayload.from_bytes(data)
