"""An OPC UA object instance as one live template tag: its members' samples combined. Pure: no I/O.

An object instance (the simulator's ``CellFaceplateType`` per cell) has no Value attribute of its
own: its value is its member variables, each with its own DataValue. The edge monitors every member
variable and, after each change, hands the validator one :class:`~edge_node.validation.RawSample` of
the whole instance built here; :meth:`edge_node.templates.TemplateCatalog.delta` then sends only the
members that changed, exactly like a structured variable.

Quality, decided per member rather than per instance (``docs/templates.md``): unlike a structure,
whose members are one DataValue with one StatusCode, each member of an object has its own status, so
one failed sensor must not hide the others.

* a member whose status is Bad is a **null member**; the instance stays published with its other
  members, and its quality is Uncertain (``UncertainDataSubNormal``: "derived from several values
  with fewer Good ones than required"); a member that is Uncertain makes the instance Uncertain with
  that member's status;
* only when *every* member is Bad is the instance Bad (a null instance, like a Bad structure), with
  the first member's Bad status.

The instance's timestamps are the newest of its members' (the moment of its latest change).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncua import ua

from .validation import RawSample

#: the instance's status when some (not all) of its members are Bad
UNCERTAIN_DATA_SUB_NORMAL = 0x40A40000
_BAD = 0x80000000
_UNCERTAIN = 0x40000000
#: a member not read yet (only between a connect and its first read)
_NOT_READ = RawSample(None, 0x80320000)  # BadWaitingForInitialData


def _severity_bits(status: int) -> int:
    return status & 0xC0000000


@dataclass
class ObjectInstance:
    """One object instance tag: its members' node ids (by browse name) and their last samples."""

    members: dict[str, ua.NodeId]
    samples: dict[str, RawSample] = field(default_factory=dict)
    #: False from binding (a connect, a type change) until the read of every member: a change of one
    #: member in that window is kept but not published, since the other members would be null
    #: ("not read yet") in it; the read that follows announces the whole instance
    read: bool = False

    def update(self, member: str, sample: RawSample) -> None:
        self.samples[member] = sample

    def sample(self) -> RawSample:
        """The whole instance: {member: value} with Bad members null, and the combined status."""
        current = {name: self.samples.get(name, _NOT_READ) for name in self.members}
        bad = [s.status_code for s in current.values() if _severity_bits(s.status_code) == _BAD]
        uncertain = [s.status_code for s in current.values() if _severity_bits(s.status_code) == _UNCERTAIN]
        sources = [s.source_ts_ms for s in current.values() if s.source_ts_ms]
        servers = [s.server_ts_ms for s in current.values() if s.server_ts_ms]
        source, server = (max(sources) if sources else None), (max(servers) if servers else None)
        if current and len(bad) == len(current):
            return RawSample(None, bad[0], source, server)
        status = UNCERTAIN_DATA_SUB_NORMAL if bad else (uncertain[0] if uncertain else 0)
        values = {name: None if _severity_bits(s.status_code) == _BAD else s.value for name, s in current.items()}
        return RawSample(values, status, source, server)


__all__ = ["UNCERTAIN_DATA_SUB_NORMAL", "ObjectInstance"]
