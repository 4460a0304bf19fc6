"""Records and counter samples per second into the MES state stores: SQLite files and PostgreSQL.

What ingest writes for every value (``mes.state_dsn`` unset: SQLite; set: the PostgreSQL adapter
instances share): contextualized records in batches of ``--batch`` (``RecordStore.add_many``, one
transaction per batch, the replay bench's path) and counter samples one at a time, each with its
deltas in one transaction (``ProductionCounters.observe``). The backends run alternately, ``--rounds``
times, in one session, each on a fresh store (a new temp dir, a new database), against a real
PostgreSQL started here (tests/support/postgres.py) on loopback. Printed: the median and range per
backend. Compare with the replay target in bench/replay_to_mes.py (50,000 values/s into the MES store).

Repeat with::

    flock /tmp/uns-bench.lock .venv/bin/python bench/mes_state_ingest.py
    flock /tmp/uns-bench.lock .venv/bin/python bench/mes_state_ingest.py --records 200000 --samples 20000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LINE = "acme/plant1/packaging/line1"


def _config(data_dir: Path, dsn: str | None):  # type: ignore[no-untyped-def]
    from mes_adapter.config.mes import CounterSignal, LineConfig, MesConfig, RetryPolicy
    from mes_adapter.production.counters import CounterRole

    line = LineConfig(line=LINE, counters=[CounterSignal(metric="GoodCount", role=CounterRole.GOOD)])
    return MesConfig(data_dir=data_dir, state_dsn=dsn, lines=[line], retry=RetryPolicy(request_timeout_s=5))


def run(dsn: str | None, records: int, samples: int, batch: int) -> tuple[float, float]:
    from mes_adapter.production.counters import CounterSample
    from mes_adapter.production.quantities import ProductionCounters
    from mes_adapter.production.records import Record
    from mes_adapter.state import open_state_stores

    config = _config(Path(tempfile.mkdtemp(prefix="mes-state-bench-")), dsn)
    stores = open_state_stores(config)
    try:
        rows = [Record(line=LINE, cell=f"Cell{i % 10}", metric=f"Tag{i % 100}", value=float(i), source_ts_ms=1_000 + i)
                for i in range(records)]
        t0 = time.perf_counter()
        stored = sum(stores.records.add_many(rows[i:i + batch]) for i in range(0, records, batch))
        record_rate = records / (time.perf_counter() - t0)
        assert stored == records, (stored, records)
        production = ProductionCounters(config, stores.production)
        t0 = time.perf_counter()
        for i in range(samples):
            production.observe(LINE, None, "GoodCount", CounterSample(i, 1_000 + i * 100))
        sample_rate = samples / (time.perf_counter() - t0)
        assert len(stores.production.deltas(LINE, 0, 2**62)) == samples - 1
        return record_rate, sample_rate
    finally:
        for store in (stores.context, stores.records, stores.production):
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=2_000, help="records per add_many (ingest's max_batch)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from tests.support.postgres import PostgresServer, fresh_database

    server = PostgresServer(Path(tempfile.mkdtemp(prefix="mes-state-bench-pglog-")))
    server.start()
    results: dict[str, list[tuple[float, float]]] = {"sqlite": [], "postgres": []}
    try:
        for n in range(args.rounds):
            results["sqlite"].append(run(None, args.records, args.samples, args.batch))
            dsn = fresh_database(server, f"bench_{n}")
            results["postgres"].append(run(dsn, args.records, args.samples, args.batch))
    finally:
        server.close()
    for name, runs in results.items():
        recs, samps = [r for r, _ in runs], [s for _, s in runs]
        print(f"{name:9s} records/s median {statistics.median(recs):9,.0f} (range {min(recs):,.0f}-{max(recs):,.0f})"
              f"   counter samples/s median {statistics.median(samps):7,.0f}"
              f" (range {min(samps):,.0f}-{max(samps):,.0f})")


if __name__ == "__main__":
    main()
