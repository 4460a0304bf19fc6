"""``uns decode``: show a Sparkplug B payload (from a file or stdin) as indented JSON.

For looking at captured traffic (``mosquitto_sub -F %p`` dumps, broker audit files). The topic,
when given, picks the message type so births are checked and DATA metrics resolve through the
``--birth`` files, exactly as a host would decode them. Bad input is an operator's problem, not a
bug, so it gets one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

EXIT_BAD_INPUT = 2


def register(app: typer.Typer) -> None:
    app.command("decode")(decode)


def decode(
    source: str = typer.Argument("-", metavar="[FILE|-]", help="payload file, or - for stdin"),
    topic: str | None = typer.Option(None, "--topic", help="the MQTT topic, to pick the message type"),
    message_type: str | None = typer.Option(
        None, "--type", help="message type if there is no --topic (NBIRTH, DDATA, ...)"),
    births: list[Path] = typer.Option(
        [], "--birth", help="an NBIRTH/DBIRTH payload file to learn aliases and datatypes from (repeatable)"),
) -> None:
    """Decode Sparkplug B bytes and print them as JSON."""
    from uns.sparkplug.errors import SparkplugError

    try:
        text = _decode(source, topic, message_type, births)
    except (SparkplugError, OSError, ValueError) as exc:
        typer.echo(f"uns decode: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(text)


def _decode(source: str, topic: str | None, type_name: str | None, births: list[Path]) -> str:
    from uns.sparkplug.catalog import EdgeNodeCatalog
    from uns.sparkplug.codec import decode_payload
    from uns.sparkplug.json_view import payload_to_json
    from uns.sparkplug.model import Payload
    from uns.sparkplug.state import StatePayload
    from uns.sparkplug.topic import MessageType, SparkplugTopic, StateTopic, parse_certificate_topic, parse_topic

    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    device_id: str | None = None
    message_type: MessageType | None = None
    if topic is not None:
        parsed = parse_certificate_topic(topic) if topic.startswith("$sparkplug/") else parse_topic(topic)
        if isinstance(parsed, StateTopic):
            state = StatePayload.from_bytes(data)
            return json.dumps({"online": state.online, "timestamp": state.timestamp}, indent=2)
        assert isinstance(parsed, SparkplugTopic)
        message_type, device_id = parsed.message_type, parsed.device_id
    elif type_name is not None:
        try:
            message_type = MessageType(type_name.upper())
        except ValueError:
            raise ValueError(f"--type {type_name!r} is not a Sparkplug message type") from None
    resolve = None
    if births:
        # node topics: every file is an NBIRTH; device topics: the last file is the DBIRTH
        catalog = EdgeNodeCatalog()
        catalog.learn_nbirth(Payload())
        for index, path in enumerate(births):
            birth = decode_payload(path.read_bytes(), MessageType.NBIRTH)
            if device_id is not None and index == len(births) - 1:
                catalog.learn_dbirth(device_id, birth)
            else:
                catalog.learn_nbirth(birth)
        resolve = catalog.resolver(device_id) if message_type is None or not message_type.is_birth else None
    payload = decode_payload(data, message_type, resolve)
    return json.dumps(payload_to_json(payload), indent=2, ensure_ascii=False, allow_nan=False)
