"""Condition alarms (OPC UA Alarms & Conditions, relayed by the edge) in the MES adapter.

:mod:`.fold` is the pure folding of the edge's ``Alarms/<Name>/<field>`` metrics into one state per
condition, :mod:`.store` the versioned SQLite journal, :mod:`.service` the shell that journals each
change with its batch and phase and publishes it retained on ``_alarms``, :mod:`.rules` and
:mod:`.decisions` the exceptions and batch holds alarm rules open, and the signed release. See docs/alarms.md.
"""

from .decisions import AlarmException, BatchHold, DecisionDesk, DecisionRefusedError, Shelf, release_hash
from .fold import FIELDS, ConditionFolder, ConditionKey, ConditionState, condition_field
from .service import CONDITIONS, AlarmService, condition_payload, condition_topic
from .store import SCHEMA_VERSION, AlarmEvent, AlarmJournal

__all__ = ["CONDITIONS", "FIELDS", "SCHEMA_VERSION", "AlarmEvent", "AlarmException", "BatchHold", "DecisionDesk",
           "DecisionRefusedError", "Shelf", "release_hash", "AlarmJournal", "AlarmService",
           "ConditionFolder", "ConditionKey", "ConditionState", "condition_field", "condition_payload",
           "condition_topic"]
