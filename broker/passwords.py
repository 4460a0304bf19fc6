"""The broker's user database: a YAML password file of argon2id hashes, roles and Sparkplug scopes.

Why YAML and not mosquitto's ``user:hash`` lines: our edge node ids are ``<area>:<line>`` and
group ids ``<enterprise>:<site>`` (README "Wire conventions"), so a colon-separated line cannot carry an edge
user's scope. The file looks like this and is written by ``uns broker passwd``::

    # uns-hub broker users
    users:
      line1-edge:
        hash: $argon2id$v=19$m=65536,t=3,p=4$...
        role: edge               # edge | host | explorer | admin | a role from the broker config
        group: acme:plant1       # Sparkplug group_id this edge user may speak for (role edge)
        edge: packaging:line1    # Sparkplug edge_node_id
      mes:
        hash: $argon2id$...
        role: host

Hashing and verifying are CPU-bound (tens of milliseconds by design); the broker calls
:func:`verify_password` through ``asyncio.to_thread`` so a connect storm never stalls the loop.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from broker.errors import UnsBrokerError
from uns.commands.yamlsource import ConfigError as YamlConfigError
from uns.commands.yamlsource import YamlSource
from uns.passwords import dummy_hash, hash_password, verify_password  # noqa: F401 - broker callers import them here
from uns.private_file import write_private
from uns.sparkplug.topic import validate_id


class PasswordFileError(UnsBrokerError, YamlConfigError):
    """The password file cannot be read, parsed or written; the message names the file and the fault
    (``issues``: one ``file:line: field: message`` per problem, like every config file)."""


class UserRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hash: str = Field(description="argon2id hash from `uns broker passwd`")
    role: str = "explorer"
    group: str | None = Field(None, description="Sparkplug group_id (edge role)")
    edge: str | None = Field(None, description="Sparkplug edge_node_id (edge role)")

    @field_validator("hash")
    @classmethod
    def _argon2(cls, value: str) -> str:
        if not value.startswith("$argon2"):
            raise ValueError("hash must be an argon2 hash (starts with '$argon2'); create it with `uns broker passwd`")
        return value

    @field_validator("group", "edge")
    @classmethod
    def _sparkplug_id(cls, value: str | None) -> str | None:
        return None if value is None else validate_id(value, "Sparkplug id")


class PasswordFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: dict[str, UserRecord] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _names(cls, value: dict[str, UserRecord]) -> dict[str, UserRecord]:
        for name in value:
            validate_username(name)
        return value


def validate_username(name: str) -> str:
    if not name or any(c.isspace() for c in name) or len(name.encode()) > 256:
        raise ValueError(f"user name {name!r} must be 1-256 bytes with no whitespace")
    return name


def load_password_file(path: Path) -> PasswordFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PasswordFileError(f"password file {path} does not exist; create users with "
                                f"`uns broker passwd {path} USER`") from None
    except OSError as exc:
        raise PasswordFileError(f"password file {path} cannot be read: {exc}") from exc
    try:  # file:line errors, like every config file (uns.commands.yamlsource)
        source = YamlSource.parse(text, str(path))
    except YamlConfigError as exc:
        raise PasswordFileError(str(exc), exc.issues) from None
    try:
        return PasswordFile.model_validate(source.data or {})
    except ValidationError as exc:
        error = source.error(exc)
        raise PasswordFileError(str(error), error.issues) from None


def save_password_file(path: Path, content: PasswordFile) -> None:
    """Write atomically with mode 0600, so a running broker never reads half a file."""
    data = {"users": {name: rec.model_dump(exclude_none=True) for name, rec in sorted(content.users.items())}}
    text = "# uns-hub broker users; manage with `uns broker passwd`\n" + yaml.safe_dump(data, sort_keys=False)
    write_private(path, text)


def with_user(content: PasswordFile, username: str, password: str, role: str,
              group: str | None = None, edge: str | None = None) -> PasswordFile:
    """A copy of ``content`` with ``username`` added or replaced."""
    validate_username(username)
    if role == "edge" and (group is None or edge is None):
        raise ValueError("role 'edge' needs the Sparkplug group and edge node id it may speak for (--group, --edge)")
    record = UserRecord(hash=hash_password(password), role=role, group=group, edge=edge)
    return PasswordFile(users={**content.users, username: record})


def without_user(content: PasswordFile, username: str) -> PasswordFile:
    if username not in content.users:
        raise KeyError(f"user {username!r} is not in the password file")
    return PasswordFile(users={k: v for k, v in content.users.items() if k != username})
