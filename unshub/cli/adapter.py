"""``uns adapter``: the MES adapter application (Sparkplug primary host, MES core, REST API, dashboard).

    uns adapter run --config adapter.yaml [--broker URL] [--http-port N] [--data-dir D]
    uns adapter check --config adapter.yaml     (what run checks before it starts, then exits)
    uns adapter token --role operator --user alice --full-name "Alice Example" [--tokens-file tokens.yaml]
    uns adapter users add|list|passwd|remove --file users.yaml ...   (dashboard logins: adapter_users.py)

``run`` serves uvicorn in the same asyncio loop as the host; SIGINT/SIGTERM stop uvicorn, whose
lifespan then stops the adapter cleanly (mirror STALE, STATE offline, stores and audit log closed).
HTTP binds 127.0.0.1 unless the config or ``--http-host`` says otherwise. ``mes_adapter`` is imported
inside the commands so other ``uns`` commands start fast.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from mes_adapter.config.application import AdapterConfig

adapter_app = typer.Typer(name="adapter", help="The MES adapter: primary host, REST API, dashboard.",
                          no_args_is_help=True)

log = logging.getLogger("uns.adapter")


def register(app: typer.Typer) -> None:
    from unshub.cli.adapter_users import users_app

    adapter_app.add_typer(users_app, name="users")
    app.add_typer(adapter_app, name="adapter")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"uns adapter: {message}", err=True)
    return typer.Exit(code)


_CONFIG_OPTION = typer.Option(..., "--config", "-c", help="adapter YAML (host, http, auth, mes, commands)")
_BROKER_OPTION = typer.Option(None, "--broker", "-b", envvar="UNS_BROKER", help="overrides host.broker_url")
_DATA_DIR_OPTION = typer.Option(None, "--data-dir", help="overrides data_dir")


def load_checked(config: Path, *, broker: str | None = None, http_port: int | None = None,
                 http_host: str | None = None, data_dir: Path | None = None) -> AdapterConfig:
    """The validated config with the options applied and everything ``run`` needs checked (shared
    by ``check``, ``run`` and ``uns up``); ValueError with ``file:line: field: message`` lines otherwise."""
    from mes_adapter.config.application import check_adapter_config, load_adapter_config

    loaded = load_adapter_config(config)
    settings = loaded.with_overrides(broker_url=broker, http_port=http_port, http_host=http_host,
                                     data_dir=data_dir)
    check_adapter_config(settings, config,
                         broker_declared=broker is not None or "broker_url" in loaded.host.model_fields_set)
    return settings


def _settings(config: Path, **options: object) -> AdapterConfig:
    """:func:`load_checked`, or exit 2 with its message."""
    try:
        return load_checked(config, **options)  # type: ignore[arg-type]
    except ValueError as exc:  # ConfigError, or pydantic's ValidationError of an override
        raise _fail(str(exc)) from None


@adapter_app.command("run")
def run(
    config: Path = _CONFIG_OPTION,
    broker: str | None = _BROKER_OPTION,
    http_port: int | None = typer.Option(None, "--http-port", help="overrides http.port (0: any free port)"),
    http_host: str | None = typer.Option(None, "--http-host", help="overrides http.host (default 127.0.0.1)"),
    data_dir: Path | None = _DATA_DIR_OPTION,
) -> None:
    """Run the adapter until SIGINT/SIGTERM."""
    from mes_adapter.config.application import ConfigError
    from uns.config_checks import ConfigChecks, file_locator

    settings = _settings(config, broker=broker, http_port=http_port, http_host=http_host, data_dir=data_dir)
    in_file = file_locator(config)
    ports = ConfigChecks(lambda loc: "command line" if http_port is not None or http_host is not None
                         else in_file(loc))
    ports.free_port(("http", "port"), settings.http.host, settings.http.port, "the adapter's REST API and dashboard")
    try:
        ports.raise_if_any()
        asyncio.run(_serve(settings))
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@adapter_app.command("check")
def check(
    config: Path = _CONFIG_OPTION,
    broker: str | None = _BROKER_OPTION,
    data_dir: Path | None = _DATA_DIR_OPTION,
) -> None:
    """Validate the config and every file it names, as `run` does, without starting (ports are not probed)."""
    settings = _settings(config, broker=broker, data_dir=data_dir)
    typer.echo(f"{config}: OK — broker {settings.host.broker}, {len(settings.mes.lines)} line(s), "
               f"allowlist {settings.commands.allowlist or '(none: every command refused)'}")


async def _serve(settings: object) -> None:
    import uvicorn

    from mes_adapter.api.app import build
    from mes_adapter.config.application import AdapterConfig
    from uns.audit.chain import AuditError

    assert isinstance(settings, AdapterConfig)
    try:
        app, service = build(settings)
    except (AuditError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    if len(service.tokens) == 0:
        log.warning("no API tokens configured: every /api request will be refused (uns adapter token)")
    config = uvicorn.Config(app, host=settings.http.host, port=settings.http.port, log_config=None,
                            access_log=True, lifespan="on",
                            timeout_graceful_shutdown=settings.http.graceful_shutdown_s)
    server = _make_server(config, on_exit=service.feed.close)
    await server.serve()  # type: ignore[attr-defined]
    log.info("adapter HTTP closed")


def _make_server(config: object, on_exit: Callable[[], None]) -> object:
    """A uvicorn.Server that ends the dashboard's event streams as soon as shutdown begins (so open
    SSE connections do not hold the graceful shutdown for its whole timeout), and that exits 0 after
    a clean shutdown instead of re-raising the signal (uvicorn's default), so supervisors such as
    ``uns up`` see a normal stop. A second SIGINT still forces the exit."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            on_exit()
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

    return Server(config)  # type: ignore[arg-type]


@adapter_app.command("token")
def token(
    role: str = typer.Option(..., "--role", help="viewer, operator, supervisor, engineer, or qa (classifies rejects)"),
    user: str = typer.Option(..., "--user", help="user id (as in the signer registry for command signatures)"),
    full_name: str = typer.Option(..., "--full-name", help="printed name"),
    tokens_file: Path | None = typer.Option(None, "--tokens-file",
                                            help="append the entry (hash only) to this file (auth.tokens_file)"),
) -> None:
    """Mint an API token: prints the secret once; stores or prints only its SHA-256."""
    import yaml

    from mes_adapter.auth import Role, TokenEntry, TokenFile, hash_token, mint_token
    from uns.commands.yamlsource import ConfigError

    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    secret = mint_token()
    entry = TokenEntry(user_id=user, full_name=full_name, role=parsed, token_sha256=hash_token(secret))
    if tokens_file is not None:
        try:
            backup = TokenFile.append(tokens_file, entry)
        except (ConfigError, OSError) as exc:
            raise _fail(str(exc)) from None
        if backup is not None:
            typer.echo(f"backed up the previous tokens file to {backup}", err=True)
        typer.echo(f"added {user} ({parsed.label}) to {tokens_file}; restart the adapter to apply "
                   "(it reads the tokens file at start)", err=True)
    else:
        typer.echo("# add under auth.tokens in adapter.yaml (or a tokens file):", err=True)
        typer.echo(yaml.safe_dump([{"user_id": user, "full_name": full_name, "role": parsed.label,
                                    "token_sha256": entry.digest}], sort_keys=False).rstrip(), err=True)
    typer.echo(secret)
