"""Builders and subscription filters for every topic a service makes (uns.sparkplug.topic).

Each service gets its Sparkplug topics from here so none spells ``spBv1.0/...`` itself
(tests/test_wire_facts_home.py enforces it); each filter must match exactly the topics it names.
"""

from __future__ import annotations

import pytest

from broker.topics import topic_matches
from uns.sparkplug.errors import InvalidIdError, InvalidTopicError
from uns.sparkplug.topic import (
    CERTIFICATES_FILTER,
    NAMESPACE_FILTER,
    STATE_FILTER,
    STATE_PREFIX,
    MessageType,
    certificate_filter,
    certificate_topic,
    device_filter,
    device_prefix,
    is_sparkplug_topic,
    node_topic,
    parse_node_topic,
    state_topic,
)

DEVICE_TYPES = [t for t in MessageType if t.is_device]
NODE_TYPES = [t for t in MessageType if not t.is_device and t is not MessageType.STATE]


def test_namespace_and_state_constants() -> None:
    """tck-id-topic-structure-namespace-a; the host subscribes to spBv1.0/# literally
    (tck-id-host-topic-phid-birth-sub-required); STATE is spBv1.0/STATE/<host_id>
    (tck-id-host-topic-phid-birth-topic)."""
    assert NAMESPACE_FILTER == "spBv1.0/#"
    assert (STATE_PREFIX, STATE_FILTER) == ("spBv1.0/STATE/", "spBv1.0/STATE/+")
    assert CERTIFICATES_FILTER == "$sparkplug/certificates/spBv1.0/#"
    assert state_topic("mes") == "spBv1.0/STATE/mes" == STATE_PREFIX + "mes"
    assert topic_matches(STATE_FILTER, state_topic("scada-2"))
    with pytest.raises(InvalidIdError, match="contains '/'"):
        state_topic("a/b")


@pytest.mark.parametrize("message_type", DEVICE_TYPES, ids=str)
def test_device_prefix_and_filter_match_every_device_of_that_node_only(message_type: MessageType) -> None:
    """tck-id-topic-structure-namespace-device-id-associated-message-types."""
    prefix = device_prefix("acme:plant1", message_type, "packaging:line1")
    flt = device_filter("acme:plant1", message_type, "packaging:line1")
    assert prefix == f"spBv1.0/acme:plant1/{message_type}/packaging:line1/" and flt == prefix + "+"
    mine = node_topic("acme:plant1", message_type, "packaging:line1", "filler")
    assert mine.startswith(prefix) and topic_matches(flt, mine)
    for other in (node_topic("acme:plant1", message_type, "packaging:line2", "filler"),
                  node_topic("acme:plant2", message_type, "packaging:line1", "filler")):
        assert not other.startswith(prefix) and not topic_matches(flt, other)


@pytest.mark.parametrize("message_type", NODE_TYPES, ids=str)
def test_node_level_types_have_no_device_prefix(message_type: MessageType) -> None:
    with pytest.raises(InvalidTopicError, match=f"{message_type} topics carry no device_id"):
        device_prefix("g", message_type, "e")


def test_device_prefix_validates_the_ids_it_is_given() -> None:
    with pytest.raises(InvalidIdError, match=r"group_id 'g\+' contains '\+'"):
        device_filter("g+", MessageType.DDATA, "e")
    with pytest.raises(InvalidIdError, match="edge_node_id 'e#' contains '#'"):
        device_prefix("g", MessageType.DCMD, "e#")


def test_certificate_filters_of_births() -> None:
    """Spec chapter 10: the aware broker's retained births under $sparkplug/certificates/."""
    nbirth = node_topic("g", MessageType.NBIRTH, "e")
    dbirths = device_filter("g", MessageType.DBIRTH, "e")
    assert certificate_filter(nbirth) == "$sparkplug/certificates/spBv1.0/g/NBIRTH/e"
    assert certificate_filter(dbirths) == "$sparkplug/certificates/spBv1.0/g/DBIRTH/e/+"
    born = parse_node_topic(node_topic("g", MessageType.DBIRTH, "e", "d"))
    assert topic_matches(certificate_filter(dbirths), certificate_topic(born))
    assert topic_matches(CERTIFICATES_FILTER, certificate_topic(born))
    for bad in (node_topic("g", MessageType.NDATA, "e"), "spBv1.0/#", "other/g/NBIRTH/e"):
        with pytest.raises(InvalidTopicError, match="is not a filter of NBIRTH or DBIRTH topics"):
            certificate_filter(bad)


def test_is_sparkplug_topic() -> None:
    assert is_sparkplug_topic(node_topic("g", MessageType.NDATA, "e")) and is_sparkplug_topic(state_topic("h"))
    for other in ("spBv1.0", "spAv1.0/g/NDATA/e", "$sparkplug/certificates/spBv1.0/g/NBIRTH/e", "acme/plant1/x"):
        assert not is_sparkplug_topic(other)
