"""The tamper-evident audit trail: canonical JSON, hash-chained records, signed checkpoints.

Import from the modules (``uns.audit.chain``, ``uns.audit.verify``, ...); this package imports
nothing on purpose, so ``uns.commands`` can use ``uns.audit.canonical`` without a cycle.
"""
