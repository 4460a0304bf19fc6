"""What ``uns edge run`` needs from the file system, checked before anything starts.

``uns edge check`` runs the very same checks (it is ``run`` minus connecting), so a config it
calls OK is not refused by ``run`` later: the allowlist and the signers' registry exist and load
(keys parse), the data directory is a writable directory, the audit files can be written, and the
environment variable that holds an OPC UA password is set. Each problem names ``plant.yaml:line``
and the field that points at the file or variable (:mod:`uns.config_checks`).
"""

from __future__ import annotations

import os
from pathlib import Path

from uns.commands.allowlist import Allowlist
from uns.commands.signing import UserRegistry
from uns.config_checks import ConfigChecks

from .config import EdgeConfig


def check_edge_files(config: EdgeConfig, source: Path) -> None:
    """Raise :class:`~uns.yaml_marks.ConfigError` listing every file-system problem of ``config``
    (loaded from ``source``, paths already resolved against its directory)."""
    checks = ConfigChecks.of_file(source)
    checks.writable_dir(("data_dir",), config.data_dir)
    for i, endpoint in enumerate(config.opcua):
        if endpoint.trust_dir is not None and endpoint.trust_dir.exists() and not endpoint.trust_dir.is_dir():
            checks.fail(("opcua", i, "trust_dir"), f"{endpoint.trust_dir} is not a directory")
        # read again at every connect (a rotated password is picked up), but unset now it would
        # fail every connect: a session that never opens (or a writer that never writes), not an
        # error at start
        if endpoint.username is not None and endpoint.password_env is not None \
                and endpoint.password_env not in os.environ:
            checks.fail(("opcua", i, "password_env"), f"environment variable {endpoint.password_env} is not set")
        writer = endpoint.write_credentials
        if writer is not None and writer.password_env is not None and writer.password_env not in os.environ:
            checks.fail(("opcua", i, "write_credentials", "password_env"),
                        f"environment variable {writer.password_env} is not set")
    commands = config.commands
    if commands is not None:
        if commands.allowlist is not None:
            checks.loads(("commands", "allowlist"), commands.allowlist, Allowlist.load)
        if commands.users is not None:
            checks.loads(("commands", "users"), commands.users, UserRegistry.load)
        if commands.audit_db is not None:
            checks.file_in_writable_dir(("commands", "audit_db"), commands.audit_db)
        if commands.audit_witness is not None:
            checks.file_in_writable_dir(("commands", "audit_witness"), commands.audit_witness)
    checks.raise_if_any()


__all__ = ["check_edge_files"]
