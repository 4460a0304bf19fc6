"""``uns init``: write the configuration of a whole stack (see :mod:`unshub.cli.stack`)."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        out: Path = typer.Option(Path("uns-data/config"), "--out", "-o", help="folder for the config files"),
        profile: str = typer.Option("local", "--profile", help="local (uns up) or compose (docker-compose)"),
        keep_existing: bool = typer.Option(False, "--keep-existing",
                                           help="do nothing if the folder already has a stack.yaml"),
        mqtt_port: int = typer.Option(1883, "--mqtt-port"),
        ws_port: int = typer.Option(9001, "--ws-port"),
        opcua_port: int = typer.Option(4840, "--opcua-port"),
        http_port: int = typer.Option(8080, "--http-port"),
        edge_metrics_port: int = typer.Option(9102, "--edge-metrics-port",
                                              help="edge node /metrics, /healthz, /readyz"),
        broker_metrics_port: int = typer.Option(9101, "--broker-metrics-port",
                                                help="broker /metrics, /healthz, /readyz"),
        alarms: bool = typer.Option(False, "--alarms",
                                    help="subscribe the edge to every simulator alarm condition and allow "
                                         "operators to acknowledge and confirm them (docs/alarms.md)"),
    ) -> None:
        """Write broker, edge node, allowlist and adapter configs with fresh secrets."""
        from unshub.cli.stack import Profile, StackPorts, write_stack_config

        if keep_existing and (out / "stack.yaml").exists():
            typer.echo(f"{out} already holds a stack config; kept as it is")
            return
        try:
            chosen = Profile(profile)
        except ValueError:
            typer.echo(f"uns init: --profile must be local or compose, not {profile!r}", err=True)
            raise typer.Exit(2) from None
        existing = out.absolute()
        while not existing.exists():  # the folder, or the parent it would be created in
            existing = existing.parent
        if not os.access(existing, os.W_OK | os.X_OK):
            # the container case: a config volume whose folder the image's user does not own
            owner = existing.stat().st_uid
            typer.echo(f"uns init: cannot write to {existing} (owned by uid {owner}, running as uid {os.geteuid()}); "
                       "give the folder to this user (the uns-hub image owns /config as uid 10001: rebuild an "
                       "older image, or chown a bind-mounted folder)", err=True)
            raise typer.Exit(1)
        if out.is_dir() and any(out.iterdir()):  # a rewrite never costs the user the old secrets
            from unshub.cli.stack_ports import backup_folder

            typer.echo(f"backed up the previous config folder {out} to {backup_folder(out)}")
        write_stack_config(out, chosen, StackPorts(mqtt_port, ws_port, opcua_port, http_port,
                                                   edge_http=edge_metrics_port, broker_http=broker_metrics_port),
                           alarms=alarms)
        typer.echo(f"wrote the {chosen.value} stack config to {out}")
