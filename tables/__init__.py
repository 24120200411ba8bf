"""Changelog-backed tables of the worker. They hold metadata only; file bytes never enter them."""

from __future__ import annotations

from app.application import app

from .progress import needs_changelog
from .records import FileState, FinishedFile, PartialFile, PlacedVersion

__all__ = ["FileState", "FinishedFile", "PartialFile", "PlacedVersion", "finished_files", "partial_files",
           "placed_versions", "save_partial"]

#: Uploads being reassembled or processed, by file key. Their first offsets are the commit floors.
partial_files = app.Table("partial-files", key_type=str, value_type=PartialFile, partitions=app.settings.partitions)

#: File versions whose processing has ended, by file key: redelivered chunks are ignored.
finished_files = app.Table("finished-files", key_type=str, value_type=FinishedFile, partitions=app.settings.partitions)

#: The version of each output path the directory processor placed last (newest upload wins).
placed_versions = app.Table("placed-versions", key_type=str, value_type=PlacedVersion,
                            partitions=app.settings.partitions)


def save_partial(key: str, rec: PartialFile) -> None:
    """Keep ``rec`` as the record of ``key``; only records worth a changelog write get one
    (:func:`tables.progress.needs_changelog`), in the file's chunk partition."""
    if needs_changelog(rec):
        partial_files.put(rec.partition, key, rec)
    else:
        partial_files.data[key] = rec
