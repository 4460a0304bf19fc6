"""``uns up``: the whole stack on one machine, with zero configuration.

Starts the broker (the embedded one, or with ``--broker-engine mosquitto`` the packaged Mosquitto
with the config ``uns init`` wrote for it: :mod:`unshub.mosquitto`), the simulated line, the MES
adapter (primary host, UNS mirror, REST API and dashboard) and the edge node, each as its own
process (``uns <service>``: the very commands docker-compose runs), waits until data flows, prints
where everything is, and on Ctrl-C stops them in reverse order so the wire sees the edge node's
NDEATH and the host's STATE offline. Meanwhile a service that ends is restarted with a growing
delay, and ``uns up`` gives up (exit 1) when one ends ``--restart-limit`` times within
``--restart-window`` (:meth:`unshub.supervisor.Supervisor.watch`). With ``--config`` (your own
tag map) it first derives the broker user, primary host and MES line the map needs
(:mod:`unshub.own_map`).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from unshub.cli.stack import StackPorts


_PORT_HELP = ("(default: the port in the existing stack config, else")


class BrokerEngine(StrEnum):
    """The broker `uns up` starts: ours (amqtt, the default) or the packaged Mosquitto (faster)."""

    EMBEDDED = "embedded"
    MOSQUITTO = "mosquitto"


def register(app: typer.Typer) -> None:
    app.command("up")(up)


def up(
    data_dir: Path = typer.Option(Path("uns-data"), "--data-dir", help="configs, logs and state of the stack"),
    config: Path | None = typer.Option(None, "--config", "-c",
                                       help="an edge node config (plant.yaml) for real OPC UA servers: "
                                            "no simulator is started"),
    adapter_config: Path | None = typer.Option(None, "--adapter-config", help="your own adapter.yaml"),
    broker: str | None = typer.Option(None, "--broker",
                                      help="an external broker URL for the adapter (mqtt://user:pw@host:1883): "
                                           "no broker is started"),
    broker_engine: BrokerEngine | None = typer.Option(
        None, "--broker-engine", case_sensitive=False,
        help="the broker to start: embedded (amqtt) or mosquitto (the installed Mosquitto with the generated "
             "mosquitto.conf; several times faster) (default: broker_engine in the existing stack config, "
             "else embedded)"),
    fresh: bool = typer.Option(False, "--fresh",
                               help="regenerate the stack config (new passwords, tokens and keys); "
                                    "the old folder is backed up first"),
    mqtt_port: int | None = typer.Option(None, "--mqtt-port", help=f"{_PORT_HELP} 1883)"),
    ws_port: int | None = typer.Option(None, "--ws-port", help=f"{_PORT_HELP} 9001)"),
    opcua_port: int | None = typer.Option(None, "--opcua-port", help=f"{_PORT_HELP} 4840)"),
    http_port: int | None = typer.Option(None, "--http-port", help=f"{_PORT_HELP} 8080)"),
    edge_metrics_port: int | None = typer.Option(None, "--edge-metrics-port",
                                                 help=f"edge node /metrics, /healthz, /readyz {_PORT_HELP} 9102)"),
    broker_metrics_port: int | None = typer.Option(None, "--broker-metrics-port",
                                                   help=f"broker /metrics, /healthz, /readyz {_PORT_HELP} 9101)"),
    run_for: float | None = typer.Option(None, "--run-for", help="stop by itself after this many seconds"),
    restart_limit: int = typer.Option(5, "--restart-limit", min=1,
                                      help="a service that ends this many times within --restart-window is not "
                                           "restarted again: uns up stops the stack and exits 1 (1: never restart)"),
    restart_window: float = typer.Option(300.0, "--restart-window", min=1,
                                         help="seconds in which --restart-limit ends make uns up give up"),
    demo_batch: bool = typer.Option(True, "--demo-batch/--no-demo-batch",
                                    help="with the simulator: start a batch (MES context and PLC) so counts, "
                                         "confirmations and OEE move"),
) -> None:
    """Run broker, simulated line, edge node and MES adapter with its dashboard."""
    import yaml
    from rich.console import Console

    from unshub.cli.stack import StackPorts
    from unshub.supervisor import (
        PortInUseError,
        RestartPolicy,
        ServiceFailedError,
        ServiceSpec,
        Supervisor,
        check_ports_free,
        http_ok,
    )

    console = Console(stderr=False, highlight=False, soft_wrap=True)
    uns = [sys.executable, "-m", "unshub.cli.main"]
    folder = data_dir / "config"
    stack_file = folder / "stack.yaml"
    summary = yaml.safe_load(stack_file.read_text()) if stack_file.exists() else None
    stored = _stored_ports(summary)
    requested = {"mqtt": mqtt_port, "ws": ws_port, "opcua": opcua_port, "http": http_port,
                 "edge_http": edge_metrics_port, "broker_http": broker_metrics_port}
    ports = StackPorts(**{**(stored or StackPorts()).as_dict(),
                          **{name: port for name, port in requested.items() if port is not None}})
    mqtt_port, ws_port, opcua_port, http_port = ports.mqtt, ports.ws, ports.opcua, ports.http
    edge_metrics_port, broker_metrics_port = ports.edge_http, ports.broker_http

    engine = _broker_engine(broker_engine, summary, stack_file, external=broker)
    mosquitto_binary = _mosquitto_binary() if engine is BrokerEngine.MOSQUITTO else None
    embedded_broker = engine is BrokerEngine.EMBEDDED
    simulator = config is None
    wanted = {http_port: "MES adapter HTTP"}
    if embedded_broker:
        wanted |= {mqtt_port: "MQTT broker", ws_port: "MQTT over WebSocket",
                   broker_metrics_port: "broker metrics HTTP"}
    elif engine is BrokerEngine.MOSQUITTO:
        wanted |= {mqtt_port: "MQTT broker (Mosquitto)"}
    if simulator:  # the generated plant.yaml serves the edge's metrics; a --config file decides for itself
        wanted |= {opcua_port: "simulated line (OPC UA)", edge_metrics_port: "edge node metrics HTTP"}
    clashes = _port_clashes(ports)
    if clashes:
        typer.echo(f"uns up: {clashes}. Nothing was written.", err=True)
        raise typer.Exit(2)
    try:  # before anything is written: a busy port must not cost the user a config
        check_ports_free(wanted)
    except PortInUseError as exc:
        typer.echo(f"uns up: {exc} Nothing was written.", err=True)
        raise typer.Exit(2) from None

    summary = _prepare_stack_folder(console, folder, summary, stored, ports, fresh,
                                    engine or BrokerEngine.EMBEDDED)
    if engine is BrokerEngine.MOSQUITTO:
        _check_mosquitto_conf(folder / "mosquitto.conf", mqtt_port)
    _check_configs(broker_yaml=folder / "broker.yaml" if embedded_broker else None,
                   plant=config or folder / "plant.yaml", adapter=adapter_config or folder / "adapter.yaml",
                   broker_url=broker)
    # the tokens the adapter will accept are the ones in its config (a user may have changed them),
    # not the copy stack.yaml keeps of what `uns init` generated
    summary["tokens"] = _api_tokens(adapter_config or folder / "adapter.yaml") or summary.get("tokens", {})
    if config is not None and broker is None:  # your own tag map: broker user, primary host, MES line
        from unshub.own_map import mosquitto_root_warning

        config, adapter_config, summary["line"] = _own_map(console, folder, config,
                                                           adapter_config or folder / "adapter.yaml", mqtt_port)
        warning = mosquitto_root_warning(folder, adapter_config, str(summary["line"]),
                                         mosquitto=engine is BrokerEngine.MOSQUITTO)
        if warning:
            console.print(f"  [yellow]warning: {warning}[/yellow]", markup=True)

    def on_event(name: str, text: str) -> None:
        from rich.markup import escape

        style = {"ready": "green", "starting": "cyan", "stopping": "yellow"}.get(text, "dim")
        if text.startswith(("ended", "restarted")):
            style = "yellow"
        console.print(f"  [{style}]{name:<10} {escape(text)}[/{style}]")

    adapter_cmd = [*uns, "adapter", "run", "--config", str(adapter_config or folder / "adapter.yaml")]
    if broker:
        adapter_cmd += ["--broker", broker]
    specs: list[ServiceSpec] = []
    if embedded_broker:
        specs.append(ServiceSpec("broker", [*uns, "broker", "run", "--config", str(folder / "broker.yaml")],
                                 ready_ports=[mqtt_port, ws_port]))
    elif mosquitto_binary:
        from unshub.mosquitto import mqtt_answers

        specs.append(ServiceSpec("broker", [mosquitto_binary, "-c", str(folder / "mosquitto.conf")],
                                 ready_ports=[mqtt_port], ready_check=lambda: mqtt_answers(mqtt_port)))
    if simulator:
        specs.append(ServiceSpec("simulator", [*uns, "sim", "run", "--host", "127.0.0.1",
                                               "--port", str(opcua_port), "--seed", "1"],
                                 ready_ports=[opcua_port]))
    specs.append(ServiceSpec("adapter", adapter_cmd, ready_ports=[http_port],
                             ready_check=lambda: http_ok(f"http://127.0.0.1:{http_port}/readyz")))
    edge_config = config or folder / "plant.yaml"
    if broker and config is None:
        # the simulated line's edge node follows the adapter to the external broker
        plant = yaml.safe_load(edge_config.read_text())
        plant["sparkplug"]["brokers"] = [broker]
        edge_config = folder / "plant-external-broker.yaml"
        edge_config.write_text("# derived from plant.yaml by `uns up --broker` at every start: edit plant.yaml\n"
                               + yaml.safe_dump(plant, sort_keys=False))
        edge_config.chmod(0o600)
    refused = _refusal_check(edge_config, data_dir, folder) if embedded_broker else (lambda: None)

    def edge_ready() -> bool:
        why = refused()  # an edge the broker refuses never births: say why at once, not after 90 s
        if why is not None:
            raise ServiceFailedError(why)
        return _line_born(http_port, _any_token(summary["tokens"]))

    specs.append(ServiceSpec("edge", [*uns, "edge", "run", "--config", str(edge_config)],
                             ready_check=edge_ready, ready_timeout=90))

    supervisor = Supervisor(data_dir / "logs", on_event, run_dir=data_dir / "run")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print("[bold]uns-hub[/bold] starting the stack (logs in " f"{data_dir / 'logs'})")
    try:
        for spec in specs:
            if stop.is_set():
                break
            supervisor.start(spec)
        if not stop.is_set() and simulator:
            kept = _report_reconciliation(console, summary, ports)
            if demo_batch and kept is None:
                _start_demo_batch(console, summary, ports)
            elif demo_batch:
                console.print(f"  [yellow]demo batch not started: batch {kept} is still running on the line[/yellow]")
        if not stop.is_set():
            _print_urls(console, summary, ports, engine, _broker_line(engine, mosquitto_binary, folder),
                        edge_metrics=simulator)
        deadline = None if run_for is None else time.monotonic() + run_for
        gave_up = None if stop.is_set() else supervisor.watch(stop, deadline,
                                                               RestartPolicy(restart_limit, restart_window))
        if gave_up is not None:
            raise ServiceFailedError(gave_up)
    except ServiceFailedError as exc:
        from rich.markup import escape

        console.print(f"[red]uns up: {escape(str(exc))}[/red]")
        raise typer.Exit(1) from None  # the stack is stopped below
    finally:
        console.print("[bold]uns-hub[/bold] stopping (edge node NDEATH, host STATE offline, then the rest)")
        supervisor.stop_all()
        console.print("[bold]uns-hub[/bold] stopped")


def _broker_engine(option: BrokerEngine | None, summary: object, stack_file: Path,
                   external: str | None) -> BrokerEngine | None:
    """The broker to start: the option, else ``broker_engine`` in ``stack.yaml``, else embedded;
    None with ``--broker`` (an external broker). A bad stored value or both options: exit 2."""
    if external is not None:
        if option is not None:
            typer.echo("uns up: --broker uses a broker that is already running and --broker-engine starts one: "
                       "give one of them. Nothing was written.", err=True)
            raise typer.Exit(2)
        return None
    if option is not None:
        return option
    stored = summary.get("broker_engine") if isinstance(summary, dict) else None
    if stored is None:
        return BrokerEngine.EMBEDDED
    try:
        return BrokerEngine(str(stored).lower())
    except ValueError:
        choices = ", ".join(engine.value for engine in BrokerEngine)
        typer.echo(f"uns up: {stack_file}: broker_engine: {stored!r} is not one of {choices}. "
                   "Nothing was written.", err=True)
        raise typer.Exit(2) from None


def _mosquitto_binary() -> str:
    """The Mosquitto to start; missing: the package to install, exit 2 before anything is written."""
    from unshub.mosquitto import MosquittoMissingError, find_mosquitto

    try:
        return find_mosquitto()
    except MosquittoMissingError as exc:
        typer.echo(f"uns up: {exc} Nothing was written.", err=True)
        raise typer.Exit(2) from None


def _check_mosquitto_conf(conf_file: Path, mqtt_port: int) -> None:
    """The generated (or the user's) ``mosquitto.conf`` can serve the stack: its listener, its files,
    their permissions for the user Mosquitto becomes, and every listener port free; else exit 2."""
    from unshub.mosquitto import conf_problems, read_conf
    from unshub.supervisor import PortInUseError, check_ports_free

    try:
        conf = read_conf(conf_file)
    except FileNotFoundError:
        typer.echo(f"uns up: {conf_file} is missing (a stack folder from before Mosquitto support?): "
                   "restore it from a backup, or regenerate the folder with `uns up --fresh` "
                   "(new passwords, tokens and keys; the old folder is backed up first).", err=True)
        raise typer.Exit(2) from None
    problems = conf_problems(conf, mqtt_port)
    try:
        check_ports_free({port: f"Mosquitto listener in {conf_file.name}" for port in conf.listeners
                          if port != mqtt_port})
    except PortInUseError as exc:
        problems.append(str(exc))
    if problems:
        typer.echo("uns up: Mosquitto cannot start:\n  " + "\n  ".join(problems), err=True)
        raise typer.Exit(2)


def _broker_line(engine: BrokerEngine | None, mosquitto_binary: str | None, folder: Path) -> str:
    """The summary's ``Broker`` line: which broker runs, and where its config is."""
    from unshub.mosquitto import mosquitto_version

    if engine is None:
        return "external (--broker): not started by uns up"
    if engine is BrokerEngine.EMBEDDED:
        return f"embedded (amqtt; {folder / 'broker.yaml'})"
    version = mosquitto_version(mosquitto_binary or "mosquitto") or "Mosquitto"
    return f"{version} ({mosquitto_binary} -c {folder / 'mosquitto.conf'})"


def _refusal_check(edge_config: Path, data_dir: Path, folder: Path) -> Callable[[], str | None]:
    """A check that returns what `uns up` should say once the embedded broker refuses the edge node
    (its log is followed from now on), else None (:mod:`unshub.broker_refusals`)."""
    from edge_node.config import build_sparkplug_config
    from unshub.broker_refusals import RefusalWatch, refused_message
    from unshub.cli.edge import load_checked as edge_checked

    sparkplug = build_sparkplug_config(edge_checked(edge_config))
    broker_log = data_dir / "logs" / "broker.log"
    watch = RefusalWatch(broker_log, sparkplug.mqtt_client_id)
    user = sparkplug.broker_urls[0].username if sparkplug.broker_urls else None

    def check() -> str | None:
        refusal = watch.poll()
        if refusal is None:
            return None
        return refused_message(refusal, user=user, ids=f"{sparkplug.group_id}/{sparkplug.edge_node_id}",
                               config=edge_config, broker_log=broker_log, data_dir=data_dir)
    return check


def _port_clashes(ports: StackPorts) -> str:
    """Two services given one port: a readable refusal (empty if every port is distinct)."""
    from unshub.cli.stack_ports import PORT_OPTIONS

    by_port: dict[int, list[str]] = {}
    for name, port in ports.as_dict().items():
        by_port.setdefault(port, []).append(PORT_OPTIONS[name])
    shared = [f"{port} ({' and '.join(options)})" for port, options in sorted(by_port.items()) if len(options) > 1]
    return "one port for two services: " + ", ".join(shared) if shared else ""


def _api_tokens(adapter_yaml: Path) -> dict[str, str]:
    """The first plain API token of each role in the adapter config (hashed ones cannot be used)."""
    import yaml

    data = yaml.safe_load(adapter_yaml.read_text(encoding="utf-8")) or {}
    tokens: dict[str, str] = {}
    for entry in ((data.get("auth") or {}).get("tokens") or []):
        if isinstance(entry, dict) and entry.get("token") and entry.get("role"):
            tokens.setdefault(str(entry["role"]).lower(), str(entry["token"]))
    return tokens


def _any_token(tokens: dict[str, str]) -> str:
    """A token that may read ``/api/lines`` (every role may): the least privileged one known."""
    for role in ("viewer", "operator", "supervisor", "engineer"):
        if role in tokens:
            return tokens[role]
    return next(iter(tokens.values()), "")


def _stored_ports(summary: object) -> StackPorts | None:
    """The ports an existing ``stack.yaml`` was written for (None: no usable stack config)."""
    from unshub.cli.stack import StackPorts

    if not isinstance(summary, dict) or not isinstance(summary.get("ports"), dict):
        return None
    try:
        return StackPorts(**summary["ports"])
    except TypeError:
        return None


def _prepare_stack_folder(console, folder: Path, summary: object,  # type: ignore[no-untyped-def]
                          stored: StackPorts | None, ports: StackPorts, fresh: bool,
                          engine: BrokerEngine = BrokerEngine.EMBEDDED) -> dict:
    """Keep the user's stack config: write one only if there is none (or ``--fresh``), change only
    the ports when they differ, and back the folder up before any rewrite (and say so)."""
    from unshub.cli.stack import Profile, write_stack_config
    from unshub.cli.stack_ports import PortChangeRefusedError, backup_folder, change_ports, describe_change

    if fresh or stored is None or not isinstance(summary, dict):
        if folder.is_dir() and any(folder.iterdir()):
            backup = backup_folder(folder)
            console.print(f"backed up the previous config folder {folder} to {backup}")
        written = write_stack_config(folder, Profile.LOCAL, ports, broker_engine=engine.value)
        console.print(f"wrote a new stack config (new passwords, tokens and keys) to {folder}")
        return written
    if stored == ports:
        return summary
    try:
        backup, edits = change_ports(folder, stored, ports)
    except PortChangeRefusedError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    for line in describe_change(stored, ports, edits, backup):
        console.print(line, markup=False)
    summary["ports"] = ports.as_dict()
    return summary


def _own_map(console, folder: Path, tag_map: Path, adapter: Path,  # type: ignore[no-untyped-def]
             mqtt_port: int) -> tuple[Path, Path, str]:
    """What `uns up -c` derives for the user's tag map (:mod:`unshub.own_map`), said in words; the
    edge and adapter configs to run, and the map's line (the summary's UNS mirror). A derived adapter
    config is checked like the user's."""
    from unshub.cli.adapter import load_checked as adapter_checked
    from unshub.own_map import prepare_own_map

    try:
        own = prepare_own_map(folder, tag_map, adapter, mqtt_port=mqtt_port)
        if own.adapter_config != adapter:
            adapter_checked(own.adapter_config)
    except (ValueError, OSError) as exc:
        typer.echo(f"uns up: {tag_map}: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in own.lines:
        console.print(f"  {line}", markup=False)
    return own.edge_config, own.adapter_config, own.line


def _check_configs(*, broker_yaml: Path | None, plant: Path, adapter: Path, broker_url: str | None) -> None:
    """Every service's ``check`` step before anything starts: a bad file is reported here with its
    ``file:line`` (exit 2), not as a child that exits while starting and a pointer to its log."""
    from unshub.cli.adapter import load_checked as adapter_checked
    from unshub.cli.broker import load_checked as broker_checked
    from unshub.cli.edge import load_checked as edge_checked

    steps: list[tuple[str, Callable[[], object]]] = [
        ("edge node", lambda: edge_checked(plant)),
        ("MES adapter", lambda: adapter_checked(adapter, broker=broker_url)),
    ]
    if broker_yaml is not None:
        steps.insert(0, ("broker", lambda: broker_checked(broker_yaml)))
    problems = []
    for name, step in steps:
        try:
            step()
        except ValueError as exc:
            problems.append(f"uns up: {name} config:\n{exc}")
    if problems:
        typer.echo("\n".join(problems), err=True)
        raise typer.Exit(2)


def _api(ports, token: str, method: str, path: str,  # type: ignore[no-untyped-def]
         body: dict | None = None) -> tuple[int, dict]:
    """One call to the adapter's REST API: (status, JSON body); a refusal's body says why."""
    import json

    request = urllib.request.Request(
        f"http://127.0.0.1:{ports.http}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback URL we built
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def _report_reconciliation(console, summary: dict, ports, timeout: float = 15.0) -> str | None:  # type: ignore[no-untyped-def]
    """Say in words what the adapter did with the MES context it kept from an earlier run.

    The simulated line starts idle with no batch, while the adapter's context store survives a
    restart: at the line's first birth the adapter compares them and ends a batch the line no
    longer runs (``mes_adapter.context.reconcile``). Without this line a second ``uns up`` would
    show the previous run's batch, and its OEE, against an idle line. Returns the id of a batch
    the adapter kept running (then no demo batch is started), else None."""
    from rich.markup import escape

    token = _any_token(summary["tokens"])
    path = f"/api/lines/{summary['line']}/batch/reconciliation"
    deadline = time.monotonic() + timeout
    status, body = _api(ports, token, "GET", path)
    while status == 404 and time.monotonic() < deadline:  # done when the line's first birth is ingested
        time.sleep(0.3)
        status, body = _api(ports, token, "GET", path)
    if status != 200:
        console.print(f"  [yellow]MES context: not checked against the line yet "
                      f"({escape(str(body.get('detail', status)))})[/yellow]")
        return None
    action, batch = body.get("action"), body.get("batch_id")
    if action == "ended":
        at = time.strftime("%H:%M:%S UTC", time.gmtime((body.get("end_ms") or 0) / 1000))
        console.print(f"  [yellow]MES context: batch {batch} from the previous run was still open, but the "
                      f"simulated line restarted without it, so the adapter ended it at {at}[/yellow] "
                      f"({escape(str(body.get('detail')))})")
        return None
    if action == "kept":
        console.print(f"  MES context: batch {batch} kept running ({escape(str(body.get('detail')))})")
        return str(batch)
    console.print("  MES context: no batch open from an earlier run; nothing to reconcile")
    return None


def _start_demo_batch(console, summary: dict, ports) -> None:  # type: ignore[no-untyped-def]
    """The MES asserts a batch on the UNS (REST), then the PLC is told to run it (OPC UA method).

    In a plant the second step is a command through the allowlist; the demo calls the simulator
    directly so the first minutes show production without any setup.
    """
    import asyncio

    from rich.markup import escape

    from simulator.client import call_method, string, uint32

    batch_id = time.strftime("DEMO-%Y%m%d-%H%M%S", time.gmtime())
    token = summary["tokens"].get("operator") or summary["tokens"].get("supervisor") or ""
    try:
        status, body = _api(ports, token, "POST", f"/api/lines/{summary['line']}/batch/start",
                            {"batch_id": batch_id, "work_order_id": "WO-DEMO", "product_id": "SKU-12",
                             "target_quantity": 1000})
        if status != 201:
            console.print(f"  [yellow]demo batch not started: the adapter refused it (HTTP {status}): "
                          f"{escape(str(body.get('detail', '')))}[/yellow]")
            return
        asyncio.run(call_method(f"opc.tcp://127.0.0.1:{ports.opcua}", "Line1", "StartBatch",
                                string(batch_id), string("SKU-12"), uint32(0)))
    except Exception as exc:  # a demo nicety: never fail the stack for it
        console.print(f"[yellow]  demo batch not started: {exc}[/yellow]")
        return
    console.print(f"  [green]demo batch {batch_id} running[/green] (end it from the API: "
                  f"POST /api/lines/{summary['line']}/batch/end)")


def _line_born(http_port: int, token: str) -> bool:
    """Data flows once the adapter (the primary host) sees an edge node online."""
    import json

    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/api/lines",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=1) as response:  # noqa: S310 - loopback URL we built
            lines = json.loads(response.read() or b"[]")
    except (OSError, ValueError):
        return False
    return any(line.get("nodes_online", 0) for line in lines)


def _print_urls(console, summary: dict, ports, engine: BrokerEngine | None,  # type: ignore[no-untyped-def]
                broker_line: str = "", edge_metrics: bool = True) -> None:
    """The summary block; ``engine`` is the broker uns up started (None: an external one)."""
    http = f"http://127.0.0.1:{ports.http}"
    tokens = summary.get("tokens", {})
    console.print()
    console.print("[bold green]uns-hub is running[/bold green]")
    console.print(f"  Dashboard        {http}/   (token: operator {tokens.get('operator', '?')})")
    console.print(f"  REST API docs    {http}/docs")
    if broker_line:
        console.print(f"  Broker           {broker_line}", markup=False)
    console.print(f"  Prometheus       {http}/metrics   (MES adapter)")
    if engine is BrokerEngine.EMBEDDED:
        console.print(f"                   http://127.0.0.1:{ports.broker_http}/metrics   (broker; /healthz, /readyz)")
    elif engine is BrokerEngine.MOSQUITTO:
        console.print("                   no broker /metrics with Mosquitto: its counters are on the "
                      "MQTT topics $SYS/# (e.g. mosquitto_sub -v -t '$SYS/#')", markup=False)
    if edge_metrics:
        console.print(f"                   http://127.0.0.1:{ports.edge_http}/metrics   (edge node; /healthz, /readyz)")
    if engine is not None:
        websocket = f"   (WebSocket ws://127.0.0.1:{ports.ws}/mqtt)" if engine is BrokerEngine.EMBEDDED else ""
        console.print(f"  MQTT             mqtt://127.0.0.1:{ports.mqtt}{websocket}")
        if edge_metrics:  # the simulated line (its generated plant.yaml serves the edge's metrics)
            console.print(f"  OPC UA (sim)     opc.tcp://127.0.0.1:{ports.opcua}")
        special = "$sparkplug/#" if engine is BrokerEngine.EMBEDDED else "$SYS/#"
        console.print("  MQTT Explorer:   new connection, host 127.0.0.1, port "
                      f"{ports.mqtt}, no user name (read-only); topics: '#' and '{special}'", markup=False)
    console.print(f"  UNS mirror       {summary.get('line', '')}/#   Sparkplug spBv1.0/#")
    console.print("  API tokens       " + ", ".join(f"{role}={tok}" for role, tok in tokens.items()))
    console.print("Press Ctrl-C to stop.")
    console.print()
