"""SQLite file of the genealogy (``genealogy.sqlite``): consumptions, produced lots, splits and merges.

Schema version: :data:`MIGRATIONS` holds one script per version, run by :mod:`uns.sqlite_schema`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from mes_adapter.sqlite import open_db, transaction
from uns.sqlite_schema import migrate

from .models import Consumption, LinkKind, LotLink, LotQuantity, ProducedLot
from .trace import Graph, batch, lot

#: ``MIGRATIONS[n]`` brings a file from version ``n`` to ``n + 1``
MIGRATIONS: list[str] = [
    """
    CREATE TABLE consumption (
        line TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        lot_id TEXT NOT NULL,
        material_id TEXT NOT NULL,
        quantity REAL NOT NULL,
        uom TEXT NOT NULL,
        asserted_by TEXT NOT NULL,
        asserted_ms INTEGER NOT NULL,
        PRIMARY KEY (line, batch_id, lot_id)
    );
    CREATE INDEX consumption_by_lot ON consumption (lot_id);
    CREATE TABLE produced_lot (
        lot_id TEXT PRIMARY KEY,
        line TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        material_id TEXT NOT NULL,
        quantity REAL NOT NULL,
        uom TEXT NOT NULL,
        asserted_by TEXT NOT NULL,
        asserted_ms INTEGER NOT NULL
    );
    CREATE INDEX produced_lot_by_batch ON produced_lot (line, batch_id);
    CREATE TABLE lot_link (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        sources TEXT NOT NULL,
        targets TEXT NOT NULL,
        asserted_by TEXT NOT NULL,
        asserted_ms INTEGER NOT NULL
    );
    CREATE TABLE link_target (
        lot_id TEXT PRIMARY KEY,
        link_id INTEGER NOT NULL REFERENCES lot_link (id)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _quantities(text: str) -> list[LotQuantity]:
    return [LotQuantity.model_validate(q) for q in json.loads(text)]


class GenealogyStore:
    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._conn = open_db(path)
        self._lock = threading.Lock()
        migrate(self._conn, MIGRATIONS, store="genealogy store")

    def close(self) -> None:
        self._conn.close()

    # -- reads -------------------------------------------------------------------------------

    def consumption(self, line: str, batch_id: str, lot_id: str) -> Consumption | None:
        rows = self._consumptions("WHERE line=? AND batch_id=? AND lot_id=?", (line, batch_id, lot_id))
        return rows[0] if rows else None

    def consumed_by(self, line: str, batch_id: str) -> list[Consumption]:
        return self._consumptions("WHERE line=? AND batch_id=? ORDER BY lot_id", (line, batch_id))

    def lot_consumed(self, lot_id: str) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM consumption WHERE lot_id=? LIMIT 1", (lot_id,)).fetchone() \
                is not None

    def produced(self, lot_id: str) -> ProducedLot | None:
        rows = self._produced("WHERE lot_id=?", (lot_id,))
        return rows[0] if rows else None

    def produced_by(self, line: str, batch_id: str) -> list[ProducedLot]:
        return self._produced("WHERE line=? AND batch_id=? ORDER BY lot_id", (line, batch_id))

    def link_of_target(self, lot_id: str) -> LotLink | None:
        with self._lock:
            row = self._conn.execute("SELECT l.kind, l.sources, l.targets FROM link_target t JOIN lot_link l "
                                     "ON l.id = t.link_id WHERE t.lot_id=?", (lot_id,)).fetchone()
        if row is None:
            return None
        return LotLink(kind=LinkKind(row[0]), sources=_quantities(row[1]), targets=_quantities(row[2]))

    def graph(self) -> Graph:
        """Every recorded edge (a trace walks the whole history of a lot)."""
        graph = Graph()
        with self._lock:
            consumed = self._conn.execute("SELECT line, batch_id, lot_id FROM consumption").fetchall()
            produced = self._conn.execute("SELECT line, batch_id, lot_id FROM produced_lot").fetchall()
            links = self._conn.execute("SELECT sources, targets FROM lot_link").fetchall()
        for line, batch_id, lot_id in consumed:
            graph.add(lot(lot_id), batch(line, batch_id))
        for line, batch_id, lot_id in produced:
            graph.add(batch(line, batch_id), lot(lot_id))
        for sources, targets in links:
            for s in _quantities(sources):
                for t in _quantities(targets):
                    graph.add(lot(s.lot_id), lot(t.lot_id))
        return graph

    # -- writes ------------------------------------------------------------------------------

    def add_consumption(self, item: Consumption, who: str, at_ms: int) -> None:
        with self._lock, transaction(self._conn) as conn:
            conn.execute("INSERT INTO consumption VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (item.line, item.batch_id, item.lot_id, item.material_id, item.quantity, item.uom, who, at_ms))

    def add_produced(self, item: ProducedLot, who: str, at_ms: int) -> None:
        with self._lock, transaction(self._conn) as conn:
            conn.execute("INSERT INTO produced_lot VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (item.lot_id, item.line, item.batch_id, item.material_id, item.quantity, item.uom, who, at_ms))

    def add_link(self, link: LotLink, who: str, at_ms: int) -> None:
        with self._lock, transaction(self._conn) as conn:
            cur = conn.execute("INSERT INTO lot_link (kind, sources, targets, asserted_by, asserted_ms) "
                               "VALUES (?, ?, ?, ?, ?)",
                               (link.kind.value, json.dumps([q.model_dump() for q in link.sources]),
                                json.dumps([q.model_dump() for q in link.targets]), who, at_ms))
            for t in link.targets:
                conn.execute("INSERT INTO link_target VALUES (?, ?)", (t.lot_id, cur.lastrowid))

    # -- helpers -----------------------------------------------------------------------------

    def _consumptions(self, clause: str, args: tuple[str, ...]) -> list[Consumption]:
        with self._lock:
            rows = self._conn.execute("SELECT line, batch_id, lot_id, material_id, quantity, uom FROM consumption "
                                      + clause, args).fetchall()
        return [Consumption(line=r[0], batch_id=r[1], lot_id=r[2], material_id=r[3], quantity=r[4], uom=r[5])
                for r in rows]

    def _produced(self, clause: str, args: tuple[str, ...]) -> list[ProducedLot]:
        with self._lock:
            rows = self._conn.execute("SELECT line, batch_id, lot_id, material_id, quantity, uom FROM produced_lot "
                                      + clause, args).fetchall()
        return [ProducedLot(line=r[0], batch_id=r[1], lot_id=r[2], material_id=r[3], quantity=r[4], uom=r[5])
                for r in rows]
