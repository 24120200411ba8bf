"""Changelog-backed tables of the worker. They hold metadata only; file bytes never enter them."""

from __future__ import annotations

from app.application import app

from .records import FileState, FinishedFile, PartialFile

__all__ = ["FileState", "FinishedFile", "PartialFile", "finished_files", "partial_files"]

#: Uploads being reassembled or processed, by file key. Their first offsets are the commit floors.
partial_files = app.Table("partial-files", key_type=str, value_type=PartialFile, partitions=app.settings.partitions)

#: File versions whose processing has ended, by file key: redelivered chunks are ignored.
finished_files = app.Table("finished-files", key_type=str, value_type=FinishedFile, partitions=app.settings.partitions)
