"""Batch context per line: assertions, their history, and which one was active at a source time."""

from mes_adapter.context.models import (
    AssertionOutcome,
    BatchWindow,
    ContextAssertion,
    ContextSegment,
    context_topic,
)
from mes_adapter.context.service import ContextService
from mes_adapter.context.store import ContextStore
from mes_adapter.context.timeline import Timeline

__all__ = ["AssertionOutcome", "BatchWindow", "ContextAssertion", "ContextSegment", "ContextService",
           "ContextStore", "Timeline", "context_topic"]
