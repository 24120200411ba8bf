"""Ending a file version's life in the tables: its partial record goes (a tombstone, which
lifts its commit floor) and a finished record stays, so redelivered chunks are ignored."""

from __future__ import annotations

import time

from tables import FinishedFile, PartialFile, finished_files, partial_files

__all__ = ["forget", "forget_finished"]


def forget(key: str, rec: PartialFile, *, outcome: str) -> None:
    """Replace the partial record of ``key`` by a finished one with ``outcome``.

    Writes to the changelog partition of the file's chunk partition explicitly, so it works from
    agents of either topic and from timers, which have no current event.
    """
    finished = FinishedFile(relpath=rec.relpath, file_hash=rec.file_hash, size=rec.size, partition=rec.partition,
                            last_offset=rec.last_offset, outcome=outcome, finished_at=time.time())
    partial_files.data.pop(key, None)
    partial_files.send_changelog(rec.partition, key, None, value_serializer="raw")
    finished_files.data[key] = finished
    finished_files.send_changelog(rec.partition, key, finished)


def forget_finished(key: str, finished: FinishedFile) -> None:
    """Drop a finished record once its retention is over (a tombstone keeps the changelog small)."""
    finished_files.data.pop(key, None)
    finished_files.send_changelog(finished.partition, key, None, value_serializer="raw")
