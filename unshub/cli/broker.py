"""``uns broker``: run the embedded MQTT broker, and manage its password file.

``uns broker`` (or ``uns broker run``) runs it; ``uns broker check`` validates the config and the
files it names exactly as ``run`` does before starting; ``uns broker passwd FILE USER`` adds or
changes a user. The ``broker`` package is imported inside the commands so other ``uns`` commands
start fast.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from broker.config import BrokerSettings
    from broker.passwords import PasswordFile
    from uns.config_checks import Where

broker_app = typer.Typer(help="The embedded MQTT broker (amqtt, fixed and Sparkplug-aware).",
                         invoke_without_command=True, no_args_is_help=False)


def register(app: typer.Typer) -> None:
    app.add_typer(broker_app, name="broker")


@broker_app.callback()
def _default(ctx: typer.Context) -> None:
    """Without a subcommand, run the broker with the default settings (see `uns broker run --help`)."""
    if ctx.invoked_subcommand is None:
        run(config=None, host=None, port=None, ws_port=None, no_websocket=False, password_file=None,
            demo_anonymous=None, sys_interval=None)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"uns broker: {message}", err=True)
    return typer.Exit(2)


def load_checked(config: Path | None, *, host: str | None = None, port: int | None = None,
                 ws_port: int | None = None, no_websocket: bool = False, password_file: Path | None = None,
                 demo_anonymous: str | None = None, sys_interval: float | None = None) -> tuple[BrokerSettings, Where]:
    """The validated settings with the options applied, their files checked (shared by ``check``,
    ``run`` and ``uns up``), and a locator naming ``broker.yaml:line`` or ``command line`` for a
    field. Raises ValueError (a :class:`uns.yaml_marks.ConfigError`, e.g. ``broker.config.BrokerConfigError``)."""
    from broker.config import load_settings
    from broker.passwords import load_password_file
    from uns.config_checks import ConfigChecks, file_locator

    settings = load_settings(config, password_file=password_file, demo_anonymous=demo_anonymous,
                             sys_interval=sys_interval)
    updates: dict[str, object] = {}
    if no_websocket:
        updates["websocket"] = None
    for name, value in (("tcp", port), ("websocket", ws_port)):
        current = updates.get(name, getattr(settings, name))
        changes = {k: v for k, v in (("port", value), ("host", host)) if v is not None}
        if current is not None and changes:
            updates[name] = current.model_copy(update=changes)  # type: ignore[union-attr]
    if updates:
        settings = type(settings).model_validate({**settings.model_dump(), **{
            k: (v.model_dump() if v is not None else None) for k, v in updates.items()}})  # type: ignore[attr-defined]

    from_options = {name for name, value in (("password_file", password_file), ("demo_anonymous", demo_anonymous),
                                             ("sys_interval", sys_interval)) if value is not None}
    if host is not None or port is not None:
        from_options.add("tcp")
    if host is not None or ws_port is not None or no_websocket:
        from_options.add("websocket")
    in_file = file_locator(config) if config is not None else None

    def where(loc: tuple[str | int, ...]) -> str:
        if in_file is None or (loc and loc[0] in from_options):
            return "command line"
        return in_file(loc)

    checks = ConfigChecks(where)
    if settings.password_file is not None:
        users = checks.loads(("password_file",), settings.password_file, load_password_file,
                             missing_hint=f"create users with `uns broker passwd {settings.password_file} USER`")
        if users is not None:
            unusable = _users_without_rules(settings, settings.password_file, users)
            if unusable:
                checks.fail(("password_file",), f"{settings.password_file} has users the broker would refuse "
                                                "at every connect:\n  " + "\n  ".join(unusable), nested=unusable)
    checks.raise_if_any()
    return settings, where


def _users_without_rules(settings: BrokerSettings, path: Path, users: PasswordFile) -> list[str]:
    """``file:line: users.<name>.role: why`` for each user whose role is not defined, or whose role
    needs a Sparkplug scope the user lacks: the ACL refuses them at connect, so say it at start."""
    from broker.acl import Authorizer, PolicyError, Principal
    from broker.policy import merged_roles
    from uns.config_checks import file_locator

    authorizer = Authorizer(merged_roles(settings.custom_roles()))
    where = file_locator(path)
    out = []
    for name, record in users.users.items():
        try:
            authorizer.check_principal(Principal(name, record.role, "", record.group, record.edge))
        except PolicyError as exc:
            out.append(f"{where(('users', name, 'role'))}: users.{name}.role: {exc}")
    return out


def _settings(config: Path | None, **options: object) -> tuple[BrokerSettings, Where]:
    """:func:`load_checked`, or exit 2 with its message."""
    try:
        return load_checked(config, **options)  # type: ignore[arg-type]
    except ValueError as exc:  # pydantic's ValidationError of an option override is one too
        raise _fail(str(exc)) from None


def _check_ports(settings: BrokerSettings, where: Where) -> None:
    """A listener port another process holds is refused before anything starts, naming it."""
    from uns.config_checks import ConfigChecks

    checks = ConfigChecks(where)
    for name, service in (("tcp", "the broker's MQTT listener"), ("websocket", "the broker's WebSocket listener"),
                          ("tls", "the broker's MQTT/TLS listener"), ("wss", "the broker's WebSocket/TLS listener")):
        listener = getattr(settings, name)
        if listener is not None:
            checks.free_port((name, "port"), listener.host, listener.port, service)
    # not the /metrics and probes port: the broker runs without them (logged) rather than not at all
    try:
        checks.raise_if_any()
    except ValueError as exc:
        raise _fail(str(exc)) from None


_CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML config file (see broker.config)")


@broker_app.command()
def run(
    config: Path | None = _CONFIG_OPTION,
    host: str | None = typer.Option(None, "--host", help="address for the TCP and WebSocket listeners"),
    port: int | None = typer.Option(None, "--port", "-p", help="TCP listener port (default 1883)"),
    ws_port: int | None = typer.Option(None, "--ws-port", help="WebSocket listener port (default 9001)"),
    no_websocket: bool = typer.Option(False, "--no-websocket", help="no WebSocket listener"),
    password_file: Path | None = typer.Option(None, "--password-file", help="users from `uns broker passwd`"),
    demo_anonymous: str | None = typer.Option(None, "--demo-anonymous",
                                              help="anonymous clients: off | read-only | read-write"),
    sys_interval: float | None = typer.Option(None, "--sys-interval", help="seconds between $SYS updates, 0 = off"),
) -> None:
    """Run the broker until SIGINT/SIGTERM. Options override the config file."""
    from amqtt.errors import BrokerError, PluginInitError

    from broker.server import run_broker

    settings, where = _settings(config, host=host, port=port, ws_port=ws_port, no_websocket=no_websocket,
                                password_file=password_file, demo_anonymous=demo_anonymous,
                                sys_interval=sys_interval)
    _check_ports(settings, where)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_broker(settings, stop)

    try:
        asyncio.run(main())
    except (BrokerError, PluginInitError) as exc:  # a port taken since the check, a file changed since
        raise _fail(f"cannot start: {exc.__cause__ or exc}") from None
    except OSError as exc:  # e.g. permission denied on a port below 1024
        typer.echo(f"uns broker: cannot listen: {exc}", err=True)
        raise typer.Exit(1) from None


@broker_app.command()
def check(
    config: Path | None = _CONFIG_OPTION,
    password_file: Path | None = typer.Option(None, "--password-file", help="users from `uns broker passwd`"),
) -> None:
    """Validate the config and the files it names, as `run` does, without starting (ports are not probed)."""
    settings, _ = _settings(config, password_file=password_file)
    users = settings.password_file
    typer.echo(f"{config or 'broker settings'}: OK" + (f" — users from {users}" if users else ""))


@broker_app.command()
def passwd(
    file: Path = typer.Argument(..., help="password file (YAML, created if missing)"),
    user: str = typer.Argument(..., help="user name"),
    role: str = typer.Option("explorer", "--role", help="edge | host | explorer | admin | a configured role"),
    group: str | None = typer.Option(None, "--group", help="Sparkplug group_id (role edge)"),
    edge: str | None = typer.Option(None, "--edge", help="Sparkplug edge_node_id (role edge)"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from stdin"),
    delete: bool = typer.Option(False, "--delete", help="remove the user instead"),
) -> None:
    """Add or change a user (argon2id hash) in a broker password file, or --delete one."""
    from broker.passwords import (
        PasswordFile,
        PasswordFileError,
        load_password_file,
        save_password_file,
        with_user,
        without_user,
    )

    try:
        content = load_password_file(file) if file.exists() else PasswordFile()
        if delete:
            content = without_user(content, user)
        else:
            if password_stdin:
                password = sys.stdin.readline().rstrip("\r\n")
            else:
                password = typer.prompt(f"password for {user}", hide_input=True, confirmation_prompt=True)
            content = with_user(content, user, password, role, group, edge)
        save_password_file(file, content)
    except (PasswordFileError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else exc
        typer.echo(f"uns broker passwd: {message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{'removed' if delete else 'saved'} user {user!r} in {file}")
