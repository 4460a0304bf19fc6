"""``uns cmd``: keys and offline signing for commands to the plant floor.

The flow without a network: ``keygen`` once per user (the private key stays with the user, the
``.user.yaml`` entry goes to the administrator's user registry); ``new`` builds an unsigned
command from the allowlist; ``sign`` shows the signer what they sign and adds their signature;
a second user ``sign``\\ s with meaning ``approved`` for critical commands; ``check`` runs the
allowlist and signature rules offline. Commands are JSON files in the
:class:`uns.commands.model.CommandRequest` shape.

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

cmd_app = typer.Typer(name="cmd", help="Command keys, hashing and offline signing.", no_args_is_help=True)

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


def register(app: typer.Typer) -> None:
    app.add_typer(cmd_app, name="cmd")
