"""Schema versions and the migration path, shared by both backends (pure: steps do the I/O).

Every store records the schema version that wrote it. On open: the same version is used as is; an older
one is migrated one step at a time (each step in its own transaction, the version bumped with it); a
version with no step, or a newer one, is refused with what to do, before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from .errors import SchemaVersionError

C = TypeVar("C")
Step = Callable[[C], None]


def plan(found: int | None, target: int, steps: Mapping[int, object], where: str) -> list[int]:
    """The versions to migrate from, in order (empty when ``found == target``), or a clear refusal."""
    if found is None:
        raise SchemaVersionError(
            f"{where} has no historian schema version: it was not written by uns-hub's historian "
            "(or an unfinished first start left it half-made); move it away and start again")
    if found > target:
        raise SchemaVersionError(
            f"{where} has historian schema version {found}, newer than this uns-hub reads ({target}): "
            "upgrade uns-hub or point it at another store; nothing was changed")
    missing = [v for v in range(found, target) if v not in steps]
    if missing:
        raise SchemaVersionError(
            f"{where} has historian schema version {found} and there is no migration from version "
            f"{missing[0]} to {missing[0] + 1} (this uns-hub writes version {target}); nothing was changed")
    return list(range(found, target))
