"""Ending a file version's life in the tables: its partial record goes (a tombstone, which
lifts its commit floor) and a finished record stays, so redelivered chunks are ignored."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.application import app
from tables import FinishedFile, PartialFile, finished_files, partial_files
from tables.progress import needs_changelog

__all__ = ["forget", "forget_finished"]


def forget(key: str, rec: PartialFile, *, outcome: str) -> None:
    """Replace the partial record of ``key`` by a finished one with ``outcome``, and delete the
    file's staged bytes once both writes are on the broker.

    Deleting them earlier would let a crash in between leave a record that still says
    "complete" with no bytes behind it: the file would be rebuilt and placed a second time.
    Writes go to the changelog partition of the file's chunk partition explicitly
    (:meth:`app.durability.DurableTable.put`), so this works from lanes and timers.
    """
    finished = FinishedFile(relpath=rec.relpath, file_hash=rec.file_hash, size=rec.size, partition=rec.partition,
                            last_offset=rec.last_offset, outcome=outcome, finished_at=time.time())
    writes = [finished_files.put(rec.partition, key, finished)]
    if needs_changelog(rec):
        writes.append(partial_files.remove(rec.partition, key))
    else:
        partial_files.data.pop(key, None)  # never written, so no tombstone either
    app.add_future(_discard_when_durable(key, writes))


async def _discard_when_durable(key: str, writes: list[Any]) -> None:
    await asyncio.gather(*writes)
    await app.run_blocking(app.staging.discard, key)


def forget_finished(key: str, finished: FinishedFile) -> None:
    """Drop a finished record once its retention is over (a tombstone keeps the changelog small)."""
    finished_files.remove(finished.partition, key)
