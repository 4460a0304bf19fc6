"""Material genealogy (issue 19, item 4): lots consumed and produced by batches, splits and merges,
and the trace queries a recall needs (finished lot -> raw lots, raw lot -> batches and finished lots).

Lots are asserted over REST or on the UNS (``<line>/_context/material``); an assertion repeated
with identical content is accepted as a duplicate (a retained or QoS 1 redelivery must not be an
error), one with different content for the same lot and batch is refused: a lot's history is never
silently rewritten.
"""

from .models import BatchRef, Consumption, LotLink, LotQuantity, ProducedLot, Trace
from .service import GenealogyError, GenealogyService
from .store import GenealogyStore
from .trace import Graph, trace_backward, trace_forward

__all__ = ["BatchRef", "Consumption", "GenealogyError", "GenealogyService", "GenealogyStore", "Graph", "LotLink",
           "LotQuantity", "ProducedLot", "Trace", "trace_backward", "trace_forward"]
