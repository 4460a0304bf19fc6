"""The bounded on-disk buffer in front of PostgreSQL: batches that could not be written yet.

One file per batch, written to a temporary name, fsynced and renamed (a crash leaves either the whole
batch or nothing), named by a sequence number so they replay in order. Each batch carries its id: the
PostgreSQL transaction that writes it also records the id, so a batch whose commit succeeded but whose
acknowledgement was lost (the connection dropped at that moment) is recognised and not written twice.
Tags are spooled by identity, not id: the database may be unreachable when the batch is spooled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..model import Quality, Sample, TagId

_QUALITIES = tuple(Quality)


def encode(batch: Sequence[Sample]) -> bytes:
    rows = [[s.tag.group, s.tag.edge, s.tag.device, s.tag.metric, s.tag.path, s.source_ms, s.receipt_ms, s.value,
             s.datatype, int(s.quality), s.status_code, s.is_historical] for s in batch]
    return json.dumps(rows, separators=(",", ":")).encode()  # keeps bool/int/float (NaN too) and str apart


def decode(data: bytes) -> list[Sample]:
    return [Sample(TagId(g, e, d, m, p), ts, rx, v, dt, _QUALITIES[q], sc, hist)
            for g, e, d, m, p, ts, rx, v, dt, q, sc, hist in json.loads(data)]


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):  # a batch whose write never finished was never acknowledged
            leftover.unlink()
        files = self.files()
        self._next = int(files[-1].name.split("-")[0]) + 1 if files else 1
        self.bytes = sum(f.stat().st_size for f in files)

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.batch"))

    def __len__(self) -> int:
        return len(self.files())

    def has_room(self, size: int) -> bool:
        return self.bytes + size <= self.max_bytes or self.bytes == 0

    def put(self, batch_id: str, data: bytes) -> Path:
        path = self.directory / f"{self._next:012d}-{batch_id}.batch"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._next += 1
        self.bytes += len(data)
        return path

    def pending(self) -> Iterator[tuple[str, Path]]:
        for path in self.files():
            yield path.stem.split("-", 1)[1], path

    def done(self, path: Path) -> None:
        size = path.stat().st_size
        path.unlink()
        self.bytes -= size
