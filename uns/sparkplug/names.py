"""Which ids and metric names can become UNS topic levels, with no I/O.

Sparkplug allows any UTF-8 in a metric name (`/` meaning folders), but a host that mirrors names
into MQTT topics inherits MQTT's rules and those of the tools that read the UNS: a topic holding
U+007F makes ``mosquitto_sub`` drop the connection (libmosquitto refuses control characters and
non-characters as malformed UTF-8, MQTT-1.5.4-1 allows a receiver to), ``+``/``#`` in a name
collide after escaping, and an empty folder (``A//B``) collapses onto ``A/B``. So a name is
refused, with a reason a program can count, when it holds

* a control character (C0, DEL, C1) or a Unicode non-character (``control_character``),
* an MQTT wildcard ``+`` or ``#`` (``mqtt_wildcard``),
* an empty folder: a leading, trailing or doubled ``/`` (``empty_segment``),
* more UTF-8 bytes than the host allows (``too_long``), or nothing at all (``empty``).
"""

from __future__ import annotations

import re

#: C0 controls, DEL, C1 controls, and the Unicode non-characters libmosquitto refuses
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff]")
_NONCHAR_PLANES = re.compile("[\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0003fffe\U0003ffff"
                             "\U0004fffe\U0004ffff\U0005fffe\U0005ffff\U0006fffe\U0006ffff"
                             "\U0007fffe\U0007ffff\U0008fffe\U0008ffff\U0009fffe\U0009ffff"
                             "\U000afffe\U000affff\U000bfffe\U000bffff\U000cfffe\U000cffff"
                             "\U000dfffe\U000dffff\U000efffe\U000effff\U000ffffe\U000fffff"
                             "\U0010fffe\U0010ffff\ud800-\udfff]")

#: default bound of a metric name (UTF-8 bytes); MQTT's own bound is 65,535 for the whole topic
DEFAULT_MAX_NAME_BYTES = 1024

#: the longest MQTT client id uns-hub derives for a component
MAX_CLIENT_ID = 64


def client_id_safe(text: str) -> str:
    """``text`` with every character other than letters, digits, ``-``, ``_`` and ``.`` made ``_``.

    The one sanitising of a derived client id: the edge node derives its own with it
    (``edge_node.sparkplug_config``) and the broker fills its ownership templates with it
    (``broker.client_ids``), so the two always name the same id."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def control_character(value: str) -> tuple[int, str] | None:
    """(position, character) of the first character no UNS topic may hold, or None."""
    found = _CONTROL.search(value) or _NONCHAR_PLANES.search(value)
    return (found.start(), found.group()) if found else None


def metric_name_problem(name: object, max_bytes: int = DEFAULT_MAX_NAME_BYTES) -> tuple[str, str] | None:
    """``(reason, detail)`` if ``name`` cannot become UNS topic levels, else None.

    ``reason`` is one of ``empty``, ``not_text``, ``control_character``, ``mqtt_wildcard``,
    ``empty_segment``, ``too_long``; ``detail`` says where, for people.
    """
    if not isinstance(name, str):
        return "not_text", f"metric name {name!r} is not text"
    if name == "":
        return "empty", "metric name is empty"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return "too_long", f"metric name {name[:32]!r}... has {size} UTF-8 bytes, more than {max_bytes}"
    bad = control_character(name)
    if bad is not None:
        return "control_character", f"metric name {name!r} holds U+{ord(bad[1]):04X} at position {bad[0]}"
    for char in "+#":
        if char in name:
            return "mqtt_wildcard", f"metric name {name!r} holds the MQTT wildcard {char!r}"
    if "" in name.split("/"):
        return "empty_segment", f"metric name {name!r} has an empty folder (leading, trailing or doubled '/')"
    return None
