"""``uns edge``: run the edge node from a tag map, check a tag map, or browse a server for a starter.

``uns edge --config plant.yaml`` and ``uns edge run --config plant.yaml`` are the same. The
service packages are imported inside the commands so ``uns --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from edge_node.config import EdgeConfig

log = logging.getLogger("uns.cli.edge")

_CONFIG_HELP = "tag map / edge config YAML (see `uns edge browse` for a starter)"


def load_checked(config: Path) -> EdgeConfig:
    """The validated config with its files checked (shared by ``check``, ``run`` and ``uns up``);
    :class:`~uns.yaml_marks.ConfigError` naming ``file:line`` and field otherwise."""
    from edge_node.config import load_edge_config
    from edge_node.preflight import check_edge_files

    edge_config = load_edge_config(config)
    check_edge_files(edge_config, config)
    return edge_config


def _load(config: Path) -> EdgeConfig:
    """:func:`load_checked`, or exit 2 with its message."""
    from edge_node.config import ConfigError

    try:
        return load_checked(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _run(config: Path) -> None:
    from edge_node.app import EdgeNodeApp

    # no port check: the edge node listens only for /metrics and probes, and runs without them
    # (logged) when their port is taken rather than not at all (uns.probes)
    edge_config = _load(config)
    if edge_config.log_level:
        logging.getLogger().setLevel(edge_config.log_level)
    app = EdgeNodeApp(edge_config)
    try:
        asyncio.run(app.run())
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    edge = typer.Typer(help="The OPC UA → Sparkplug B edge node.", invoke_without_command=True,
                       no_args_is_help=False)

    @edge.callback(invoke_without_command=True)
    def _default(ctx: typer.Context,
                 config: Path | None = typer.Option(None, "--config", "-c", help=_CONFIG_HELP)) -> None:
        """Run the edge node (same as `uns edge run`) when no subcommand is given."""
        if ctx.invoked_subcommand is not None:
            return
        if config is None:
            typer.echo(ctx.get_help())
            raise typer.Exit(2)
        _run(config)

    @edge.command("run")
    def run(config: Path = typer.Option(..., "--config", "-c", help=_CONFIG_HELP)) -> None:
        """Connect to the OPC UA servers and publish Sparkplug B until SIGINT/SIGTERM."""
        _run(config)

    @edge.command("check")
    def check(config: Path = typer.Option(..., "--config", "-c", help=_CONFIG_HELP)) -> None:
        """Validate a tag map and print what it would publish (no connection is made)."""
        edge_config = _load(config)
        group_id, edge_node_id = edge_config.sparkplug_ids()
        devices = sorted({d for t in edge_config.tags if (d := edge_config.device_id(t)) is not None})
        typer.echo(f"{config}: OK — {group_id}/{edge_node_id}, {len(edge_config.tags)} tag(s), "
                   f"{len(edge_config.opcua)} endpoint(s), devices: {', '.join(devices) or '(none)'}")

    @edge.command("browse")
    def browse(
        endpoint: str = typer.Argument(..., help="server URL, opc.tcp://host:port/path"),
        out: Path = typer.Option(Path("tagmap.yaml"), "--out", "-o", help="where to write the starter tag map"),
        security_policy: str = typer.Option("None", "--security-policy", help="None or Basic256Sha256"),
        security_mode: str = typer.Option("None", "--security-mode", help="None, Sign or SignAndEncrypt"),
        username: str | None = typer.Option(None, "--username", "-u"),
        password_env: str | None = typer.Option(
            None, "--password-env", help="environment variable holding the password"),
        trust_dir: Path | None = typer.Option(None, "--trust-dir", help="trusted server certificates"),
        data_dir: Path = typer.Option(Path("data/edge"), "--data-dir", help="client certificate lives here"),
        max_depth: int = typer.Option(8, "--max-depth", min=1),
        max_tags: int = typer.Option(5000, "--max-tags", min=1),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out file"),
        stack: Path | None = typer.Option(
            None, "--stack", help="a stack folder (uns-data): take its line, broker login and primary host, "
                                  "so the map runs with `uns up -c`"),
        exclude: list[str] = typer.Option(
            [], "--exclude", help="browse path pattern to leave out, e.g. 'Line1/Diagnostics/*' (repeatable)"),
        include: list[str] = typer.Option(
            [], "--include", help="map only variables whose browse path matches, e.g. 'Line1/*' (repeatable)"),
        include_test_oracle: bool = typer.Option(
            False, "--include-test-oracle", help="also map the uns-hub simulator's Simulation folder (left out "
                                                 "by default: test hooks and truth counters)"),
        templates: bool = typer.Option(
            False, "--templates", help="map structured variables as Template (arrays: DataSet) and object "
                                       "instances of custom ObjectTypes as one Template each, instead of "
                                       "skipping structures and mapping an object's variables one by one"),
    ) -> None:
        """Walk a server's address space and write a starter tag map to edit."""
        from pydantic import ValidationError

        from edge_node.config import ConfigError, OpcUaEndpointConfig
        from edge_node.opcua.browse import DEFAULT_EXCLUDES, PROGRESS_EVERY, BrowseFilter, browse_to_file
        from unshub.cli.browse_stack import StackFolderError, stack_placement

        if out.exists() and not overwrite:
            typer.echo(f"{out} exists; pass --overwrite to replace it", err=True)
            raise typer.Exit(2)
        filters = BrowseFilter(exclude=[*(() if include_test_oracle else DEFAULT_EXCLUDES), *exclude],
                               include=include, templates=templates)
        try:
            placement = None if stack is None else stack_placement(stack, out)
        except (StackFolderError, ValueError) as exc:  # no stack there, or its own plant.yaml does not load
            typer.echo(f"--stack: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            ep = OpcUaEndpointConfig(url=endpoint, security_policy=security_policy, security_mode=security_mode,
                                     username=username, password_env=password_env, trust_dir=trust_dir)
        except ValidationError as exc:
            for err in exc.errors():
                typer.echo(f"{'.'.join(map(str, err['loc'])) or 'endpoint'}: {err['msg']}", err=True)
            raise typer.Exit(2) from None
        try:
            result = asyncio.run(browse_to_file(
                ep, out, data_dir=data_dir, max_depth=max_depth, max_variables=max_tags, filters=filters,
                placement=placement,
                progress=lambda n: typer.echo(f"  {n} tags so far (every {PROGRESS_EVERY})...", err=True)))
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        except (OSError, TimeoutError) as exc:
            typer.echo(f"cannot browse {endpoint}: {exc}", err=True)
            raise typer.Exit(1) from None
        except Exception as exc:  # asyncua's UaError family and friends: say what, not a traceback
            typer.echo(f"cannot browse {endpoint}: {type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {out}: {len(result.variables)} tag(s), {len(result.skipped)} skipped"
                   + (f", {result.not_included} not matching --include" if result.not_included else "")
                   + (" (truncated)" if result.truncated else ""))
        if placement is None:
            typer.echo("replace the values marked PLACEHOLDER (or browse with --stack uns-data), then: "
                       f"uns check {out}", err=True)
        else:
            typer.echo(f"check it with: uns check {out}; run it with: uns up --data-dir {stack} -c {out}")

    app.add_typer(edge, name="edge")
