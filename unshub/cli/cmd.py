"""``uns cmd``: keys and offline signing for commands to the plant floor.

The flow without a network: ``keygen`` once per user (the private key stays with the user, the
``.user.yaml`` entry goes to the administrator's user registry); ``new`` builds an unsigned
command from the allowlist; ``sign`` shows the signer what they sign and adds their signature;
a second user ``sign``\\ s with meaning ``approved`` for critical commands; ``check`` runs the
allowlist and signature rules offline. Commands are JSON files in the
:class:`uns.commands.model.CommandRequest` shape. ``send`` does it all online: build, sign (one or
two users), publish the DCMD/NCMD and print the edge's result (exit 0 only when confirmed).

Passphrases: read from the environment variable named by ``--passphrase-env``, else prompted
(hidden); ``--no-passphrase`` makes an unencrypted key (tests, demos only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from uns.commands.model import CommandRequest

cmd_app = typer.Typer(name="cmd", help="Command keys, hashing, offline signing, and sending.", no_args_is_help=True)

_PASS_ENV = typer.Option(None, "--passphrase-env", help="environment variable holding the key passphrase")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _now_ms() -> int:
    from uns.sparkplug.model import now_ms

    return now_ms()


def _passphrase(env: str | None, *, new: bool, disabled: bool = False) -> bytes | None:
    if disabled:
        return None
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise _fail(f"environment variable {env} is not set")
        return value.encode("utf-8") or None
    return typer.prompt("key passphrase", hide_input=True, confirmation_prompt=new).encode("utf-8") or None


def _read_command(path: Path) -> CommandRequest:
    from pydantic import ValidationError

    from uns.commands.model import CommandRequest

    try:
        return CommandRequest.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"{path}: {'.'.join(map(str, first['loc'])) or '(root)'}: {first['msg']}") from None


def _write_command(path: Path, request: CommandRequest) -> None:
    path.write_text(request.model_dump_json(indent=2) + "\n", encoding="utf-8")


@cmd_app.command("keygen")
def keygen(
    user: str = typer.Option(..., "--user", help="user id, as in the user registry"),
    full_name: str = typer.Option(..., "--full-name", help="printed name shown with every signature"),
    out: Path = typer.Option(Path("."), "--out", help="directory for <user>.key and <user>.user.yaml"),
    passphrase_env: str | None = _PASS_ENV,
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="unencrypted key (tests, demos)"),
) -> None:
    """Create a user's Ed25519 signing key (0600) and their registry entry."""
    import yaml

    from uns.commands.signing import generate_private_key, key_id, registry_entry, write_private_key

    out.mkdir(parents=True, exist_ok=True)
    key_path, entry_path = out / f"{user}.key", out / f"{user}.user.yaml"
    if key_path.exists():
        raise _fail(f"{key_path} exists; a signing key is never overwritten (deactivate the user and make a new one)")
    key = generate_private_key()
    write_private_key(key_path, key, _passphrase(passphrase_env, new=True, disabled=no_passphrase))
    entry_path.write_text(yaml.safe_dump(registry_entry(user, full_name, key.public_key()), sort_keys=False),
                          encoding="utf-8")
    typer.echo(f"private key: {key_path} (keep it; mode 0600)")
    typer.echo(f"registry entry: {entry_path} (give to the administrator), key id {key_id(key.public_key())}")


@cmd_app.command("new")
def new(
    allowlist: Path = typer.Option(..., "--allowlist", help="allowlist YAML (normalizes the value, sets validity)"),
    group_id: str = typer.Option(..., "--group"),
    edge_node_id: str = typer.Option(..., "--edge"),
    device_id: str | None = typer.Option(None, "--device", help="omit for a node-level metric"),
    metric: str = typer.Option(..., "--metric"),
    value: str = typer.Option(..., "--value", help='JSON: 72.5, true, \'"SKU-12"\', \'{"order": "WO-1"}\''),
    user: str = typer.Option(..., "--user", help="requester (must sign first)"),
    reason: str = typer.Option(..., "--reason", help="why (mandatory)"),
    validity_s: float | None = typer.Option(None, "--validity", help="seconds; capped by the rule"),
    out: Path = typer.Option(..., "--out", help="command JSON file to write"),
) -> None:
    """Build an unsigned command JSON file."""
    from pydantic import ValidationError

    from uns.commands.allowlist import Allowlist, ConfigError
    from uns.commands.checker import build_request

    try:
        rules = Allowlist.load(allowlist)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError as exc:
        raise _fail(f"--value is not JSON ({exc.msg}); quote strings: '\"SKU-12\"'") from None
    try:
        request = build_request(rules, group_id=group_id, edge_node_id=edge_node_id, device_id=device_id,
                                metric=metric, value=parsed, requested_by=user, reason=reason, now_ms=_now_ms(),
                                validity_s=validity_s)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if rules.find(group_id, edge_node_id, device_id, metric) is None:
        typer.echo(f"warning: {request.target_label} is not in allowlist {rules.version}; it will be refused",
                   err=True)
    _write_command(out, request)
    typer.echo(f"{out}: command {request.command_id}, hash {request.command_hash()}")


@cmd_app.command("hash")
def hash_command(
    file: Path = typer.Argument(..., help="command JSON file"),
    show_canonical: bool = typer.Option(False, "--canonical", help="also print the exact hashed bytes"),
) -> None:
    """Print the command hash (SHA-256 over the canonical JSON of the action fields)."""
    request = _read_command(file)
    if show_canonical:
        typer.echo(request.canonical_bytes().decode("utf-8"))
    typer.echo(request.command_hash())


@cmd_app.command("sign")
def sign(
    file: Path = typer.Argument(..., help="command JSON file; the signature is added in place unless --out"),
    user: str = typer.Option(..., "--user"),
    key: Path = typer.Option(..., "--key", help="the user's private key file"),
    meaning: str = typer.Option("authored", "--meaning", help="authored, approved, reviewed or verified"),
    full_name: str | None = typer.Option(None, "--full-name", help="default: from <user>.user.yaml beside the key"),
    out: Path | None = typer.Option(None, "--out"),
    passphrase_env: str | None = _PASS_ENV,
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="the key is not encrypted"),
    yes: bool = typer.Option(False, "--yes", help="do not ask for confirmation"),
) -> None:
    """Show the command, then sign its hash with the user's key and meaning."""
    from uns.commands.model import SignatureMeaning
    from uns.commands.signing import KeyFileError, load_private_key, sign_command

    request = _read_command(file)
    try:
        chosen = SignatureMeaning(meaning)
    except ValueError:
        raise _fail(f"--meaning {meaning!r}: use one of {[m.value for m in SignatureMeaning]}") from None
    name = full_name or _full_name_beside(key, user)
    typer.echo(f"command {request.command_id}\n  target    {request.target_label}\n  value     "
               f"{json.dumps(request.value)}\n  requested {request.requested_by}: {request.reason}\n  valid until "
               f"{request.valid_until_ms} ms\n  hash      {request.command_hash()}\n  signing as {name} ({user}), "
               f"meaning {chosen.value}", err=True)
    if not yes and not typer.confirm("sign?", err=True):
        raise typer.Exit(1)
    try:
        private = load_private_key(key, _passphrase(passphrase_env, new=False, disabled=no_passphrase))
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    signature = sign_command(request, private, user_id=user, full_name=name, meaning=chosen, now_ms=_now_ms())
    target = out or file
    _write_command(target, request.with_signature(signature))
    typer.echo(f"{target}: signed by {user} ({chosen.value}), key {signature.key_id}")


def _full_name_beside(key: Path, user: str) -> str:
    import yaml

    entry = key.with_name(f"{user}.user.yaml")
    try:
        data = yaml.safe_load(entry.read_text(encoding="utf-8"))
        return str(data["users"][user]["full_name"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        raise _fail(f"no --full-name given and no readable {entry}") from None


@cmd_app.command("check")
def check(
    file: Path = typer.Argument(..., help="command JSON file"),
    allowlist: Path = typer.Option(..., "--allowlist"),
    users: Path = typer.Option(..., "--users", help="user registry YAML (public keys)"),
    state: str | None = typer.Option(None, "--state", help="current machine state name (or number)"),
) -> None:
    """Run the allowlist and signature rules offline; exit 0 if allowed, 1 if refused."""
    from uns.commands.allowlist import Allowlist, ConfigError
    from uns.commands.checker import AllowlistChecker
    from uns.commands.signing import UserRegistry

    request = _read_command(file)
    try:
        checker = AllowlistChecker(Allowlist.load(allowlist), UserRegistry.load(users))
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    machine_state: str | int | None = int(state) if state is not None and state.isdigit() else state
    decision = checker.check(request, machine_state, _now_ms(), consume=False)
    typer.echo(decision.model_dump_json(indent=2))
    raise typer.Exit(0 if decision.allowed else 1)


def _load_key_for(key: Path, passphrase_env: str | None) -> Any:
    """A signing key: passphrase from the env var if named; else unencrypted, else prompted."""
    from uns.commands.signing import KeyFileError, load_private_key

    try:
        if passphrase_env is not None:
            return load_private_key(key, _passphrase(passphrase_env, new=False))
        try:
            return load_private_key(key, None)
        except KeyFileError:
            if not os.isatty(0):
                raise
            return load_private_key(key, _passphrase(None, new=False))
    except KeyFileError as exc:
        raise _fail(str(exc)) from None


def _parse_value(text: str) -> Any:
    """JSON if it parses (120, 72.5, true, {"order": ...}); otherwise the text itself (SKU-12)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@cmd_app.command("send")
def send(
    broker: str = typer.Option(..., "--broker", help="mqtt://host:port of the plant broker"),
    line: str = typer.Option(..., "--line", help="ISA-95 line: enterprise/site/area/line"),
    cell: str | None = typer.Option(None, "--cell", help="cell (Sparkplug device); omit for a line-level metric"),
    metric: str = typer.Option(..., "--metric", help="metric name as born by the edge, e.g. SpeedSetpoint"),
    value: str = typer.Option(..., "--value", help='JSON (120, true, {"Order": "WO-1"}) or plain text (SKU-12)'),
    user: str = typer.Option(..., "--user", help="requester; signs with meaning 'authored'"),
    key: Path = typer.Option(..., "--key", help="the requester's private key file"),
    full_name: str | None = typer.Option(None, "--full-name", help="default: <user>.user.yaml beside the key"),
    cosigner: str | None = typer.Option(None, "--cosigner", help="second user for critical commands ('approved')"),
    cosigner_key: Path | None = typer.Option(None, "--cosigner-key"),
    cosigner_name: str | None = typer.Option(None, "--cosigner-name"),
    reason: str | None = typer.Option(None, "--reason", help="why (recorded in the audit trail)"),
    allowlist: Path | None = typer.Option(None, "--allowlist", help="optional: types the metric if no birth is seen"),
    validity_s: float | None = typer.Option(None, "--validity", help="seconds the command stays valid"),
    timeout: float = typer.Option(10.0, "--timeout", help="seconds to wait for the result"),
    passphrase_env: str | None = _PASS_ENV,
    cosigner_passphrase_env: str | None = typer.Option(None, "--cosigner-passphrase-env"),
) -> None:
    """Sign a command, send it as DCMD/NCMD, wait for the edge's result; exit 0 only if confirmed."""
    import asyncio

    from pydantic import ValidationError

    from uns.commands.allowlist import Allowlist, ConfigError
    from uns.commands.model import Outcome, SignatureMeaning
    from uns.isa95 import EquipmentPath, LinePath, NamespaceMapping
    from uns.mqtt_url import BrokerURLError
    from unshub.command_client import CommandClient, CommandClientError, Signer

    levels = line.split("/")
    if len(levels) != 4:
        raise _fail(f"--line {line!r}: expected enterprise/site/area/line")
    try:
        equipment = EquipmentPath(line=LinePath(enterprise=levels[0], site=levels[1], area=levels[2],
                                                line=levels[3]), cell=cell)
    except ValidationError as exc:
        raise _fail(f"--line/--cell: {exc.errors()[0]['msg']}") from None
    mapping = NamespaceMapping()
    ids = mapping.to_sparkplug(equipment)
    if (cosigner is None) != (cosigner_key is None):
        raise _fail("--cosigner and --cosigner-key go together")
    rules = None
    if allowlist is not None:
        try:
            rules = Allowlist.load(allowlist)
        except ConfigError as exc:
            raise _fail(str(exc)) from None
    signers = [Signer(user, full_name or _full_name_beside(key, user), _load_key_for(key, passphrase_env))]
    if cosigner is not None and cosigner_key is not None:
        signers.append(Signer(cosigner, cosigner_name or _full_name_beside(cosigner_key, cosigner),
                              _load_key_for(cosigner_key, cosigner_passphrase_env), SignatureMeaning.APPROVED))

    async def run() -> Any:
        async with CommandClient(broker, mapping, allowlist=rules) as client:
            return await client.submit(group_id=ids.group_id, edge_node_id=ids.edge_node_id, device_id=ids.device_id,
                                       metric=metric, value=_parse_value(value), requested_by=user,
                                       reason=reason or f"uns cmd send by {user}", signers=signers,
                                       validity_s=validity_s, timeout=timeout)

    try:
        result = asyncio.run(run())
    except (CommandClientError, BrokerURLError, ValidationError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # aiomqtt.MqttError and OSError: the broker is unreachable
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(result.model_dump_json(indent=2))
    raise typer.Exit(0 if result.outcome is Outcome.CONFIRMED else 1)


def register(app: typer.Typer) -> None:
    app.add_typer(cmd_app, name="cmd")
