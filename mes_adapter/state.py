"""Where the adapter keeps the MES state that several instances can share: SQLite files or PostgreSQL.

One choice, one config line: without ``mes.state_dsn`` the context history, the contextualized records
and the production counters are SQLite files under ``mes.data_dir`` (one machine); with it they are
tables in that PostgreSQL database, shared by every adapter instance that names it (docs/scaling.md).
The services see only the ports (:class:`ContextStorePort`, :class:`RecordStorePort`,
:class:`ProductionStorePort`); the PostgreSQL modules are imported only when chosen (they need psycopg).
"""

from __future__ import annotations

from dataclasses import dataclass

from mes_adapter.config.mes import MesConfig
from mes_adapter.context.store import ContextStore, ContextStorePort
from mes_adapter.production.quantities import ProductionStore, ProductionStorePort
from mes_adapter.production.records import RecordStore, RecordStorePort


@dataclass(frozen=True, slots=True)
class StateStores:
    context: ContextStorePort
    records: RecordStorePort
    production: ProductionStorePort


def open_state_stores(mes: MesConfig) -> StateStores:
    """The configured stores (each migrated to its current schema version on open)."""
    if mes.state_dsn is None:
        return StateStores(ContextStore(mes.context_db), RecordStore(mes.records_db),
                           ProductionStore(mes.production_db))
    from mes_adapter.context.pg_store import PostgresContextStore
    from mes_adapter.production.pg_quantities import PostgresProductionStore
    from mes_adapter.production.pg_records import PostgresRecordStore

    return StateStores(PostgresContextStore(mes.state_dsn), PostgresRecordStore(mes.state_dsn),
                       PostgresProductionStore(mes.state_dsn))
