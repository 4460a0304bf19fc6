"""``uns host``: the Sparkplug primary host and the UNS JSON mirror, standalone.

    uns host --broker mqtt://127.0.0.1:1883 --host-id mes
    uns host --broker mqtts://mes:secret@broker:8883 --host-id mes --mirror-root uns --conflation-ms 250

Runs until SIGINT/SIGTERM, then publishes the tags STALE (unless ``--no-stale-on-shutdown``) and
its STATE offline before disconnecting. ``mes_adapter`` is imported inside the command so other
``uns`` commands start fast.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal

import typer


def register(app: typer.Typer) -> None:
    app.command(name="host")(host)


def host(
    broker: str = typer.Option("mqtt://127.0.0.1:1883", "--broker", "-b", envvar="UNS_BROKER",
                               help="broker URL: mqtt://[user:pass@]host:port, mqtts://, ws://"),
    host_id: str = typer.Option("mes", "--host-id", help="Sparkplug host id (STATE on spBv1.0/STATE/<id>)"),
    mirror_root: str = typer.Option("", "--mirror-root", help="prefix of ISA-95 mirror topics, e.g. uns"),
    fallback_root: str = typer.Option("sparkplug", "--fallback-root",
                                      help="root of mirror topics for ids outside the ISA-95 convention"),
    gateway_id: str | None = typer.Option(None, "--gateway-id",
                                          help="gateway mode: this edge node id carries many lines"),
    conflation_ms: int = typer.Option(100, "--conflation-ms", help="min ms between publishes of one tag, 0 = off"),
    rebirth_throttle_s: float = typer.Option(5.0, "--rebirth-throttle-s", help="min s between rebirths of a node"),
    max_payload_bytes: int = typer.Option(1 << 20, "--max-payload-bytes", help="larger payloads are dropped"),
    no_certificates: bool = typer.Option(False, "--no-certificates",
                                         help="do not learn births from $sparkplug/certificates/#"),
    no_stale_on_shutdown: bool = typer.Option(False, "--no-stale-on-shutdown",
                                              help="leave mirror tags as they are on a clean stop"),
    mqtt5: bool = typer.Option(False, "--mqtt5", help="connect with MQTT 5 instead of 3.1.1"),
    stats_every_s: float = typer.Option(60.0, "--stats-every-s", help="log the counters this often, 0 = never"),
) -> None:
    """Run the Sparkplug primary host and mirror every metric as retained JSON on its ISA-95 topic."""
    from pydantic import ValidationError

    from mes_adapter.host import HostConfig, SparkplugHost
    from uns.isa95 import MappingMode, NamespaceMapping

    try:
        mapping = NamespaceMapping(mirror_root=mirror_root.strip("/"),
                                   mode=MappingMode.GATEWAY if gateway_id else MappingMode.LINE_PER_EDGE_NODE,
                                   gateway_id=gateway_id)
        config = HostConfig(broker_url=broker, host_id=host_id, mapping=mapping, fallback_root=fallback_root,
                            conflation_interval_ms=conflation_ms, rebirth_throttle_s=rebirth_throttle_s,
                            max_payload_bytes=max_payload_bytes, use_certificates=not no_certificates,
                            stale_on_shutdown=not no_stale_on_shutdown, protocol="5" if mqtt5 else "3.1.1")
    except ValidationError as exc:
        from uns.commands.yamlsource import problems

        typer.echo("uns host: " + "\n".join(problems(exc, lambda loc: "command line")), err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(f"uns host: {exc}", err=True)
        raise typer.Exit(2) from None
    log = logging.getLogger("uns.host")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with SparkplugHost(config) as sparkplug_host:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), stats_every_s if stats_every_s > 0 else None)
                except TimeoutError:
                    stats = sparkplug_host.stats
                    log.info("host stats %s", json.dumps({
                        "messages_in": stats.messages_in, "births": stats.births, "deaths": stats.deaths,
                        "rebirths": stats.rebirths_requested, "seq_gaps": stats.seq_gaps,
                        "invalid_payloads": stats.invalid_payloads, "mirror_published": stats.mirror_published,
                        "mirror_lag_ms": stats.mirror_lag_ms}))

    asyncio.run(main())
