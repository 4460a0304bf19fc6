"""``uns sim``: run the simulated production line (an asyncua OPC UA server) and drive it.

``uns sim run`` serves the line; ``uns sim fault ...`` injects faults into a running one over
OPC UA (methods on ``Objects/Simulation``); ``uns sim batch``/``uns sim command`` start batches and
send PackML commands; ``uns sim tags`` prints the tag catalog. ``simulator`` is imported inside the
commands so the rest of ``uns`` starts without asyncua.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
from pathlib import Path
from typing import Any

import typer

sim_app = typer.Typer(help="Simulated production line (OPC UA server) for demos and tests.",
                      no_args_is_help=True)
fault_app = typer.Typer(help="Inject a fault into a running simulator (OPC UA method call).",
                        no_args_is_help=True)
batch_app = typer.Typer(help="Start or stop a batch on a running simulator.", no_args_is_help=True)
sim_app.add_typer(fault_app, name="fault")
sim_app.add_typer(batch_app, name="batch")

DEFAULT_ENDPOINT = "opc.tcp://127.0.0.1:4840"
_COMMANDS = ("start", "stop", "reset", "hold", "unhold", "abort", "clear")


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")


# --------------------------------------------------------------------------- run


@sim_app.command("run")
def run(
    host: str = typer.Option("127.0.0.1", help="address to bind (loopback by default)"),
    port: int = typer.Option(4840, help="TCP port"),
    line: str = typer.Option("Line1", help="line name: first level of every node id"),
    seed: int = typer.Option(1, help="seed of the part (reject) and noise random streams"),
    rate: float = typer.Option(5.0, help="nominal production rate, parts per second"),
    tick: float = typer.Option(0.1, "--tick", help="model step and OPC UA update interval, seconds"),
    acting_s: float = typer.Option(0.5, "--acting-s", help="duration of PackML acting states"),
    counter_modulus: int = typer.Option(2**32, help="counters wrap to 0 here (rollover tests)"),
    counter_start: int = typer.Option(0, help="initial counter value (start near a wrap)"),
    extra_tags: int = typer.Option(0, help="extra synthetic Double tags for benchmarks"),
    extra_rate_hz: float = typer.Option(10.0, help="update rate of the synthetic tags"),
    security: list[str] = typer.Option(
        ["None"], "--security",
        help="endpoint mode, repeatable: None, Basic256Sha256_Sign, Basic256Sha256_SignAndEncrypt"),
    data_dir: Path | None = typer.Option(None, help="where the self-signed server certificate lives"),
    user: list[str] = typer.Option([], "--user", help="NAME:PASSWORD allowed to log in, repeatable"),
    read_only_user: list[str] = typer.Option(
        [], "--read-only-user", help="NAME:PASSWORD that may read and subscribe but not write, repeatable"),
    no_anonymous: bool = typer.Option(False, "--no-anonymous", help="refuse anonymous sessions"),
) -> None:
    """Serve the simulated line until SIGINT/SIGTERM."""
    from pydantic import ValidationError

    from simulator.config import SecurityConfig, SimulatorConfig, UserConfig

    try:
        users = []
        for item, read_only in [(u, False) for u in user] + [(u, True) for u in read_only_user]:
            name, sep, password = item.partition(":")
            if not sep or not name:
                raise typer.BadParameter(f"--user {item!r} must be NAME:PASSWORD")
            users.append(UserConfig(username=name, password=password, read_only=read_only))
        config = SimulatorConfig(
            host=host, port=port, line=line, seed=seed, rate=rate, tick_s=tick,
            acting_state_s=acting_s, counter_modulus=counter_modulus, counter_start=counter_start,
            extra_tags=extra_tags, extra_rate_hz=extra_rate_hz,
            security=SecurityConfig(modes=security, data_dir=data_dir, users=users,
                                    allow_anonymous=not no_anonymous),
        )
    except ValidationError as exc:
        from uns.commands.yamlsource import problems

        typer.echo("uns sim: " + "\n".join(problems(exc, lambda loc: "command line")), err=True)
        raise typer.Exit(2) from None
    from uns.config_checks import ConfigChecks
    from unshub.supervisor import PortInUseError

    if data_dir is not None:
        checks = ConfigChecks(lambda loc: "command line")
        if not checks.writable_dir(("--data-dir",), data_dir):
            typer.echo("uns sim: " + "\n".join(checks.issues), err=True)
            raise typer.Exit(2)
    try:
        asyncio.run(_serve(config))
    except PortInUseError as exc:
        typer.echo(f"uns sim: command line: --port: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"uns sim: cannot serve {config.endpoint}: {exc}", err=True)
        raise typer.Exit(1) from None


async def _serve(config: Any) -> None:
    from simulator.config import NAMESPACE_URI
    from simulator.server import SimulatedLineServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim = SimulatedLineServer(config)
    try:
        await sim.start()
        typer.echo(f"uns sim: line {config.line} serving {sim.endpoint} "
                   f"(namespace {NAMESPACE_URI} = ns={sim.namespace_index}, seed {config.seed})")
        sys.stdout.flush()
        await stop.wait()
        typer.echo("uns sim: stopping")
    finally:
        await sim.stop()


# --------------------------------------------------------------------------- tags


@sim_app.command("tags")
def tags(
    line: str = typer.Option("Line1", help="line name"),
    extra_tags: int = typer.Option(0, help="include this many synthetic tags"),
    truth: bool = typer.Option(False, "--truth", help="include the Simulation/Truth oracle tags"),
    as_json: bool = typer.Option(False, "--json", help="one JSON array instead of a table"),
) -> None:
    """Print the tag catalog (node ids, types, units, ranges, writability)."""
    from simulator.catalog import tag_catalog
    from simulator.config import SimulatorConfig

    specs = tag_catalog(SimulatorConfig(line=line, extra_tags=extra_tags), include_truth=truth)
    if as_json:
        typer.echo(json.dumps([dict(spec.model_dump(), expanded_node_id=spec.expanded_node_id)
                               for spec in specs], indent=2))
        return
    for spec in specs:
        rng = "" if spec.eu_low is None else f"[{spec.eu_low:g}..{spec.eu_high:g}]"
        typer.echo(f"{spec.path:<40} {spec.datatype:<8} {spec.unit or '':<10} {rng:<18} "
                   f"{'RW' if spec.writable else 'R'}")


# --------------------------------------------------------------------------- remote calls


def _call(ctx: typer.Context, owner: str | None, method: str, *args: Any) -> list[Any]:
    from asyncua.ua import UaStatusCodeError

    from simulator.client import call_method

    opts = ctx.obj or {}
    endpoint = opts.get("endpoint", DEFAULT_ENDPOINT)
    try:
        return asyncio.run(call_method(endpoint, owner or opts.get("line", "Line1"), method, *args,
                                       username=opts.get("username"), password=opts.get("password")))
    except UaStatusCodeError as exc:
        typer.echo(f"uns sim: {method} refused by {endpoint}: {exc}", err=True)
        raise typer.Exit(1) from None
    except (TimeoutError, OSError) as exc:
        typer.echo(f"uns sim: cannot reach {endpoint}: {exc!r}", err=True)
        raise typer.Exit(1) from None


def _endpoint_options(ctx: typer.Context, endpoint: str, line: str, username: str | None,
                      password: str | None) -> None:
    ctx.obj = {"endpoint": endpoint, "line": line, "username": username, "password": password}


_ENDPOINT = typer.Option(DEFAULT_ENDPOINT, "--endpoint", help="simulator endpoint URL")
_LINE = typer.Option("Line1", "--line", help="line name on that simulator")
_USERNAME = typer.Option(None, "--username", help="OPC UA user, if the simulator requires one")
_PASSWORD = typer.Option(None, "--password", help="its password")


@fault_app.callback()
def _fault_root(ctx: typer.Context, endpoint: str = _ENDPOINT, line: str = _LINE,
                username: str | None = _USERNAME, password: str | None = _PASSWORD) -> None:
    _endpoint_options(ctx, endpoint, line, username, password)


@batch_app.callback()
def _batch_root(ctx: typer.Context, endpoint: str = _ENDPOINT, line: str = _LINE,
                username: str | None = _USERNAME, password: str | None = _PASSWORD) -> None:
    _endpoint_options(ctx, endpoint, line, username, password)


def _inject(ctx: typer.Context, kind: str, tag: str, duration: float, value: float) -> None:
    from simulator.client import double, string

    result = _call(ctx, "Simulation", "InjectFault", string(kind), string(tag), double(duration),
                   double(value))
    typer.echo(f"fault {result[0] if result else '?'}: {kind} on {tag} for {duration:g} s")


_TAG = typer.Option(..., "--tag", help="tag path, e.g. Line1/Filler/Temperature")
_DURATION = typer.Option(5.0, "--duration", help="seconds")


@fault_app.command("bad-status")
def fault_bad_status(ctx: typer.Context, tag: str = _TAG, duration: float = _DURATION,
                     status: int = typer.Option(0, help="raw StatusCode; 0 = BadSensorFailure")) -> None:
    """Bad quality (value null) on a tag."""
    _inject(ctx, "bad_status", tag, duration, float(status))


@fault_app.command("comm-error")
def fault_comm_error(ctx: typer.Context, tag: str = _TAG, duration: float = _DURATION) -> None:
    """BadCommunicationError (value null) on a tag."""
    _inject(ctx, "comm_error", tag, duration, 0.0)


@fault_app.command("uncertain")
def fault_uncertain(ctx: typer.Context, tag: str = _TAG, duration: float = _DURATION,
                    status: int = typer.Option(0, help="raw StatusCode; 0 = UncertainLastUsableValue")
                    ) -> None:
    """Uncertain quality with the last usable value."""
    _inject(ctx, "uncertain", tag, duration, float(status))


@fault_app.command("spike")
def fault_spike(ctx: typer.Context, tag: str = _TAG, duration: float = typer.Option(0.0, "--duration"),
                value: float = typer.Option(-9999.0, help="spike value")) -> None:
    """A Good-quality outlier (default -9999); duration 0 = one update."""
    _inject(ctx, "spike", tag, duration, value)


@fault_app.command("freeze")
def fault_freeze(ctx: typer.Context, tag: str = _TAG, duration: float = _DURATION) -> None:
    """The tag stops changing (stuck sensor, still Good)."""
    _inject(ctx, "freeze", tag, duration, math.nan)


@fault_app.command("future-timestamp")
def fault_future(ctx: typer.Context, tag: str = _TAG, duration: float = _DURATION,
                 ahead: float = typer.Option(3600.0, help="seconds the SourceTimestamp is ahead")) -> None:
    """SourceTimestamps in the future (a PLC with a wrong clock)."""
    _inject(ctx, "future_timestamp", tag, duration, ahead)


@fault_app.command("past-timestamp")
def fault_past(ctx: typer.Context, tag: str = _TAG, duration: float = _DURATION,
               behind: float = typer.Option(172_800.0, help="seconds the SourceTimestamp is behind")) -> None:
    """SourceTimestamps in the past (a PLC whose clock was reset)."""
    _inject(ctx, "past_timestamp", tag, duration, behind)


@fault_app.command("clear")
def fault_clear(ctx: typer.Context, tag: str = typer.Option("", "--tag", help="empty = all")) -> None:
    """Remove injected faults."""
    from simulator.client import string

    result = _call(ctx, "Simulation", "ClearFaults", string(tag))
    typer.echo(f"cleared {result[0] if result else 0} fault(s)")


@fault_app.command("restart")
def fault_restart(ctx: typer.Context, down: float = typer.Option(5.0, "--down", help="seconds down")) -> None:
    """Restart the OPC UA server: down for N seconds, then back with the same node ids."""
    from simulator.client import double

    _call(ctx, "Simulation", "RestartServer", double(down))
    typer.echo(f"server restarting, down for {down:g} s")


@fault_app.command("stop")
def fault_stop(ctx: typer.Context, duration: float = _DURATION,
               reason: int = typer.Option(0, help="stop reason code; 0 = 180000 technical")) -> None:
    """An unplanned machine stop (Execute -> Held -> Execute) for OEE availability."""
    from simulator.client import double, int32

    _call(ctx, "Simulation", "ForceStop", double(duration), int32(reason))
    typer.echo(f"line held for {duration:g} s")


@fault_app.command("rejects")
def fault_rejects(ctx: typer.Context, count: int = typer.Option(..., "--count"),
                  cell: str = typer.Option("", "--cell", help="empty = last cell")) -> None:
    """Reject the next COUNT parts."""
    from simulator.client import string, uint32

    _call(ctx, "Simulation", "ForceRejects", uint32(count), string(cell))
    typer.echo(f"next {count} part(s) will be rejected")


@fault_app.command("reject-rate")
def fault_reject_rate(ctx: typer.Context, rate: float = typer.Option(..., "--rate"),
                      cell: str = typer.Option("", "--cell", help="empty = every cell")) -> None:
    """Set the reject probability (0..1)."""
    from simulator.client import double, string

    _call(ctx, "Simulation", "SetRejectRate", double(rate), string(cell))
    typer.echo(f"reject rate {rate:g}")


@fault_app.command("alarm")
def fault_alarm(ctx: typer.Context, cell: str = typer.Option(..., "--cell", help="cell, e.g. Filler"),
                alarm: str = typer.Option(..., "--alarm",
                                          help="jam, door_open, estop, or temperature (with --delta)"),
                clear: bool = typer.Option(False, "--clear", help="clear the alarm instead of raising it"),
                delta: float = typer.Option(15.0, "--delta", help="temperature: degC above the setpoint")
                ) -> None:
    """Raise or clear an OPC UA condition of a cell (a temperature alarm via a process disturbance)."""
    from simulator.client import boolean, double, string

    if alarm.strip().lower() == "temperature":
        _call(ctx, "Simulation", "SetDisturbance", string(cell), double(0.0 if clear else delta))
        typer.echo(f"{cell} temperature disturbance {0.0 if clear else delta:g} degC")
        return
    result = _call(ctx, "Simulation", "RaiseAlarm", string(cell), string(alarm), boolean(not clear))
    typer.echo(f"{cell} {alarm} {'cleared' if clear else 'raised'} ({result[0] if result else '?'} event(s))")


@batch_app.command("start")
def batch_start(ctx: typer.Context, order: str = typer.Option(..., "--order"),
                product: str = typer.Option(..., "--product"),
                quantity: int = typer.Option(0, "--quantity", help="good parts; 0 = until stop")) -> None:
    """StartBatch(order, product, quantity)."""
    from simulator.client import string, uint32

    _call(ctx, None, "StartBatch", string(order), string(product), uint32(quantity))
    typer.echo(f"batch {order} started")


@batch_app.command("stop")
def batch_stop(ctx: typer.Context) -> None:
    """StopBatch(): prints the simulator's own good/reject totals of the window."""
    result = _call(ctx, None, "StopBatch")
    typer.echo(json.dumps({"good": result[0], "reject": result[1]}))


@sim_app.command("command")
def command(
    name: str = typer.Argument(..., help=f"PackML command: {', '.join(_COMMANDS)}"),
    endpoint: str = _ENDPOINT, line: str = _LINE,
    username: str | None = _USERNAME, password: str | None = _PASSWORD,
) -> None:
    """Send a PackML command (Start, Stop, Reset, Hold, Unhold, Abort, Clear) to the line."""
    if name.lower() not in _COMMANDS:
        raise typer.BadParameter(f"unknown command {name!r}; use one of {', '.join(_COMMANDS)}")
    ctx = typer.Context(typer.main.get_command(sim_app))
    _endpoint_options(ctx, endpoint, line, username, password)
    _call(ctx, None, name.capitalize())
    typer.echo(f"{name.capitalize()} sent")
