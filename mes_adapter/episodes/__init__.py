"""Quality episodes (a tag's run of BAD / UNCERTAIN / STALE) as events with a start and an end.

:mod:`.detector` is the pure state machine, :mod:`.store` the versioned SQLite journal,
:mod:`.service` the shell that feeds the detector from the host and stores and publishes.
"""

from .detector import (
    EpisodeClosed,
    EpisodeOpened,
    OpenEpisode,
    QualityEpisodeDetector,
    QualitySample,
    TagKey,
)
from .service import EpisodeService, alarm_topic
from .store import SCHEMA_VERSION, EpisodeStore, QualityEpisode

__all__ = ["SCHEMA_VERSION", "EpisodeClosed", "EpisodeOpened", "EpisodeService", "EpisodeStore", "OpenEpisode",
           "QualityEpisode", "QualityEpisodeDetector", "QualitySample", "TagKey", "alarm_topic"]
