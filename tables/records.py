"""Records kept in the worker's tables: small metadata only, never file bytes."""

from __future__ import annotations

import faust

__all__ = ["FileState", "FinishedFile", "PartialFile", "PlacedVersion"]


class FileState:
    """States of a :class:`PartialFile`."""

    RECEIVING = "receiving"  #: chunks are arriving; data lives in the holder's staging area
    COMPLETE = "complete"  #: verified and announced; processors are running
    FAILED = "failed"  #: rejected; remaining chunks of the upload are absorbed, not stored


class PartialFile(faust.Record, serializer="json"):
    """An upload in progress, keyed by :func:`app.paths.file_key`.

    While a record exists, the committed offset of its chunk-topic partition never passes
    ``first_offset``, so every chunk of the file can be read again after a restart or a move.
    """

    relpath: str
    file_hash: str
    total: int
    partition: int
    first_offset: int
    last_offset: int
    holder: str
    state: str = FileState.RECEIVING
    # Record defaults are shared between instances: never mutate these lists, derive() new ones.
    received: list = []
    chunk_len: int = 0
    size: int = -1
    bytes_received: int = 0
    mtime: float = 0.0
    completing_offset: int = -1
    done: list = []
    reason: str = ""
    started_at: float = 0.0
    updated_at: float = 0.0


class FinishedFile(faust.Record, serializer="json"):
    """A file version whose processing has ended (``outcome`` says how).

    Chunks of that version at offsets up to ``last_offset`` are redeliveries and are ignored;
    a later upload of the same content starts a new version.
    """

    relpath: str
    file_hash: str
    size: int
    partition: int
    last_offset: int
    outcome: str
    finished_at: float


class PlacedVersion(faust.Record, serializer="json"):
    """The version of a path the directory processor placed last, keyed by relative path.

    All versions of a path share a partition, so ``first_offset`` orders them by upload: a
    version that started uploading earlier never replaces a later one (newest upload wins),
    whichever completes first.
    """

    file_hash: str
    first_offset: int
    placed_at: float
