"""Pure bookkeeping of one upload: creating, checking and advancing a :class:`PartialFile`."""

from __future__ import annotations

from app.codec import Chunk

from . import chunkset
from .records import FileState, PartialFile

__all__ = ["geometry_error", "has_chunk", "is_complete", "needs_changelog", "new_partial", "record_chunk",
           "reset_for_holder"]


def new_partial(key_relpath: str, chunk: Chunk, *, partition: int, offset: int, holder: str, now: float) -> PartialFile:
    """The record of a file version whose first chunk has just been seen at ``offset``."""
    return PartialFile(
        relpath=key_relpath,
        file_hash=chunk.file_hash.hex(),
        total=chunk.total,
        partition=partition,
        first_offset=offset,
        last_offset=offset,
        holder=holder,
        state=FileState.RECEIVING,
        received=[],
        done=[],
        mtime=chunk.mtime,
        started_at=now,
        updated_at=now,
    )


def reset_for_holder(rec: PartialFile, holder: str, now: float) -> PartialFile:
    """Start a file again on a worker whose staging area lacks its bytes (another host, or lost
    local state). ``first_offset`` is kept: the commit floor guarantees every chunk from there
    on is read again."""
    return rec.derive(
        holder=holder, state=FileState.RECEIVING, received=[], bytes_received=0, done=[],
        completing_offset=-1, reason="", updated_at=now,
    )


def geometry_error(rec: PartialFile, chunk: Chunk) -> str | None:
    """Why ``chunk`` cannot belong to a file chunked uniformly like ``rec``, or None.

    Every chunk but the last has the same length ``L`` and sits at ``(index - 1) * L``; the last
    one is no longer than ``L``. Checking this bounds a file by ``total * L``, so forged offsets
    cannot make the worker write or hash absurd amounts of data.
    """
    size = len(chunk.data)
    if chunk.total == 1:
        return None if chunk.offset == 0 else f"single chunk at offset {chunk.offset}, expected 0"
    if not chunk.is_last:
        if size == 0:
            return f"chunk {chunk.index}/{chunk.total} is empty but not last"
        if chunk.offset != (chunk.index - 1) * size:
            return f"chunk {chunk.index} at offset {chunk.offset} does not match its length {size}"
        implied = size
    else:
        if chunk.offset % (chunk.total - 1):
            return f"last chunk offset {chunk.offset} is not a multiple of {chunk.total - 1}"
        implied = chunk.offset // (chunk.total - 1)
        if implied < max(size, 1):
            return f"last chunk of {size} bytes is longer than the implied chunk length {implied}"
    if rec.chunk_len and implied != rec.chunk_len:
        return f"chunk length {implied} differs from {rec.chunk_len} seen earlier"
    return None


def record_chunk(rec: PartialFile, chunk: Chunk, *, offset: int, now: float) -> PartialFile:
    """``rec`` with ``chunk`` counted as received."""
    changes: dict[str, object] = {
        "received": chunkset.add_index(rec.received, chunk.index),
        "bytes_received": rec.bytes_received + len(chunk.data),
        "last_offset": max(rec.last_offset, offset),
        "updated_at": now,
    }
    if chunk.total > 1 and not rec.chunk_len:
        changes["chunk_len"] = len(chunk.data) if not chunk.is_last else chunk.offset // (chunk.total - 1)
    if chunk.is_last:
        changes["size"] = chunk.end
    return rec.derive(**changes)


def has_chunk(rec: PartialFile, index: int) -> bool:
    """True if chunk ``index`` was already counted."""
    return chunkset.contains(rec.received, index)


def is_complete(rec: PartialFile) -> bool:
    """True once every chunk index of the file has been received."""
    return chunkset.count(rec.received) == rec.total


def needs_changelog(rec: PartialFile) -> bool:
    """Whether ``rec`` is worth writing to the changelog.

    The in-memory table sets the commit floor, so after a crash every chunk of an unfinished
    file is read again whether or not its record survived. A durable record only saves
    re-staging the chunks it lists; for a single-chunk file that saves nothing a record would
    not cost too, so its records (and their tombstones) are never written.
    """
    return rec.total > 1
