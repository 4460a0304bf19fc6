"""Historian ingest: values/s into the embedded SQLite store and into PostgreSQL (binary COPY), side by side.

Targets (bench/README.md): ≥ 100,000 values/s embedded, ≥ 200,000 values/s PostgreSQL with COPY, on
this 2-core machine. Also prints bytes on disk per value for each backend and the cost of building one
``Sample`` as a frozen dataclass against the same model in pydantic (why the hot path uses dataclasses).

The load is ``--tags`` tags changing once a second (Double values with a little noise, 1 % UNCERTAIN),
appended in batches of ``--batch`` values, the samples built before the clock starts. PostgreSQL is
the Debian package, started here in a temp dir on a free loopback port (as an unprivileged user when
run as root) and stopped at the end. The embedded store runs with synchronous=FULL (as shipped).

Repeat with::

    .venv/bin/python bench/historian_ingest.py                      # 1,000,000 values, 1,000 tags, 3 runs
    .venv/bin/python bench/historian_ingest.py --values 200000 --runs 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from historian import Quality, Sample, SqliteHistorian, TagId  # noqa: E402

DAY0 = 1_764_547_200_000


def make_samples(values: int, tags: int) -> list[Sample]:
    ids = [TagId("Plant1", f"Edge{t // 100}", f"Dev{t % 100}", f"Metric{t}", f"acme/plant1/area/line{t // 100}/m{t}")
           for t in range(tags)]
    out = []
    for i in range(values):
        second, t = divmod(i, tags)
        ts = DAY0 + second * 1_000 + t % 997
        out.append(Sample(ids[t], ts, ts + 3 + i % 40, round(50.0 + (i * 7919 % 1000) / 100, 2), 10,
                          Quality.UNCERTAIN if i % 100 == 0 else Quality.GOOD, 0, False))
    return out


def batches(samples: list[Sample], size: int) -> list[list[Sample]]:
    return [samples[i:i + size] for i in range(0, len(samples), size)]


def timed_ingest(store, samples: list[Sample], size: int, label: str) -> float:
    """Append every batch; returns values/s and prints this process's CPU per value."""
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches(samples, size):
        store.append(batch)
    elapsed = time.perf_counter() - started
    print(f"  {label} CPU {(time.process_time() - cpu) / len(samples) * 1e6:.2f} µs/value (this process)")
    assert store.count() == len(samples)
    return len(samples) / elapsed


def run_sqlite(samples: list[Sample], size: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="hist-bench-") as d:
        store = SqliteHistorian(d)
        rate = timed_ingest(store, samples, size, "sqlite")
        store.close()  # the last connection checkpoints and removes the WAL: what stays on disk
        day_bytes = sum(p.stat().st_size for p in Path(d).glob("day-*.sqlite"))
        return rate, day_bytes / len(samples)


def run_postgres(samples: list[Sample], size: int, dsn: str) -> tuple[float, float]:
    import psycopg

    from historian.postgres import PostgresHistorian

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench")
        conn.execute("CREATE DATABASE bench")
    bench_dsn = dsn.replace("dbname=postgres", "dbname=bench")
    with tempfile.TemporaryDirectory(prefix="hist-bench-buf-") as buf:
        store = PostgresHistorian(bench_dsn, buf)
        rate = timed_ingest(store, samples, size, "postgres client")
        with psycopg.connect(bench_dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE hist_values")
        per_value = store.size_bytes() / len(samples)
        store.close()
    return rate, per_value


def model_cost(n: int = 100_000) -> tuple[float, float]:
    """µs to build one Sample: the frozen dataclass used, and the same fields as a pydantic model."""
    from pydantic import BaseModel, ConfigDict

    class PydanticSample(BaseModel):
        model_config = ConfigDict(frozen=True)
        tag: tuple[str, str, str, str, str]
        source_ms: int
        receipt_ms: int
        value: int | float | bool | str | None
        datatype: int
        quality: int
        status_code: int
        is_historical: bool

    tag = TagId("G", "E", "D", "M", "p")
    tag_t = ("G", "E", "D", "M", "p")
    started = time.perf_counter()
    for i in range(n):
        Sample(tag, i, i, 1.5, 10, Quality.GOOD, 0, False)
    dc = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for i in range(n):
        PydanticSample(tag=tag_t, source_ms=i, receipt_ms=i, value=1.5, datatype=10, quality=0, status_code=0,
                       is_historical=False)
    return dc, (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--tags", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=100_000)  # HistorianWriter's batch_max
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    samples = make_samples(args.values, args.tags)
    print(f"{args.values:,} values, {args.tags:,} tags, batches of {args.batch:,}, {args.runs} run(s) each")
    dc, pyd = model_cost()
    print(f"building one Sample: frozen dataclass {dc:.2f} µs, pydantic {pyd:.2f} µs")

    server = None
    if not args.no_postgres:
        from tests.support.postgres import PostgresServer

        server = PostgresServer(Path(tempfile.mkdtemp(prefix="hist-bench-pglog-")))
        server.start()
    results: dict[str, list[tuple[float, float]]] = {"sqlite": [], "postgres": []}
    try:
        for run in range(args.runs):  # alternate, so both see the same load on a shared machine
            results["sqlite"].append(run_sqlite(samples, args.batch))
            print(f"run {run + 1} sqlite   {results['sqlite'][-1][0]:>10,.0f} values/s "
                  f"{results['sqlite'][-1][1]:6.1f} B/value")
            if server is not None:
                results["postgres"].append(run_postgres(samples, args.batch, server.dsn))
                print(f"run {run + 1} postgres {results['postgres'][-1][0]:>10,.0f} values/s "
                      f"{results['postgres'][-1][1]:6.1f} B/value")
    finally:
        if server is not None:
            server.close()
    for name, runs in results.items():
        if runs:
            rates = [r for r, _ in runs]
            per_value = statistics.median(b for _, b in runs)
            print(f"{name}: median {statistics.median(rates):,.0f} values/s "
                  f"(runs {min(rates):,.0f}–{max(rates):,.0f}), {per_value:.1f} bytes/value")


if __name__ == "__main__":
    main()
