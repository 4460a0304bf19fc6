"""``uns check``: validate every config of a deployment at once, for a person or a CI job.

Why one command: a deployment is six files that name each other (the broker its users, the
adapter and the edge node the allowlist and signers); fixing them one ``uns <service> check`` and
one error at a time is slow, and GitOps wants a single gate. Each file goes through the very
``load_checked`` step its service runs before starting (so ``check`` passes exactly what ``run``
accepts), every problem of every file is collected, each printed once as
``file:line: path: message`` in the file where it is (a referenced file's problems are not
repeated under the field that names it), and the exit code is 2 if there is any. For a stack
folder it then checks the links between the files (:mod:`unshub.cli.check_links`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from unshub.own_map import DERIVED_SUFFIX  # `uns up -c plant-own.yaml` runs plant-own.uns-up.yaml

#: the files of a stack folder (`uns init`), in the order they are checked
STACK_FILES = ("broker.yaml", "users.yaml", "plant.yaml", "adapter.yaml", "allowlist.yaml", "signers.yaml")
#: written by `uns up --broker` from plant.yaml at every start: checking plant.yaml covers it
DERIVED_TAG_MAP = "plant-external-broker.yaml"



@dataclass(frozen=True)
class Kind:
    name: str
    #: words in a file name that say the kind (``plant-line2.yaml`` is a tag map)
    words: tuple[str, ...]
    #: top-level keys that say the kind when the name does not
    keys: tuple[str, ...]
    check: Callable[[Path], object]


def _edge(path: Path) -> object:
    from unshub.cli.edge import load_checked

    return load_checked(path)


def _adapter(path: Path) -> object:
    from unshub.cli.adapter import load_checked

    return load_checked(path)


def _broker(path: Path) -> object:
    from unshub.cli.broker import load_checked

    return load_checked(path)


def _users(path: Path) -> object:
    from broker.passwords import load_password_file

    return load_password_file(path)


def _signers(path: Path) -> object:
    from uns.commands.signing import UserRegistry

    return UserRegistry.load(path)


def _allowlist(path: Path) -> object:
    from uns.commands.allowlist import Allowlist

    return Allowlist.load(path)


KINDS = (
    Kind("edge node tag map", ("plant", "edge", "tagmap", "tag-map"), ("tags", "opcua"), _edge),
    Kind("MES adapter", ("adapter",), ("mes", "host", "auth"), _adapter),
    Kind("broker", ("broker",), ("tcp", "websocket", "password_file"), _broker),
    Kind("broker users", ("users", "passwd", "password"), (), _users),
    Kind("command signers", ("signers",), (), _signers),
    Kind("command allowlist", ("allowlist",), ("version", "lines"), _allowlist),
)


def kind_of(path: Path) -> Kind | None:
    """By the file name first (``*adapter*.yaml``), else by its top-level keys."""
    name = path.name.lower()
    for kind in KINDS:
        if any(word in name for word in kind.words):
            return kind
    try:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    users = data.get("users")
    if isinstance(users, dict) and users and all(isinstance(u, dict) for u in users.values()):
        first = next(iter(users.values()))
        return _by_name("broker users") if "hash" in first else _by_name("command signers")
    for kind in KINDS:
        if kind.keys and any(key in data for key in kind.keys):
            return kind
    return None


def _by_name(name: str) -> Kind:
    return next(kind for kind in KINDS if kind.name == name)


def files_to_check(paths: list[Path]) -> list[Path]:
    """A folder means its stack files (those present) and any other tag map in it (``plant-*.yaml``,
    except those `uns up` derives at every start); a file is checked as given."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += [path / name for name in STACK_FILES if (path / name).exists()]
            out += [other for other in sorted(path.glob("plant?*.yaml"))
                    if other.name not in STACK_FILES and other.name != DERIVED_TAG_MAP
                    and not other.name.endswith(DERIVED_SUFFIX)]
        else:
            out.append(path)
    return out


def check_files(files: list[Path]) -> tuple[list[str], list[tuple[Path, str]]]:
    """Every problem (``file:line: path: message``, each once) and the files that passed with their kind."""
    from uns.yaml_marks import ConfigError

    problems: list[str] = []
    passed: list[tuple[Path, str]] = []
    for path in files:
        if not path.exists():
            problems.append(f"{path}: does not exist")
            continue
        kind = kind_of(path)
        if kind is None:
            problems.append(f"{path}: cannot tell which config this is; name it plant*.yaml, adapter*.yaml, "
                            "broker*.yaml, users*.yaml, signers*.yaml or allowlist*.yaml")
            continue
        try:
            kind.check(path)
        except ConfigError as exc:
            found = exc.flat
        except ValueError as exc:  # a pydantic error of an override, or a loader without issues
            found = [f"{path}: {line}" if not line.startswith(str(path)) else line
                     for line in str(exc).splitlines() if line.strip()]
        else:
            passed.append((path, kind.name))
            continue
        problems += [issue for issue in found if issue not in problems]
    return problems, passed


def check_paths(paths: list[Path]) -> tuple[list[str], list[tuple[Path, str]], int]:
    """:func:`check_files` on what the paths name, then the links between the files of each stack
    folder (:mod:`unshub.cli.check_links`); a file with a link problem no longer counts as OK.
    Returns the problems, the files that passed with their kind, and how many files were checked."""
    from unshub.cli.check_links import stack_links

    targets = files_to_check(paths)
    problems, passed = check_files(targets)
    for folder in (path for path in paths if path.is_dir()):
        links = stack_links(folder, {path for path, _ in passed})
        problems += [issue for issue in links if issue not in problems]
        passed = [(path, kind) for path, kind in passed if not any(i.startswith(f"{path}:") for i in links)]
    return problems, passed, len(targets)


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check(
        paths: list[Path] = typer.Argument(None, help="config files, or a stack folder (default uns-data/config)"),
    ) -> None:
        """Validate every config of a deployment (edge tag map, adapter, broker, users, signers,
        allowlist): every problem as `file:line: path: message`; exit 2 if there is any."""
        paths = paths or [Path("uns-data/config")]
        if not files_to_check(paths):
            typer.echo(f"uns check: no config files in {', '.join(map(str, paths))} "
                       f"(looked for {', '.join(STACK_FILES)})", err=True)
            raise typer.Exit(2)
        problems, passed, checked = check_paths(paths)
        for path, kind in passed:
            typer.echo(f"ok  {path} ({kind})")
        for problem in problems:
            typer.echo(problem)
        if problems:
            typer.echo(f"uns check: {len(problems)} problem(s); {len(passed)} of {checked} file(s) OK", err=True)
            raise typer.Exit(2)
        typer.echo(f"uns check: {checked} file(s) OK")
