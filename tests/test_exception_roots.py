"""Every exception class of a package derives from that package's one root and is named ``...Error``.

Issue 14, item 8: a caller must be able to tell whose error it caught (``except EdgeError`` is the
edge node's, never the core's), and a name must say it is an error. The classes are found by
reading the source (ast), so a new module or a class nested in another class is covered without
listing it here; each is then imported to check its real bases (a base imported under another
name, or inherited through a chain, is resolved by Python, not guessed).
"""

from __future__ import annotations

import ast
import builtins
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package -> its exception root (module, class name)
ROOTS = {
    "uns": ("uns.errors", "UnsError"),
    "edge_node": ("edge_node.errors", "EdgeError"),
    "broker": ("broker.errors", "UnsBrokerError"),
    "mes_adapter": ("mes_adapter.errors", "MesError"),
    "simulator": ("simulator.errors", "SimulatorError"),
    "unshub": ("unshub.errors", "HubError"),
}

#: exception classes allowed a name without the ``Error`` suffix, and why (they still need the root).
#: Keyed by class name, not module path, so moving a module does not touch this test (names are
#: unique across the packages: see the test below).
NAME_EXCEPTIONS = {
    "UntrustedServerCertificate":
        "its class name is user-visible: the endpoint's last_error and the offline reason read "
        "'UntrustedServerCertificate: endpoint plc1: OPC UA server certificate refused ...' "
        "(pinned by tests/edge_node/test_opcua_security_profile.py)",
}

_BUILTIN_EXCEPTIONS = {name for name, obj in vars(builtins).items()
                       if isinstance(obj, type) and issubclass(obj, BaseException)}


def _modules(package: str) -> list[tuple[str, Path]]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _classes(tree: ast.Module) -> tuple[list[str], list[ast.ClassDef]]:
    """Qualified names of classes reachable by attribute (module or class level), and classes
    defined inside a function (not importable, so only their written bases can be checked)."""
    reachable: list[str] = []
    hidden: list[ast.ClassDef] = []

    def visit(body: list[ast.stmt], prefix: str, in_function: bool) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                if in_function:
                    hidden.append(node)
                else:
                    reachable.append(prefix + node.name)
                visit(node.body, prefix + node.name + ".", in_function)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, "", True)
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child], prefix, in_function)

    visit(tree.body, "", False)
    return reachable, hidden


def _exception_classes(package: str) -> tuple[list[tuple[str, type[BaseException]]], list[str]]:
    found: list[tuple[str, type[BaseException]]] = []
    hidden: list[str] = []
    for module_name, path in _modules(package):
        reachable, nested = _classes(ast.parse(path.read_text(encoding="utf-8")))
        for node in nested:
            bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
            if any(b in _BUILTIN_EXCEPTIONS or b.endswith(("Error", "Exception")) for b in bases):
                hidden.append(f"{module_name}:{node.lineno} {node.name}({', '.join(bases)})")
        if not reachable:
            continue
        module = importlib.import_module(module_name)
        for qualname in reachable:
            obj: object = module
            for part in qualname.split("."):
                obj = getattr(obj, part)
            if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == module_name:
                found.append((f"{module_name}.{qualname}", obj))
    return found, hidden


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_every_exception_derives_from_the_package_root_and_ends_in_error(package: str) -> None:
    root_module, root_name = ROOTS[package]
    root = getattr(importlib.import_module(root_module), root_name)
    found, hidden = _exception_classes(package)
    assert (f"{root_module}.{root_name}", root) in found  # the root itself lives in the package
    assert len(found) > 1, f"no exception classes found in {package}: the scan is broken"
    assert hidden == [], f"define exceptions at module level so callers can import and catch them: {hidden}"
    wrong_root = [name for name, cls in found if not issubclass(cls, root)]
    assert wrong_root == [], f"not derived from {root_name}: {wrong_root}"
    badly_named = [name for name, cls in found
                   if not cls.__name__.endswith("Error") and cls.__name__ not in NAME_EXCEPTIONS]
    assert badly_named == [], f"exception names must end in 'Error': {badly_named}"


def test_name_exceptions_are_still_needed() -> None:
    """A listed exception that was renamed or removed must leave the list (no stale excuses)."""
    names = {cls.__name__ for package in ROOTS for _, cls in _exception_classes(package)[0]}
    assert set(NAME_EXCEPTIONS) <= names
    assert [name for name in NAME_EXCEPTIONS if name.endswith("Error")] == []


def test_exception_names_are_unique_and_there_is_one_config_error() -> None:
    """Two classes of one name (there were two ``ConfigError``) make the import decide what an
    ``except`` catches; every config error is the core's :class:`uns.yaml_marks.ConfigError`."""
    from uns.yaml_marks import ConfigError

    by_name: dict[str, list[str]] = {}
    config_errors = []
    for package in ROOTS:
        for dotted, cls in _exception_classes(package)[0]:
            by_name.setdefault(cls.__name__, []).append(dotted)
            if cls.__name__.endswith("ConfigError"):
                config_errors.append((dotted, cls))
    assert {name: where for name, where in by_name.items() if len(where) > 1} == {}
    assert [dotted for dotted, cls in config_errors if not issubclass(cls, ConfigError)] == []
    assert sorted(cls.__name__ for _, cls in config_errors) == ["BrokerConfigError", "ConfigError"]


def test_sparkplug_keeps_the_whose_fault_split() -> None:
    """A peer's protocol error and our own are disjoint branches under SparkplugError (h11's split):
    a service counts the first and goes on, the second is a bug."""
    from uns.sparkplug import errors

    remote = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.RemoteProtocolError)]
    local = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.LocalProtocolError)]
    assert remote and local
    assert not set(remote) & set(local)
    assert all(issubclass(c, errors.SparkplugError) for c in remote + local)


#: the builtin base each class had before the roots were added, by class name (every other class:
#: plain Exception). Callers catch these (``except ValueError`` around config loading in ``uns up``, ``ConnectionError``
#: in the OPC UA supervisors, ``TimeoutError`` in ``uns cmd send``), so a root is added beside them
#: and never replaces one, and no class gains a builtin base it did not have.
BUILTIN_BASE = {
    "CanonicalizationError": ValueError,
    "AuditKeyError": ValueError,
    "KeyFileError": ValueError,
    "CommandWireError": ValueError,
    "PortInUseError": RuntimeError,
    "ConfigError": ValueError,
    "JsonTooDeepError": ValueError,
    "BrokerURLError": ValueError,
    "InvalidTopicError": ValueError,
    "InvalidIdError": ValueError,
    "EncodeError": ValueError,
    "ReferenceIssuesError": ValueError,
    "SessionDeadError": ConnectionError,
    "UntrustedServerCertificate": ConnectionError,
    "WriterDisconnectedError": ConnectionError,
    "StateStoreUnavailableError": ConnectionError,
    "BirthEncodeError": ValueError,
    "StoreError": RuntimeError,
    "CoercionError": ValueError,
    "TemplateMappingError": ValueError,
    "TemplateMemberError": ValueError,
    "MesInputError": ValueError,
    "SchemaVersionError": RuntimeError,
    "HostNotOnlineError": RuntimeError,
    "LinkDownError": RuntimeError,
    "PolicyError": ValueError,
    "ClientIdPatternError": ValueError,
    "BrokerConfigError": ValueError,
    "MosquittoAclError": ValueError,
    "PasswordFileError": ValueError,
    "InvalidFilterError": ValueError,
    "SimulatorError": ValueError,
    "ResultTimeoutError": TimeoutError,
    "ServiceFailedError": RuntimeError,
    "MalformedPacketError": ValueError,  # a peer's bad bytes, like the other parse errors
    "InstanceConflictError": ValueError,  # the operator's config: `uns adapter run` reports it like one
}


def _builtins_of(cls: type) -> set[type]:
    return {c for c in cls.__mro__ if c.__module__ == "builtins"}


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_the_builtin_bases_callers_catch_are_unchanged(package: str) -> None:
    """A class inherits its builtin base from a pinned ancestor (a subclass of MesInputError is a
    ValueError through it) or has none but Exception."""
    changed = []
    for dotted, cls in _exception_classes(package)[0]:
        expected = Exception
        for ancestor in cls.__mro__:
            if ancestor.__module__ != "builtins" and ancestor.__name__ in BUILTIN_BASE:
                expected = BUILTIN_BASE[ancestor.__name__]
                break
        if _builtins_of(cls) != _builtins_of(expected):
            changed.append(f"{dotted}: {sorted(c.__name__ for c in _builtins_of(cls))}, "
                           f"expected those of {expected.__name__}")
    assert changed == []
