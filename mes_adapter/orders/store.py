"""SQLite file of the orders (``orders.sqlite``), one row per order, updated as it is started.

Schema version: :data:`MIGRATIONS` holds one script per version, run by :mod:`uns.sqlite_schema`.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from mes_adapter.sqlite import open_db, transaction
from uns.sqlite_schema import migrate

from .models import Order, OrderStatus

#: ``MIGRATIONS[n]`` brings a file from version ``n`` to ``n + 1``
MIGRATIONS: list[str] = [
    """
    CREATE TABLE production_order (
        order_id TEXT PRIMARY KEY,
        line TEXT NOT NULL,
        product_id TEXT NOT NULL,
        quantity REAL NOT NULL,
        uom TEXT NOT NULL,
        recipe_version TEXT NOT NULL,
        due_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        received_by TEXT NOT NULL,
        command_id TEXT,
        command_hash TEXT,
        batch_id TEXT,
        started_ms INTEGER,
        started_by TEXT,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX production_order_by_line ON production_order (line, status, due_ms);
    CREATE UNIQUE INDEX production_order_by_command ON production_order (command_id) WHERE command_id IS NOT NULL;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS = ("order_id", "line", "product_id", "quantity", "uom", "recipe_version", "due_ms", "status",
            "received_ms", "received_by", "command_id", "command_hash", "batch_id", "started_ms", "started_by",
            "detail")


class OrderStore:
    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._conn = open_db(path)
        self._lock = threading.Lock()  # the API's worker threads and the event loop share the connection
        migrate(self._conn, MIGRATIONS, store="order store")

    def close(self) -> None:
        self._conn.close()

    def insert(self, order: Order) -> bool:
        """Store a new order; False if its id is taken (nothing is written)."""
        row = order.model_dump(mode="json")
        with self._lock, transaction(self._conn) as conn:
            try:
                conn.execute(f"INSERT INTO production_order ({', '.join(_COLUMNS)}) "
                             f"VALUES ({', '.join('?' for _ in _COLUMNS)})", [row[c] for c in _COLUMNS])
            except sqlite3.IntegrityError:
                return False
        return True

    def update(self, order: Order) -> None:
        row = order.model_dump(mode="json")
        fields = [c for c in _COLUMNS if c != "order_id"]
        with self._lock, transaction(self._conn) as conn:
            conn.execute(f"UPDATE production_order SET {', '.join(f'{c}=?' for c in fields)} WHERE order_id=?",
                         [row[c] for c in fields] + [order.order_id])

    def get(self, order_id: str) -> Order | None:
        rows = self._select("WHERE order_id=?", (order_id,))
        return rows[0] if rows else None

    def by_command(self, command_id: str) -> Order | None:
        rows = self._select("WHERE command_id=?", (command_id,))
        return rows[0] if rows else None

    def query(self, line: str | None = None, status: OrderStatus | None = None, limit: int = 1000) -> list[Order]:
        """Orders by due time (then id), optionally of one line and one status."""
        where, args = [], []
        if line is not None:
            where.append("line=?")
            args.append(line)
        if status is not None:
            where.append("status=?")
            args.append(status.value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._select(f"{clause} ORDER BY due_ms, order_id LIMIT ?", (*args, limit))

    def _select(self, clause: str, args: tuple[Any, ...]) -> list[Order]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM production_order {clause}", args).fetchall()
        return [Order.model_validate(dict(zip(_COLUMNS, row, strict=True))) for row in rows]
