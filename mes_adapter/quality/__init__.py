"""QA disposition of rejects: pending until a QA user classifies them (scrap / rework / accepted)
with an Ed25519 signature; the final confirmation carries the split. See docs/mes-quality.md."""

from mes_adapter.quality.models import Disposition, DispositionRequest, DispositionSplit, disposition_hash
from mes_adapter.quality.service import DispositionRefusedError, DispositionService
from mes_adapter.quality.store import DispositionStore

__all__ = ["Disposition", "DispositionRefusedError", "DispositionRequest", "DispositionService",
           "DispositionSplit", "DispositionStore", "disposition_hash"]
