"""Whether the store-and-forward file works, as *episodes* of failure (disk full, I/O errors).

Why episodes: a full disk fails every write, every publish interval, for as long as it lasts.
Logging each failure (with a traceback) floods the log with the same line and hides the one fact
an operator needs: when storing stopped, when it came back, and what it cost. So a failure
starts an episode (one ERROR line with the cause), later failures are only counted, and the
first write that works again ends it (one WARNING line with the duration and the counts).

Nothing here touches the store or the network: the edge client reports each outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["StoreHealth"]

log = logging.getLogger("edge_node.store")


@dataclass
class StoreHealth:
    """Failure episodes of the store; counters are cumulative, ``episode_*`` the current one."""

    clock: Callable[[], float] = time.monotonic
    #: True from the first failed write until a write works again
    failing: bool = False
    #: the error that started (or last continued) the current episode
    cause: str = ""
    episodes: int = 0
    #: values that could not be stored, ever (the ``uns_edge_store_lost`` counter)
    lost: int = 0
    errors: int = 0
    episode_lost: int = 0
    episode_errors: int = 0
    _since: float = field(default=0.0, repr=False)

    def failed(self, what: str, error: BaseException, *, lost: int = 0) -> None:
        """A store operation failed; ``lost`` values could not be kept because of it."""
        self.errors += 1
        self.lost += lost
        self.cause = f"{what}: {error}"
        if not self.failing:
            self.failing = True
            self.episodes += 1
            self.episode_lost = self.episode_errors = 0
            self._since = self.clock()
            log.error("store-and-forward failing (%s); values that cannot be stored are counted as lost "
                      "(uns_edge_store_lost) and the MQTT session carries on; logged again when it works",
                      self.cause)
        self.episode_errors += 1
        self.episode_lost += lost

    def worked(self) -> None:
        """A store write committed: ends the episode, if one is running."""
        if not self.failing:
            return
        self.failing = False
        log.warning("store-and-forward works again after %.1f s: %d values could not be stored, %d failed "
                    "operations (last: %s)", self.clock() - self._since, self.episode_lost, self.episode_errors,
                    self.cause)
