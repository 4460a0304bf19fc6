"""The MES state stores on both backends: SQLite files and a real PostgreSQL (``mes.state_dsn``).

One module, run on each backend (as tests/historian does): the context history, the contextualized
records (idempotent inserts, quarantine, range queries) and the production counters keep the same rules
on both, and a new store object on the same database (a restarted instance) sees everything. Then what
the shared store is for: an instance reads the batches, records and counts of a line another instance
owns, from the store at query time, and never holds that line's timeline in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mes_adapter.config.mes import MesConfig, RetryPolicy
from mes_adapter.context import ContextAssertion, ContextService
from mes_adapter.errors import StateStoreUnavailableError
from mes_adapter.instances import InstanceConflictError, InstanceRegistry, shared_groups
from mes_adapter.oee.compute import Interval
from mes_adapter.production.counters import CounterSample, DeltaReason
from mes_adapter.production.ingest import Ingest, Observation
from mes_adapter.production.quantities import ProductionCounters
from mes_adapter.production.records import ContextualRecords, Record, RecordKind
from mes_adapter.state import StateStores, open_state_stores
from tests.mes.helpers import LINE, line_config
from tests.support.net import free_port
from tests.support.postgres import PostgresServer, fresh_database, on_backend
from uns.conventions import Quality
from uns.sqlite_schema import SchemaVersionError

OTHER = "acme/plant2/packaging/line1"  # a line of another adapter instance
MIN = 60_000
_db_numbers = itertools.count(1)


class Backend:
    """Opens (and reopens, like a restarted instance) the stores over one place: a folder or a database."""

    def __init__(self, name: str, tmp_path: Path, server: PostgresServer | None) -> None:
        self.name = name
        self.tmp_path = tmp_path
        self.dsn: str | None = None
        self.opened: list[StateStores] = []
        if server is not None:
            self.dsn = fresh_database(server, f"state_{next(_db_numbers)}")

    def config(self, **settings: object) -> MesConfig:
        return MesConfig(data_dir=self.tmp_path, state_dsn=self.dsn, **settings)  # type: ignore[arg-type]

    def open(self) -> StateStores:
        stores = open_state_stores(self.config())
        self.opened.append(stores)
        return stores

    def close_all(self) -> None:
        for stores in self.opened:
            for store in (stores.context, stores.records, stores.production):
                store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with on_backend(request, lambda name, server: Backend(name, tmp_path, server)) as b:
        yield b


def assertion(line: str, seq: int, since: int, batch: str | None = "B-1", **kw: object) -> ContextAssertion:
    return ContextAssertion(line=line, seq=seq, since_ms=since, batch_id=batch, **kw)  # type: ignore[arg-type]


def reading(ts: int, value: object, metric: str = "Filler/Temp", line: str = LINE, **kw: object) -> Record:
    return Record(line=line, cell=kw.pop("cell", "Filler"), metric=metric, value=value,  # type: ignore[arg-type]
                  source_ts_ms=ts, **kw)  # type: ignore[arg-type]


def test_the_context_history_is_kept_in_order_and_a_new_store_sees_all_of_it(backend: Backend) -> None:
    store = backend.open().context
    store.append(assertion(LINE, 1, 0, work_order_id="WO-1", product_id="SKU-12"), received_ms=10)
    store.append(assertion(OTHER, 1, 5, batch="B-9"), received_ms=11)
    store.append(assertion(LINE, 2, MIN, phase="fill"), received_ms=12)
    store.append(assertion(LINE, 3, 2 * MIN, ended=True), received_ms=13)
    with pytest.raises(Exception):  # noqa: B017,PT011 - each backend's own duplicate-key error
        store.append(assertion(LINE, 3, 3 * MIN), received_ms=14)  # (line, seq) is stored once
    expected = [assertion(LINE, 1, 0, work_order_id="WO-1", product_id="SKU-12"),
                assertion(LINE, 2, MIN, phase="fill"), assertion(LINE, 3, 2 * MIN, ended=True)]
    for reopened in (store, backend.open().context):
        assert reopened.load_all() == [*expected, assertion(OTHER, 1, 5, batch="B-9")]
        assert reopened.load_line(LINE) == expected
        assert reopened.lines() == [LINE, OTHER]
        assert reopened.history(LINE, limit=2) == [(expected[2], 13), (expected[1], 12)]
        assert [seq for seq in (a.seq for a, _ in reopened.history(LINE))] == [3, 2, 1]


def test_records_are_stored_once_the_unstorable_quarantined_and_queried_by_range(backend: Backend) -> None:
    store = backend.open().records
    batch = [reading(1 * MIN, 20.5), reading(2 * MIN, {"a": [1, 2]}, metric="Recipe", cell=None),
             reading(3 * MIN, "Execute", metric="State", kind=RecordKind.STATE, cell=None, received_ms=3 * MIN + 7),
             reading(4 * MIN, None, quality=Quality.BAD, is_historical=True),
             reading(4 * MIN, None, quality=Quality.BAD, is_historical=True)]  # the same record twice in one batch
    assert store.add_many(batch) == 4
    # a store-and-forward replay and a birth re-statement add nothing
    assert store.add_many([reading(1 * MIN, 20.5), reading(3 * MIN, "Execute", metric="State", cell=None)]) == 0
    circular: list[object] = []
    circular.append(circular)
    # what no backend can hold is quarantined and counted; the rest of the batch is stored
    assert store.add_many([reading(2**63, 1.0), reading(5 * MIN, circular), reading(6 * MIN, 21.0)]) == 1
    assert store.quarantined == 2
    stored = [reading(1 * MIN, 20.5), reading(2 * MIN, {"a": [1, 2]}, metric="Recipe", cell=None),
              reading(3 * MIN, "Execute", metric="State", kind=RecordKind.STATE, cell=None, received_ms=3 * MIN + 7),
              reading(4 * MIN, None, quality=Quality.BAD, is_historical=True), reading(6 * MIN, 21.0)]
    for reopened in (store, backend.open().records):
        assert reopened.query(LINE, 0, 10 * MIN) == stored
        assert reopened.query(LINE, 2 * MIN, 4 * MIN) == stored[1:3]  # [from, to)
        assert reopened.query(LINE, 0, 10 * MIN, metric="Filler/Temp", cell="Filler", limit=2) == [stored[0], stored[3]]
        assert reopened.query(LINE, 0, 10 * MIN, kind=RecordKind.STATE) == [stored[2]]
        assert reopened.query(OTHER, 0, 10 * MIN) == []
        assert reopened.last_before(LINE, "Filler", "Filler/Temp", 6 * MIN) == stored[3]
        assert reopened.last_before(LINE, None, "State", 3 * MIN) is None
    if backend.name == "postgres":  # PostgreSQL text cannot hold NUL: quarantined there, not a failed batch
        assert store.add_many([reading(7 * MIN, 1.0, metric="Bad\x00Name"), reading(8 * MIN, 22.0)]) == 1
        assert store.quarantined == 3


def test_counter_samples_and_deltas_survive_a_restart_without_counting_twice(backend: Backend) -> None:
    config = backend.config(lines=[line_config()])
    production = ProductionCounters(config, backend.open().production)
    for value, ts in ((100, 0), (130, MIN), (5, 2 * MIN)):  # a baseline, an increment, a reset
        production.observe(LINE, None, "GoodCount", CounterSample(value, ts))
    production.observe(LINE, None, "RejectCount", CounterSample(7, 0))
    production.observe(LINE, None, "RejectCount", CounterSample(9, MIN))
    production.observe(LINE, "Blower", "Preforms", CounterSample(1000, 0))
    production.observe(LINE, "Blower", "Preforms", CounterSample(1400, MIN))
    production.observe(LINE, None, "GoodCount", CounterSample(2**64, 3 * MIN))  # no backend holds it
    assert production.quarantined == 1
    # a restarted instance resumes from the stored samples: the replayed ones count nothing again
    restarted = ProductionCounters(config, backend.open().production)
    assert restarted.observe(LINE, None, "GoodCount", CounterSample(130, MIN)) == []
    restarted.observe(LINE, None, "GoodCount", CounterSample(12, 4 * MIN))
    store = backend.open().production
    assert store.deltas(LINE, 0, 10 * MIN) == [
        ("good", MIN, 30.0, DeltaReason.INCREMENT.value), ("reject", MIN, 2.0, DeltaReason.INCREMENT.value),
        ("consumed", MIN, 400.0, DeltaReason.INCREMENT.value), ("good", 2 * MIN, 5.0, DeltaReason.RESET.value),
        ("good", 4 * MIN, 7.0, DeltaReason.INCREMENT.value)]
    quantities = restarted.quantities(LINE, [Interval(0, 2 * MIN), Interval(4 * MIN, 5 * MIN)])
    assert (quantities.good, quantities.scrap, quantities.consumed) == (37.0, 2.0, {"RM-PET-500": 400.0})
    signal = line_config().counters[0]
    assert [(s.value, s.source_ts_ms) for s in store.samples(LINE, signal)] == [
        (100, 0), (130, MIN), (5, 2 * MIN), (12, 4 * MIN)]
    store.prune_samples(LINE, signal, 2 * MIN)
    assert [s.source_ts_ms for s in backend.open().production.samples(LINE, signal)] == [2 * MIN, 4 * MIN]


def test_an_instance_reads_the_lines_of_another_from_the_shared_store(backend: Backend) -> None:
    """Instance A owns LINE, instance B owns OTHER; each has its own store objects on one database."""
    config = backend.config(lines=[line_config()])
    a_stores, b_stores = backend.open(), backend.open()
    a = ContextService(a_stores.context, owns=lambda line: line == LINE)
    b = ContextService(b_stores.context, owns=lambda line: line == OTHER)
    a_production = ProductionCounters(config, a_stores.production)
    b_production = ProductionCounters(backend.config(), b_stores.production)  # B's config lacks LINE
    a.assert_context(assertion(LINE, 1, 0, work_order_id="WO-1"))
    a_stores.records.add_many([reading(MIN, 20.0), reading(3 * MIN, 21.0)])
    for value, ts in ((100, 0), (130, MIN)):
        a_production.observe(LINE, None, "GoodCount", CounterSample(value, ts))
    a_production.observe(LINE, None, "RejectCount", CounterSample(0, 0))
    a_production.observe(LINE, None, "RejectCount", CounterSample(4, MIN))
    assert b.all_lines() == [LINE] and b.lines() == []  # B keeps no timeline of A's line
    assert b.batch_window(LINE, "B-1").end_ms is None  # type: ignore[union-attr]
    a.assert_context(assertion(LINE, 2, 2 * MIN, ended=True))  # read at query time: B sees it at once
    window = b.batch_window(LINE, "B-1")
    assert window == a.batch_window(LINE, "B-1") and window is not None and window.end_ms == 2 * MIN
    assert [w.batch_id for w in b.batch_windows(LINE)] == ["B-1"]
    assert b.active_at(LINE, MIN) == a.active_at(LINE, MIN)
    b_records = ContextualRecords(b_stores.records, b)
    assert [(r.record.value, r.batch_id, r.work_order_id) for r in b_records.query_batch(LINE, "B-1")] == [
        (20.0, "B-1", "WO-1")]
    assert [r.batch_id for r in b_records.query(LINE, 0, 10 * MIN)] == ["B-1", None]
    intervals = [Interval(window.start_ms, window.end_ms)]  # type: ignore[arg-type]
    assert b_production.quantities(LINE, intervals) == a_production.quantities(LINE, intervals)
    assert (a_production.quantities(LINE, intervals).good, a_production.quantities(LINE, intervals).scrap) == (30, 4)


def test_state_dsn_is_one_line_and_the_outbox_follows_it_unless_set() -> None:
    retry = RetryPolicy(request_timeout_s=5)
    assert MesConfig(state_dsn="postgresql://db/uns", retry=retry).outbox_dsn == "postgresql://db/uns"
    assert MesConfig(state_dsn="postgresql://db/uns", outbox_dsn="postgresql://db/box",
                     retry=retry).outbox_dsn == "postgresql://db/box"
    assert MesConfig().outbox_dsn is None
    with pytest.raises(ValueError, match="outbox_claim_s"):  # the outbox's own checks apply to the default too
        MesConfig(state_dsn="postgresql://db/uns", outbox_claim_s=5, retry=retry)


@pytest.mark.parametrize("store", ["context", "records", "production"])
def test_a_newer_postgres_schema_is_refused_before_anything_is_written(
        pg_server: PostgresServer, tmp_path: Path, store: str) -> None:
    from mes_adapter.context.pg_store import PostgresContextStore
    from mes_adapter.production.pg_quantities import PostgresProductionStore
    from mes_adapter.production.pg_records import PostgresRecordStore

    opener = {"context": PostgresContextStore, "records": PostgresRecordStore,
              "production": PostgresProductionStore}[store]
    dsn = Backend("postgres", tmp_path, pg_server).dsn
    assert dsn is not None
    opener(dsn).close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM mes_schema WHERE store = %s", (store,)).fetchone() == (1,)
        conn.execute("UPDATE mes_schema SET version = 2 WHERE store = %s", (store,))
    with pytest.raises(SchemaVersionError, match=f"PostgreSQL {store} has schema version 2; this uns-hub knows "
                                                 "up to 1"):
        opener(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM mes_schema WHERE store = %s", (store,)).fetchone() == (2,)


def test_an_unreachable_database_is_a_passing_error_the_callers_retry() -> None:
    dsn = f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres connect_timeout=2"
    config = MesConfig(state_dsn=dsn, retry=RetryPolicy(request_timeout_s=5))
    with pytest.raises(StateStoreUnavailableError, match="PostgreSQL") as caught:
        open_state_stores(config)
    assert isinstance(caught.value, OSError)  # what ingest and the counters already keep and retry


def test_overlapping_groups_in_words() -> None:
    assert shared_groups(("g1", "g2"), ("g3",)) is None
    assert shared_groups(("g1", "g2"), ("g2", "g3")) == "g2"
    assert shared_groups(None, ("g3",)) == "every group of theirs (g3): this instance sets no host.groups"
    assert shared_groups(("g1",), None) == "every group: that instance sets no host.groups"
    assert shared_groups(None, None) == "every group (neither sets host.groups)"


def test_instances_sharing_the_state_own_disjoint_groups(pg_server: PostgresServer, tmp_path: Path) -> None:
    """Two live instances owning one group would both count its line (every confirmation doubled):
    the second is refused at start, naming the first and the group; another group, the same host id
    restarted, a cleanly stopped or a dead (lease run out) instance's groups are all fine; and an
    instance that finds its group taken while it runs says so (readiness)."""
    dsn = Backend("postgres", tmp_path, pg_server).dsn
    assert dsn is not None

    def instance(host_id: str, groups: tuple[str, ...] | None) -> InstanceRegistry:
        return InstanceRegistry(dsn, host_id, groups, lease_s=30)

    line1 = instance("mes-line1", ("acme:plant1",))
    line1.register()
    instance("mes-line2", ("acme:plant2",)).register()  # another group: fine
    with pytest.raises(InstanceConflictError) as refused:
        instance("mes-other", ("acme:plant3", "acme:plant1")).register()
    text = str(refused.value)
    assert text.startswith("adapter instance 'mes-other' (host.groups: acme:plant3, acme:plant1) cannot share the MES "
                           "state database with another instance owning the same groups: adapter instance "
                           f"'mes-line1' ({line1.process}, heartbeat 0 s ago) owns acme:plant1.")
    with pytest.raises(InstanceConflictError, match="'mes-line2' .* owns every group of theirs"):
        instance("mes-all", None).register()  # no host.groups: every group, so it overlaps with both
    instance("mes-line1", ("acme:plant1",)).register()  # the same host id: the instance restarted

    line1.release()  # a clean stop frees the group at once
    taker = instance("mes-other", ("acme:plant3", "acme:plant1"))
    taker.register()
    with psycopg.connect(dsn, autocommit=True) as conn:  # the taker dies: its heartbeat grows old
        conn.execute("UPDATE mes_instance SET heartbeat_at = now() - interval '31 seconds' WHERE host_id = 'mes-other'")
    line1.register()  # its lease has run out: the group is free again
    line1.heartbeat()
    assert line1.conflict is None
    with psycopg.connect(dsn, autocommit=True) as conn:  # line1 is cut off longer than its lease ...
        conn.execute("UPDATE mes_instance SET heartbeat_at = now() - interval '31 seconds' WHERE host_id = 'mes-line1'")
    taker.register()  # ... and another instance takes its group
    line1.heartbeat()
    assert line1.conflict is not None and line1.conflict.startswith("adapter instance 'mes-other' (")
    assert line1.conflict.endswith("owns acme:plant1")
    taker.release()
    line1.heartbeat()
    assert line1.conflict is None


def test_an_owner_says_whether_it_holds_rejects_for_qa_and_a_version_1_registry_is_migrated(
        pg_server: PostgresServer, tmp_path: Path) -> None:
    """Another instance's rejects are scrap only if it does no QA disposition; the registry says
    which, per live owner of a group (None: no live owner, or a row an older uns-hub wrote). A
    registry written by the version before the column is migrated in place, its rows kept."""
    dsn = Backend("postgres", tmp_path, pg_server).dsn
    assert dsn is not None
    with psycopg.connect(dsn, autocommit=True) as conn:  # what uns-hub wrote before (schema version 1)
        conn.execute("CREATE TABLE mes_schema (store text PRIMARY KEY, version integer NOT NULL)")
        conn.execute("INSERT INTO mes_schema VALUES ('instances', 1)")
        conn.execute("CREATE TABLE mes_instance (host_id text PRIMARY KEY, groups text[], process text NOT NULL, "
                     "started_at timestamptz NOT NULL DEFAULT now(), heartbeat_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO mes_instance (host_id, groups, process) VALUES ('mes-old', '{acme:plant9}', 'x')")
    qa = InstanceRegistry(dsn, "mes-qa", ("acme:plant1",), lease_s=30, disposition_required=True)
    qa.register()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT version FROM mes_schema WHERE store = 'instances'").fetchone() == (2,)
        assert conn.execute("SELECT host_id, disposition_required FROM mes_instance ORDER BY host_id").fetchall() == [
            ("mes-old", None), ("mes-qa", True)]
    plain = InstanceRegistry(dsn, "mes-plain", ("acme:plant2",), lease_s=30)
    plain.register()
    reader = InstanceRegistry(dsn, "mes-reader", ("acme:plant3",), lease_s=30)
    assert [reader.owner_disposition_required(g) for g in ("acme:plant1", "acme:plant2", "acme:plant9",
                                                           "acme:nobody")] == [True, False, None, None]
    assert plain.owner_disposition_required("acme:plant2") is None  # its own row is not "another owner"
    qa.release()
    assert reader.owner_disposition_required("acme:plant1") is True  # read again only after OWNER_CACHE_S
    fresh = InstanceRegistry(dsn, "mes-reader", ("acme:plant3",), lease_s=30)
    assert fresh.owner_disposition_required("acme:plant1") is None  # stopped: no live owner


def test_records_and_counts_wait_while_postgres_is_down_and_are_stored_once_after(
        pg_server: PostgresServer, tmp_path: Path) -> None:
    """The last test of the module: it stops and starts the module's server."""
    backend = Backend("postgres", tmp_path, pg_server)
    config = backend.config(lines=[line_config()])
    stores = backend.open()
    production = ProductionCounters(config, stores.production)
    ingest = Ingest(config, production, stores.records)

    def observe(metric: str, value: float, ts: int) -> None:
        ingest.observe(Observation(line=LINE, cell=None, metric=metric, value=value, quality=Quality.GOOD,
                                   source_ts_ms=ts, received_ms=ts))

    observe("GoodCount", 100, 1_000)
    assert ingest.flush() == 1
    pg_server.stop()
    try:
        for i in range(1, 6):
            observe("GoodCount", 100 + i, 1_000 + i * 1_000)
        assert ingest.flush() == 0
        assert ingest.failing is not None and "StateStoreUnavailableError" in ingest.failing
        assert ingest.pending == 10  # five records and five counter samples, kept
    finally:
        pg_server.start()
    # the records' connection was cut by the restart: their insert (safe to repeat) is retried on a new one
    assert ingest.flush() == 5  # every record once
    assert ingest.failing is None and ingest.pending == 0
    records = stores.records.query(LINE, 0, 10**9, metric="GoodCount")
    assert [(r.source_ts_ms, r.value) for r in records] == [(1_000 + i * 1_000, 100 + i) for i in range(6)]
    assert production.quantities(LINE, [Interval(0, 10**9)]).good == 5
    assert [d[1:3] for d in stores.production.deltas(LINE, 0, 10**9)] == [(1_000 + i * 1_000, 1.0) for i in range(1, 6)]
    backend.close_all()
