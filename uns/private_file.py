"""Writing a file of secrets (password hashes): atomically and readable by its owner only, and
backing up the previous file before it is rewritten.

Shared by the broker's password file and the adapter's users file, whose services read them
while an operator edits them: the text goes to a temporary file beside the target (same file
system), gets mode 0600, and replaces the target in one ``os.replace``, so a reader sees the old
file or the new one, never half of one, and never a moment of wider permissions.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600 (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def backup_name(path: Path, marker: str) -> Path:
    """A free name beside ``path`` for its backup: ``<name><marker><UTC time>``, ``-2``, ``-3``…
    appended when a backup of the same second exists (an earlier backup is never overwritten)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}{marker}{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = path.with_name(f"{path.name}{marker}{stamp}-{suffix}")
    return target


def backup_file(path: Path, marker: str = ".bak-") -> Path | None:
    """Copy ``path`` (if it exists) to a free backup name beside it (:func:`backup_name`), mode 0600
    (it holds the same secrets), before the caller rewrites it; returns the copy, or None when there
    was nothing to keep. Every rewrite of an operator's file goes through here, so none is silent."""
    if not path.exists():
        return None
    backup = backup_name(path, marker)
    shutil.copyfile(path, backup)
    os.chmod(backup, 0o600)
    return backup
