"""Entry point of the ``uns`` command.

Each subcommand lives in its own module under ``unshub/cli`` and is registered here; the
modules import the service packages (``broker``, ``edge_node``, ``mes_adapter``,
``simulator``) lazily inside their commands so ``uns decode`` starts fast. Only ``unshub`` (the
composition root) may import them; the ``uns`` core never does (``tests/test_layering.py``).
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="uns",
    help="uns-hub: OPC UA to Sparkplug B 3.0 Unified Namespace hub for factories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# modules under unshub.cli; each has ``register(app)``
_SUBCOMMANDS: list[str] = [
    "decode",
    "broker",
    "sim",
    "edge",
    "host",
    "adapter",
    "cmd",
    "audit",
    "history",
    "init",
    "up",
    "check",
]


def _register() -> None:
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(f"unshub.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"unshub.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.register(app)


def version_text() -> str:
    """``uns-hub <version>`` as installed (the package metadata pyproject.toml writes), with the
    wire protocol and the interpreter: what a bug report or a plant's inventory needs."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("uns-hub")
    except PackageNotFoundError:  # run from a source tree that was never installed
        installed = "unknown (not installed; pip install -e .)"
    return f"uns-hub {installed} (Sparkplug B 3.0, Python {platform.python_version()})"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="print the version and exit"),
    log_level: str = typer.Option("INFO", "--log-level", envvar="UNS_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR"),
    log_json: bool = typer.Option(False, "--log-json", envvar="UNS_LOG_JSON", help="one JSON object per log line"),
) -> None:
    from unshub.logging_setup import configure_logging

    configure_logging(log_level, json_lines=log_json)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
