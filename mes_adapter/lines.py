"""Line keys: a production line as the string ``<enterprise>/<site>/<area>/<line>``.

Every store keys rows by this string (it is :attr:`uns.isa95.LinePath.topic`), so SQLite indexes stay
simple and REST paths, MQTT topics and rows agree on one spelling.
"""

from __future__ import annotations

from mes_adapter.errors import InvalidLineError
from uns.isa95 import LinePath


def parse_line_key(key: str) -> LinePath:
    """``"acme/plant1/packaging/line2"`` → :class:`LinePath`; :class:`InvalidLineError` if malformed."""
    parts = key.split("/")
    if len(parts) != 4:
        raise InvalidLineError(f"line {key!r} is not <enterprise>/<site>/<area>/<line>")
    try:
        return LinePath(enterprise=parts[0], site=parts[1], area=parts[2], line=parts[3])
    except ValueError as exc:
        raise InvalidLineError(f"line {key!r}: {exc}") from exc


def line_key(line: LinePath | str) -> str:
    """The canonical key of a line, validating a string on the way."""
    if isinstance(line, LinePath):
        return line.topic
    return parse_line_key(line).topic
