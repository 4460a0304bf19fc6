"""Adapter instances sharing one PostgreSQL MES state must own disjoint Sparkplug groups: checked.

Why: with ``mes.state_dsn`` each instance writes the counters, records and context of the lines in
its ``host.groups``. Two live instances owning the same group would both count that line's production
(every confirmation doubled) and both contextualize it; nothing on the wire tells them apart, so the
rule is enforced where they meet, in the shared database.

How: each instance registers in ``mes_instance`` (its host id, its groups, a heartbeat) when it is
built, and renews the heartbeat every third of ``mes.instance_lease_s``. Registering is refused, with
both instances and the groups they share named, while another host id with a live heartbeat (younger
than the lease) owns an overlapping set (no ``host.groups`` means every group, which overlaps with
anything). The check and the insert run under one advisory lock, so two instances starting together
cannot both pass. Leases use the database's clock (``now()``), so the instances' clocks do not matter.

* The same host id takes its row over at once: that is the instance restarted (after a crash its
  heartbeat is still young; waiting out the lease would make the supervisor give up on it).
* An instance that dies keeps its groups for at most the lease; another instance configured for them
  may start after that (taking over a group is a configuration change, docs/scaling.md).
* A clean stop deletes the row. A heartbeat that finds an overlapping live instance (e.g. it was cut
  from the database for longer than the lease and another took its groups) reports it as
  :attr:`InstanceRegistry.conflict`, which makes ``/readyz`` fail and says why; the data keeps
  flowing, since stopping would lose what the edge nodes send.

Each row also says whether that instance holds rejects for QA disposition
(``mes.disposition.required``): another instance answering for its lines can then call every reject
scrap when it does not, and says the split is not known here when it does (the split stays with the
owner), instead of calling QA's rework and accepted parts scrap.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from mes_adapter.errors import MesError, StateStoreUnavailableError
from mes_adapter.pg_schema import migrate

log = logging.getLogger("uns.adapter.instances")

_MIGRATIONS = [
    "CREATE TABLE mes_instance (host_id text PRIMARY KEY, groups text[], process text NOT NULL, "
    "started_at timestamptz NOT NULL DEFAULT now(), heartbeat_at timestamptz NOT NULL DEFAULT now())",
    # 2: whether the instance holds rejects for QA (NULL: registered by an older uns-hub, not known)
    "ALTER TABLE mes_instance ADD COLUMN disposition_required boolean",
]
_LOCK = zlib.crc32(b"uns-hub mes_instance")
#: how long an owner's disposition answer is reused (its configuration changes only with a restart)
OWNER_CACHE_S = 5.0


class InstanceConflictError(MesError, ValueError):
    """Another live instance owns some of this instance's groups (the operator's configuration)."""


@dataclass(frozen=True, slots=True)
class Registered:
    """Another instance's row, as the check reads it."""

    host_id: str
    groups: tuple[str, ...] | None  # None: every group
    process: str
    age_s: float  # since its last heartbeat


def shared_groups(mine: tuple[str, ...] | None, theirs: tuple[str, ...] | None) -> str | None:
    """What two instances' group sets share, in words, or None when they are disjoint (pure)."""
    if mine is None and theirs is None:
        return "every group (neither sets host.groups)"
    if mine is None:
        return f"every group of theirs ({', '.join(theirs or ())}): this instance sets no host.groups"
    if theirs is None:
        return "every group: that instance sets no host.groups"
    common = sorted(set(mine) & set(theirs))
    return ", ".join(common) if common else None


def conflicts(host_id: str, groups: tuple[str, ...] | None, live: Iterable[Registered]) -> list[str]:
    """Each live other instance that overlaps, said in one sentence (pure)."""
    out = []
    for other in live:
        if other.host_id == host_id:
            continue
        common = shared_groups(groups, other.groups)
        if common is not None:
            out.append(f"adapter instance {other.host_id!r} ({other.process}, heartbeat {other.age_s:.0f} s ago) "
                       f"owns {common}")
    return out


class InstanceRegistry:
    """This instance's row in ``mes_instance`` (see module doc)."""

    def __init__(self, dsn: str, host_id: str, groups: tuple[str, ...] | None, lease_s: float, *,
                 disposition_required: bool = False) -> None:
        self._dsn = dsn
        self.host_id = host_id
        self.groups = groups
        self.lease_s = lease_s
        self.disposition_required = disposition_required
        #: group -> (monotonic time read, the owner's answer): a batch list asks once per row
        self._owners: dict[str, tuple[float, bool | None]] = {}
        self.process = f"pid {os.getpid()} on {socket.gethostname()}"
        #: why this instance is no longer alone with its groups (None: it is); for readiness
        self.conflict: str | None = None

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self._dsn, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise StateStoreUnavailableError(f"PostgreSQL: {exc}") from exc

    def register(self) -> None:
        """Take this instance's groups, or :class:`InstanceConflictError` naming who has them."""
        with self._connect() as conn:
            migrate(conn, "instances", _MIGRATIONS)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                found = conflicts(self.host_id, self.groups, self._live(conn))
                if found:
                    raise InstanceConflictError(
                        f"adapter instance {self.host_id!r} (host.groups: {', '.join(self.groups or ()) or 'all'}) "
                        f"cannot share the MES state database with another instance owning the same groups: "
                        + "; ".join(found) + ". Each Sparkplug group must be owned by one instance (otherwise "
                        "its production is counted twice): give each instance its own host.groups, or stop the "
                        f"other one (a stopped instance's groups are free after mes.instance_lease_s = "
                        f"{self.lease_s:.0f} s)")
                conn.execute(
                    "INSERT INTO mes_instance (host_id, groups, process, disposition_required) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (host_id) DO UPDATE SET groups = EXCLUDED.groups, process = EXCLUDED.process, "
                    "disposition_required = EXCLUDED.disposition_required, started_at = now(), heartbeat_at = now()",
                    self._row())
        log.info("registered as adapter instance %r for %s in the shared MES state", self.host_id,
                 ", ".join(self.groups) if self.groups else "every group")

    def heartbeat(self) -> None:
        """Renew the lease, and look again for an instance that took some of these groups."""
        with self._connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            renewed = conn.execute("UPDATE mes_instance SET heartbeat_at = now() WHERE host_id = %s",
                                   (self.host_id,)).rowcount
            found = conflicts(self.host_id, self.groups, self._live(conn))
            if not renewed and not found:  # deleted meanwhile (by hand?): register again
                conn.execute("INSERT INTO mes_instance (host_id, groups, process, disposition_required) "
                             "VALUES (%s, %s, %s, %s)", self._row())
        conflict = "; ".join(found) if found else None
        if conflict != self.conflict:
            if conflict:
                log.error("another live adapter instance owns some of this instance's groups: %s", conflict)
            else:
                log.info("this adapter instance is again the only one owning its groups")
        self.conflict = conflict

    def release(self) -> None:
        """A clean stop: the groups are free at once."""
        try:
            with self._connect() as conn:
                conn.execute("DELETE FROM mes_instance WHERE host_id = %s AND process = %s",
                             (self.host_id, self.process))
        except (StateStoreUnavailableError, psycopg.Error) as exc:
            log.warning("could not release adapter instance %r (its lease ends by itself): %s", self.host_id, exc)

    def owner_disposition_required(self, group: str) -> bool | None:
        """Whether the live instance owning ``group`` holds rejects for QA; None when no live instance
        owns it or its uns-hub is older than the column (then the split cannot be told from here).
        Read again after :data:`OWNER_CACHE_S`, so a batch list of 50 rows costs one query."""
        cached = self._owners.get(group)
        if cached is not None and time.monotonic() - cached[0] < OWNER_CACHE_S:
            return cached[1]
        with self._connect() as conn:
            row = conn.execute(
                "SELECT disposition_required FROM mes_instance WHERE heartbeat_at > now() - make_interval(secs => %s) "
                "AND host_id <> %s AND (groups IS NULL OR %s = ANY(groups)) ORDER BY heartbeat_at DESC LIMIT 1",
                (self.lease_s, self.host_id, group)).fetchone()
        answer = None if row is None else row[0]
        self._owners[group] = (time.monotonic(), answer)
        return answer

    def _row(self) -> tuple[object, ...]:
        return (self.host_id, list(self.groups) if self.groups is not None else None, self.process,
                self.disposition_required)

    def _live(self, conn: psycopg.Connection) -> list[Registered]:
        rows = conn.execute(
            "SELECT host_id, groups, process, EXTRACT(EPOCH FROM now() - heartbeat_at) FROM mes_instance "
            "WHERE heartbeat_at > now() - make_interval(secs => %s)", (self.lease_s,)).fetchall()
        return [Registered(h, tuple(g) if g is not None else None, p, float(age)) for h, g, p, age in rows]
