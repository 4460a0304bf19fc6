"""Quality episodes: a tag's run of not-GOOD quality, from its first non-GOOD sample to the next GOOD.

Pure and without I/O (like the host tracker): the shell (:mod:`mes_adapter.episodes.service`) feeds
one :class:`QualitySample` per live metric change the host applied, and this class answers with
what to do: :class:`EpisodeOpened` or :class:`EpisodeClosed`. The rules, all of them:

* GOOD → BAD / UNCERTAIN / STALE opens an episode, stamped with the sample's *source* time (the
  time the state began: the bad sample's source timestamp, or the death time for STALE).
* While an episode is open, further non-GOOD samples (BAD turning STALE when the device dies, a
  second Bad status) extend it: one episode per run, never one per sample. The reason of the
  first sample stays, since that is what broke first.
* The next GOOD sample closes it. Its end is the GOOD sample's source time; when a recovered
  source restates a value whose source timestamp predates the episode (the value did not change
  while the link was down), the end is when the host learned it (received time), never before the
  start.
* Historical values (store-and-forward replay) never open or close: the live state decides.
  Neither does a GOOD null (the edge's "no value yet" placeholder in a birth before its first read,
  or a command-only metric such as a method call, which never has a value), nor the STALE null such
  a metric becomes when its node dies: a tag without a value has no quality to lose.
* Episodes still open when the adapter stops are stored open; the shell seeds a new detector with
  them (:meth:`QualityEpisodeDetector.restore`) so the next GOOD closes the very same episode and
  a birth that restates the still-bad tag does not open a second one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from uns.conventions import Quality

#: reasons the edge names in the ``QualityReason`` property (see docs/data-quality.md)
EDGE_REASONS = frozenset({"out_of_range", "max_age", "frozen", "future_timestamp", "old_timestamp",
                          "bad_status", "comm_lost"})


@dataclass(frozen=True, slots=True)
class TagKey:
    """A metric as the host knows it (Sparkplug ids); the shell maps it to the ISA-95 line/cell."""

    group_id: str
    edge_node_id: str
    device_id: str | None
    name: str


@dataclass(frozen=True, slots=True)
class QualitySample:
    """One live value of a tag as the host applied it, reduced to what episodes need."""

    key: TagKey
    quality: Quality
    #: when this state began (source time; the death time for STALE)
    timestamp_ms: int
    received_ms: int
    #: why it is not GOOD (``bad_status``, ``stale``, or the edge's ``QualityReason``); None when GOOD
    reason: str | None = None
    status_code: int | None = None
    raw_value: Any = None
    #: a GOOD null: the edge has no value yet (a birth before its first read), which says nothing
    #: about the tag's quality and so neither opens nor closes an episode
    no_value: bool = False


@dataclass(frozen=True, slots=True)
class OpenEpisode:
    """An episode in progress: what the detector remembers per tag."""

    episode_id: int | None
    key: TagKey
    start_ms: int


@dataclass(frozen=True, slots=True)
class EpisodeOpened:
    sample: QualitySample

    @property
    def key(self) -> TagKey:
        return self.sample.key

    @property
    def start_ms(self) -> int:
        return self.sample.timestamp_ms


@dataclass(frozen=True, slots=True)
class EpisodeClosed:
    episode: OpenEpisode
    end_ms: int
    #: the GOOD sample that ended it
    sample: QualitySample

    @property
    def key(self) -> TagKey:
        return self.episode.key


Action = EpisodeOpened | EpisodeClosed


class QualityEpisodeDetector:
    """Open episodes per tag; ``observe(sample)`` → actions (see the module rules)."""

    def __init__(self) -> None:
        self._open: dict[TagKey, OpenEpisode] = {}

    def restore(self, episodes: Iterable[OpenEpisode]) -> None:
        """Seed with the episodes a previous run left open (from the store)."""
        for episode in episodes:
            self._open[episode.key] = episode

    def bind(self, key: TagKey, episode_id: int, start_ms: int) -> None:
        """Remember the store's id of the episode of ``key`` that started at ``start_ms`` (the shell
        calls it after the commit); nothing if that episode has closed meanwhile (another may be open)."""
        current = self._open.get(key)
        if current is not None and current.episode_id is None and current.start_ms == start_ms:
            self._open[key] = OpenEpisode(episode_id, key, current.start_ms)

    def is_open(self, key: TagKey) -> bool:
        return key in self._open

    @property
    def open_count(self) -> int:
        return len(self._open)

    def open_episodes(self) -> list[OpenEpisode]:
        return list(self._open.values())

    def observe(self, sample: QualitySample, *, historical: bool = False) -> list[Action]:
        if historical or sample.no_value:
            return []
        current = self._open.get(sample.key)
        if sample.quality is Quality.GOOD:
            if current is None:
                return []
            del self._open[sample.key]
            end = sample.timestamp_ms
            if end < current.start_ms:
                end = max(current.start_ms, sample.received_ms)
            return [EpisodeClosed(current, end, sample)]
        if current is not None:
            return []
        self._open[sample.key] = OpenEpisode(None, sample.key, sample.timestamp_ms)
        return [EpisodeOpened(sample)]


def sample_reason(quality: Quality, status_code: int | None, edge_reason: object) -> str | None:
    """The reason of a not-GOOD sample: the tag's own (the edge's ``QualityReason``, or ``comm_lost``
    the host sets on a death) when it has one, else derived: ``stale`` for STALE, ``bad_status`` for a
    Bad/Uncertain OPC UA status (another vendor's edge node sends no reason).
    """
    if quality is Quality.GOOD:
        return None
    if isinstance(edge_reason, str) and edge_reason:
        return edge_reason
    if quality is Quality.STALE:
        return "stale"
    return "bad_status"


def status_name(status_code: int | None) -> str | None:
    """``BadSensorFailure`` for 0x808C0000 when asyncua knows the code, else the hex code."""
    if status_code is None:
        return None
    try:
        from asyncua.ua.status_codes import code_to_name_doc

        known = code_to_name_doc.get(status_code)
        if known is not None:
            return str(known[0])
    except Exception:  # noqa: BLE001 - a name is a courtesy; the hex code is the truth
        pass
    return f"0x{status_code:08X}"
