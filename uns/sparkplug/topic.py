"""The Sparkplug B 3.0 topic namespace: parse, format and validate, with no I/O.

Topics: ``spBv1.0/<group>/<type>/<edge>[/<device>]`` (tck-id-topic-structure), STATE
``spBv1.0/STATE/<host>`` and the Sparkplug-aware broker's ``$sparkplug/certificates/...`` copies
of births. IDs are validated when a topic is built or parsed so a bad id fails with a message
that names the character, not later as a silent mis-route.

Every service builds its topics and subscription filters here (``node_topic``, ``state_topic``,
``device_prefix``/``device_filter`` for all devices of a node, ``certificate_filter`` and the
namespace, STATE and certificate constants); none spells ``spBv1.0/`` itself
(tests/test_wire_facts_home.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import InvalidIdError, InvalidTopicError
from .names import control_character

NAMESPACE = "spBv1.0"
CERTIFICATES_PREFIX = "$sparkplug/certificates/"
#: every Sparkplug topic starts with this (a host subscribes to ``NAMESPACE_FILTER``)
NAMESPACE_PREFIX = f"{NAMESPACE}/"
#: ``spBv1.0/#``, literally: the TCK expects a primary host to subscribe to exactly this
NAMESPACE_FILTER = f"{NAMESPACE}/#"
#: every host's STATE topic starts with this; the host id follows
STATE_PREFIX = f"{NAMESPACE}/STATE/"
#: every host's STATE topic (an edge that follows any host, a broker ACL)
STATE_FILTER = f"{STATE_PREFIX}+"
#: the retained birth copies of a Sparkplug-aware broker, for every node and device
CERTIFICATES_FILTER = f"{CERTIFICATES_PREFIX}{NAMESPACE_FILTER}"


class MessageType(StrEnum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"
    STATE = "STATE"

    @property
    def is_device(self) -> bool:
        """DBIRTH/DDEATH/DDATA/DCMD carry a device_id level
        (tck-id-topic-structure-namespace-device-id-associated-message-types)."""
        return self in _DEVICE_TYPES

    @property
    def is_birth(self) -> bool:
        return self is MessageType.NBIRTH or self is MessageType.DBIRTH

    @property
    def is_data(self) -> bool:
        return self is MessageType.NDATA or self is MessageType.DDATA

    @property
    def is_command(self) -> bool:
        return self is MessageType.NCMD or self is MessageType.DCMD

    @property
    def carries_seq(self) -> bool:
        """Every edge message but NDEATH has ``seq``; commands (host messages) have none.

        tck-id-payloads-sequence-num-always-included, tck-id-topics-ndeath-seq.
        """
        return self not in (MessageType.NDEATH, MessageType.NCMD, MessageType.DCMD, MessageType.STATE)


_DEVICE_TYPES = frozenset({MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA, MessageType.DCMD})
_FORBIDDEN = {"/": "'/' (topic level separator)", "+": "'+' (MQTT wildcard)", "#": "'#' (MQTT wildcard)",
              "\x00": "U+0000 (NUL)"}


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a legal Sparkplug id, else raise :class:`InvalidIdError`.

    Sparkplug forbids ``/ + #`` (tck-id-topic-structure-namespace-valid-group-id and the edge/device
    twins) and MQTT forbids NUL. We also refuse empty ids and whitespace, which the spec permits
    but which break every tool downstream, and control characters (C0, DEL, C1) and Unicode
    non-characters, which make subscribers such as ``mosquitto_sub`` drop the connection.
    """
    if not isinstance(value, str):
        raise InvalidIdError(f"{what} must be a string, got {type(value).__name__}")
    if value == "":
        raise InvalidIdError(f"{what} must not be empty")
    for index, char in enumerate(value):
        if char in _FORBIDDEN:
            raise InvalidIdError(f"{what} {value!r} contains {_FORBIDDEN[char]} at position {index}")
        if char.isspace():
            raise InvalidIdError(f"{what} {value!r} contains whitespace {char!r} at position {index}")
    bad = control_character(value)
    if bad is not None:
        raise InvalidIdError(f"{what} {value!r} contains the control character U+{ord(bad[1]):04X} "
                             f"at position {bad[0]} (no UNS topic level may hold it)")
    if len(value.encode("utf-8")) > 1024:
        raise InvalidIdError(f"{what} {value[:32]!r}... is longer than 1024 bytes")
    return value


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """An edge-node or device topic: ``spBv1.0/<group>/<type>/<edge>[/<device>]``."""

    group_id: str
    message_type: MessageType
    edge_node_id: str
    device_id: str | None = None

    def __post_init__(self) -> None:
        if self.message_type is MessageType.STATE:
            raise InvalidTopicError("STATE topics are spBv1.0/STATE/<host_id>; use StateTopic")
        validate_id(self.group_id, "group_id")
        validate_id(self.edge_node_id, "edge_node_id")
        if self.message_type.is_device:
            if self.device_id is None:
                raise InvalidTopicError(f"{self.message_type} topics need a device_id")
            validate_id(self.device_id, "device_id")
        elif self.device_id is not None:
            raise InvalidTopicError(f"{self.message_type} topics carry no device_id")

    def __str__(self) -> str:
        base = f"{NAMESPACE}/{self.group_id}/{self.message_type.value}/{self.edge_node_id}"
        return base if self.device_id is None else f"{base}/{self.device_id}"

    @property
    def node(self) -> tuple[str, str]:
        """The edge node descriptor (group_id, edge_node_id), unique system-wide."""
        return (self.group_id, self.edge_node_id)

    def with_type(self, message_type: MessageType, device_id: str | None = None) -> SparkplugTopic:
        """The sibling topic of another message type for the same node (and device)."""
        dev = device_id if device_id is not None else (self.device_id if message_type.is_device else None)
        return SparkplugTopic(self.group_id, message_type, self.edge_node_id, dev)


@dataclass(frozen=True, slots=True)
class StateTopic:
    """A Sparkplug 3.0 host STATE topic: ``spBv1.0/STATE/<host_id>``."""

    host_id: str

    def __post_init__(self) -> None:
        validate_id(self.host_id, "sparkplug_host_id")

    def __str__(self) -> str:
        return f"{NAMESPACE}/STATE/{self.host_id}"


def node_topic(group_id: str, message_type: MessageType | str, edge_node_id: str,
               device_id: str | None = None) -> str:
    """The topic of one message: node-level types without ``device_id``, device types with it."""
    return str(SparkplugTopic(group_id, MessageType(message_type), edge_node_id, device_id))


def state_topic(host_id: str) -> str:
    """``spBv1.0/STATE/<host_id>`` (tck-id-host-topic-phid-birth-topic), the id validated."""
    return str(StateTopic(host_id))


def device_prefix(group_id: str, message_type: MessageType | str, edge_node_id: str) -> str:
    """``spBv1.0/<group>/<type>/<edge>/``: what every device topic of that type and node starts with.

    For matching by ``startswith`` on a hot path, and for naming a topic whose device level came
    from the wire and so may not be a valid id (a rejected command is reported on the topic it
    arrived on, not refused a second time for its name).
    """
    kind = MessageType(message_type)
    if not kind.is_device:
        raise InvalidTopicError(f"{kind} topics carry no device_id, so they have no device prefix")
    validate_id(group_id, "group_id")
    validate_id(edge_node_id, "edge_node_id")
    return f"{NAMESPACE}/{group_id}/{kind.value}/{edge_node_id}/"


def device_filter(group_id: str, message_type: MessageType | str, edge_node_id: str) -> str:
    """``spBv1.0/<group>/<type>/<edge>/+``: that message type for every device of one node."""
    return device_prefix(group_id, message_type, edge_node_id) + "+"


def certificate_filter(topic_filter: str) -> str:
    """The Sparkplug-aware broker's retained copies matching ``topic_filter`` (a birth topic or
    a :func:`device_filter` of births); spec chapter 10."""
    parts = topic_filter.split("/")
    if parts[0] != NAMESPACE or len(parts) < 3 or parts[2] not in (MessageType.NBIRTH, MessageType.DBIRTH):
        raise InvalidTopicError(f"{topic_filter!r} is not a filter of NBIRTH or DBIRTH topics")
    return CERTIFICATES_PREFIX + topic_filter


def validate_group_id(value: str, what: str = "group_id") -> str:
    """A legal group id that is not ``STATE`` (``spBv1.0/STATE/...`` is the host STATE namespace,
    so a group of that name could not be told from it)."""
    validate_id(value, what)
    if value == "STATE":
        raise InvalidIdError(f"{what} 'STATE' is reserved: spBv1.0/STATE/<host_id> is the host STATE topic")
    return value


def group_filter(group_id: str) -> str:
    """``spBv1.0/<group>/#``: every edge-node and device message of one group."""
    return f"{NAMESPACE}/{validate_group_id(group_id)}/#"


def certificate_group_filter(group_id: str) -> str:
    """``$sparkplug/certificates/spBv1.0/<group>/#``: a Sparkplug-aware broker's stored births of one group."""
    return CERTIFICATES_PREFIX + group_filter(group_id)


def group_of(topic: str) -> str | None:
    """The group level of a Sparkplug topic or of a certificate copy of one (``$sparkplug/certificates/
    spBv1.0/<group>/...``); ``None`` for STATE topics and anything outside the namespace. No validation:
    for routing by group on the hot path."""
    if topic.startswith(CERTIFICATES_PREFIX):
        topic = topic[len(CERTIFICATES_PREFIX):]
    if not topic.startswith(NAMESPACE_PREFIX):
        return None
    end = topic.find("/", len(NAMESPACE_PREFIX))
    group = topic[len(NAMESPACE_PREFIX):] if end < 0 else topic[len(NAMESPACE_PREFIX):end]
    return None if group == "STATE" else group


def is_sparkplug_topic(topic: str) -> bool:
    """True for a topic in the Sparkplug B namespace (``spBv1.0/...``), STATE included."""
    return topic.startswith(NAMESPACE_PREFIX)


def parse_topic(topic: str) -> SparkplugTopic | StateTopic:
    """Parse any ``spBv1.0/...`` topic; raise :class:`InvalidTopicError` saying what is wrong."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        raise InvalidTopicError(f"topic {topic!r} does not start with {NAMESPACE!r}")
    if len(parts) >= 2 and parts[1] == "STATE":
        if len(parts) != 3:
            raise InvalidTopicError(f"STATE topic {topic!r} must be spBv1.0/STATE/<host_id>")
        try:
            return StateTopic(parts[2])
        except InvalidIdError as exc:
            raise InvalidTopicError(f"topic {topic!r}: {exc}") from exc
    if len(parts) not in (4, 5):
        raise InvalidTopicError(
            f"topic {topic!r} has {len(parts)} levels; Sparkplug topics have 4 or 5"
        )
    try:
        message_type = MessageType(parts[2])
    except ValueError:
        raise InvalidTopicError(f"topic {topic!r}: unknown message type {parts[2]!r}") from None
    device = parts[4] if len(parts) == 5 else None
    try:
        return SparkplugTopic(parts[1], message_type, parts[3], device)
    except InvalidIdError as exc:
        raise InvalidTopicError(f"topic {topic!r}: {exc}") from exc


def parse_node_topic(topic: str) -> SparkplugTopic:
    """Like :func:`parse_topic` but refuses STATE."""
    parsed = parse_topic(topic)
    if isinstance(parsed, StateTopic):
        raise InvalidTopicError(f"topic {topic!r} is a STATE topic, not an edge node topic")
    return parsed


def certificate_topic(birth: SparkplugTopic) -> str:
    """Where a Sparkplug-aware broker keeps the latest birth (spec chapter 10)."""
    if not birth.message_type.is_birth:
        raise InvalidTopicError(f"only NBIRTH/DBIRTH have certificates, not {birth.message_type}")
    return CERTIFICATES_PREFIX + str(birth)


def parse_certificate_topic(topic: str) -> SparkplugTopic:
    if not topic.startswith(CERTIFICATES_PREFIX):
        raise InvalidTopicError(f"topic {topic!r} does not start with {CERTIFICATES_PREFIX!r}")
    parsed = parse_node_topic(topic[len(CERTIFICATES_PREFIX):])
    if not parsed.message_type.is_birth:
        raise InvalidTopicError(f"certificate topic {topic!r} must hold an NBIRTH or DBIRTH")
    return parsed
