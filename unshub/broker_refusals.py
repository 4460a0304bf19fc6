"""Why the broker refused a client, read from the embedded broker's log, for `uns up` to say.

Why: an edge node the broker refuses (unknown user, wrong password, a Will topic or Sparkplug ids
its user may not publish) reconnects forever and never births; `uns up` used to wait 90 s and say
"edge was not ready; see edge.log", while the reason was one line in ``broker.log``. The broker
logs every refusal as ``refused client '<client id>' ...: <reason>`` (plain text or JSON lines,
:mod:`unshub.logging_setup`); :class:`RefusalWatch` follows the log from the edge's start and
returns the first refusal of the edge's client id, so `uns up` stops at once and says why.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_REFUSED = re.compile(r"refused (?:anonymous )?client '(?P<client>[^']*)'(?P<rest>.*)$")


def refusal_in(line: str, client_id: str) -> str | None:
    """The refusal of ``client_id`` a broker log line reports (``(user 'x'): its Will ...``), else None."""
    text = line.strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("msg", ""))
        except ValueError:
            return None
    match = _REFUSED.search(text)
    if match is None or match.group("client") != client_id:
        return None
    return match.group(0)


class RefusalWatch:
    """Follows ``log_path`` from where it ends now; :meth:`poll` returns the first refusal of the client."""

    def __init__(self, log_path: Path, client_id: str) -> None:
        self.log_path = log_path
        self.client_id = client_id
        self._offset = log_path.stat().st_size if log_path.exists() else 0
        self._partial = b""

    def poll(self) -> str | None:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._offset)
                chunk = log.read()
        except OSError:
            return None
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next poll
        for raw in lines:
            found = refusal_in(raw.decode("utf-8", "replace"), self.client_id)
            if found is not None:
                return found
        return None


def refused_message(refusal: str, *, user: str | None, ids: str, config: Path, broker_log: Path,
                    data_dir: Path) -> str:
    """What `uns up` prints: who was refused, the broker's reason, where to look and what to change."""
    anonymous = "" if user else " (its broker URL names no user)"
    return (f"edge was refused by the broker: {refusal}{anonymous}; see {broker_log}. "
            f"Fix: put a broker user with role edge for {ids} in sparkplug.brokers of {config}, or leave "
            f"user:password out of that URL and `uns up -c` creates one (`uns check` names the line to change)")
