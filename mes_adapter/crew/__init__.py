"""The crew on a line and the labour time of a batch (issue 19 item 5). See docs/mes-crew.md.

Who worked on a line and from when to when is asserted over REST or on the UNS
(``<line>/_context/crew``); a confirmation's labour time is the sum over the crew of each person's
overlap with the batch's run window (:func:`~mes_adapter.crew.models.labour_ms`).
"""

from .models import CrewPresence, labour_ms
from .service import CrewError, CrewService, Outcome
from .store import CrewStore

__all__ = ["CrewError", "CrewPresence", "CrewService", "CrewStore", "Outcome", "labour_ms"]
