"""MQTT topic-filter algebra, with no I/O: does a topic match a filter, does one filter cover another.

Why our own and not amqtt's ``Broker._matches``: the ACL needs *coverage* (is every topic a
subscriber's filter can match also matched by an allowed filter?), which amqtt has no notion
of, and both questions must agree exactly on the ``$``-topic rule of MQTT 3.1.1 §4.7.2
(a filter starting with a wildcard never matches a topic starting with ``$``).
"""

from __future__ import annotations

from functools import lru_cache

from broker.errors import UnsBrokerError


class InvalidFilterError(UnsBrokerError, ValueError):
    """A topic filter breaks MQTT 3.1.1 §4.7.1 (wildcards must fill a whole level, ``#`` last)."""


def validate_filter(topic_filter: str) -> str:
    """Return ``topic_filter`` if it is a legal MQTT filter, else raise :class:`InvalidFilterError`."""
    if topic_filter == "":
        raise InvalidFilterError("topic filter must not be empty")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise InvalidFilterError(
                f"topic filter {topic_filter!r}: '#' must be a whole level and the last one (level {index})"
            )
        if "+" in level and level != "+":
            raise InvalidFilterError(f"topic filter {topic_filter!r}: '+' must be a whole level (level {index})")
    return topic_filter


@lru_cache(maxsize=4096)
def _levels(text: str) -> tuple[str, ...]:
    return tuple(text.split("/"))


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True if the concrete ``topic`` matches ``topic_filter`` (MQTT 3.1.1 §4.7)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    f_levels = _levels(topic_filter)
    t_levels = topic.split("/")
    for index, level in enumerate(f_levels):
        if level == "#":
            return True  # '#' also matches the parent level itself (§4.7.1.2)
        if index >= len(t_levels):
            return False
        if level != "+" and level != t_levels[index]:
            return False
    return len(f_levels) == len(t_levels)


def filter_covers(outer: str, inner: str) -> bool:
    """True if every topic that ``inner`` can match is also matched by ``outer``.

    Used for subscribe decisions: a client may subscribe to ``inner`` only if an allowed filter
    covers it, so a wildcard subscription can never reach past what the policy grants.
    """
    if inner[:1] == "$" and outer[:1] in ("+", "#"):
        return False
    if inner[:1] in ("+", "#") and outer[:1] not in ("+", "#"):
        return False  # inner may match any first level; a literal outer cannot cover that
    o_levels = _levels(outer)
    i_levels = _levels(inner)
    for index, o_level in enumerate(o_levels):
        if o_level == "#":
            return True
        if index >= len(i_levels):
            return False
        i_level = i_levels[index]
        if i_level == "#":
            return False  # inner reaches arbitrarily deep, outer does not
        if o_level == "+":
            continue
        if i_level != o_level:  # also catches i_level == '+' against a literal
            return False
    return len(o_levels) == len(i_levels)
