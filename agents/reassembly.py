"""The reassembly agent: chunks in, verified files out.

Each chunk is checked, written into the worker's staging area and counted in the
``partial-files`` table; the event is acked right away. The table record of an unfinished
file sets its partition's commit floor (:mod:`app.offsets`), so after a crash or a move to
another host every chunk of it is read again from the chunk topic: tables hold metadata only,
and each chunk byte is written to Kafka once. A complete file is verified against its SHA-512
and announced on the files topic for the processor agents.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from faust.types import EventT, Message

from app.application import app
from app.codec import Chunk, ChunkDecodeError, decode_chunk
from app.paths import UnsafePathError, file_key, message_key, output_relpath
from app.staging import Stored
from app.topics import CompletedFile, chunk_topic, files_topic
from tables import FileState, PartialFile, chunkset, finished_files, partial_files, progress, save_partial

from .dead_letters import dead_letter_file, dead_letter_message
from .release import forget, forget_finished

__all__ = ["commit_floor", "expire_records", "handle_chunk", "reassembly_agent"]

log = logging.getLogger(__name__)


@app.agent(chunk_topic, name="reassembly")
async def reassembly_agent(stream: AsyncIterator[EventT]) -> None:
    """Reassemble every file of the chunk topic: files concurrently, the chunks of each in
    order (:mod:`app.lanes`); a message is acked once taken and pinned until it is durable.

    Bad input never raises (it is dead-lettered). Anything else (a full disk, a broken
    producer) crashes the worker; the offset stays pinned, so nothing past it is committed and
    a restarted worker handles the message again.
    """
    await app.lanes(lambda event: handle_chunk(event.message), lanes=app.settings.reassembly_lanes,
                    depth=app.settings.lane_depth).consume(stream)


def commit_floor(partition: int) -> int | None:
    """Lowest first offset of an unfinished file in ``partition`` of the chunk topic."""
    return min((rec.first_offset for rec in partial_files.values() if rec.partition == partition), default=None)


app.offset_floors.register(chunk_topic.get_topic_name(), commit_floor)


@partial_files.on_recover
async def sweep_staging() -> None:
    """After every recovery (start, rebalance) the table holds exactly this worker's partitions:
    staged bytes of any other file (moved to another worker, or left by a crash) are garbage."""
    held = {key for key, rec in partial_files.items() if rec.holder == app.staging.holder}
    if removed := await app.run_blocking(app.staging.sweep, held):
        log.info("freed %d staged file(s) this worker no longer owns", removed)


async def handle_chunk(message: Message) -> None:
    """Take one chunk message to its durable effect; bad input is dead-lettered, never raised."""
    try:
        chunk = decode_chunk(message.value, verify=False)  # the SHA-512 is checked off the loop
        relpath = str(output_relpath(chunk.subdir, chunk.filename, chunk.filename_append))
    except ChunkDecodeError as exc:
        await dead_letter_message(message, exc.reason, exc.detail)
        return
    except UnsafePathError as exc:
        await dead_letter_message(message, "unsafe_path", str(exc))
        return
    expected_key = message_key(relpath)
    if message.key != expected_key:
        # Producers that key by chunk (OpenMSIStream) scatter a file over partitions and lanes;
        # route the chunk to the partition and lane that own its file.
        app.stats.count("chunks_rekeyed")
        await chunk_topic.send(key=expected_key, value=message.value, force=True)
        return
    key = file_key(relpath, chunk.file_hash, chunk.total)
    finished = finished_files.get(key)
    if finished is not None and message.offset <= finished.last_offset:
        app.stats.count("chunks_redelivered")
        return
    await _advance(key, relpath, chunk, message)


async def _advance(key: str, relpath: str, chunk: Chunk, message: Message) -> None:
    staging = app.staging
    now = time.time()
    rec = partial_files.get(key)
    if rec is not None and not _held_here(key, rec):
        log.info("rebuilding %s from the chunk topic (staged bytes not on this worker)", relpath)
        rec = progress.reset_for_holder(rec, staging.holder, now)
    if rec is None:
        rec = progress.new_partial(relpath, chunk, partition=message.partition, offset=message.offset,
                                   holder=staging.holder, now=now)
    if rec.state == FileState.COMPLETE:
        if message.offset == rec.completing_offset:
            await _announce(key, rec)  # the announcement may not have survived a crash
        return
    if progress.has_chunk(rec, chunk.index):
        app.stats.count("chunks_duplicate")
        return
    # A rejected file (FAILED) still counts its chunks, so it is forgotten once all have passed.
    counted = progress.record_chunk(rec, chunk, offset=message.offset, now=now)
    if rec.state == FileState.RECEIVING:
        rec = await _store(key, counted, chunk, message, completes=progress.is_complete(counted))
    else:
        rec = counted
    if progress.is_complete(rec):
        await _complete(key, rec, message.offset)
    else:
        save_partial(key, rec)


async def _store(key: str, rec: PartialFile, chunk: Chunk, message: Message, *, completes: bool) -> PartialFile:
    """Write a chunk into the staging area (sealing the file if the chunk ``completes`` it, with
    ``rec`` already counting the chunk), or reject the chunk and with it its file."""
    error = progress.geometry_error(rec, chunk)
    if error is not None:
        await dead_letter_message(message, "impossible_chunk", error)
        return await _fail(key, rec, "impossible_chunk", error)
    seal = (bytes.fromhex(rec.file_hash), rec.size) if completes else None
    stored = await app.run_blocking(app.staging.store, key, chunk, seal, sync=progress.needs_changelog(rec))
    if stored is Stored.CORRUPT_CHUNK:
        error = f"chunk {chunk.index}/{chunk.total} of {rec.relpath} is corrupt"
        await dead_letter_message(message, "chunk_hash_mismatch", error)
        return await _fail(key, rec, "chunk_hash_mismatch", error)
    if stored is Stored.CORRUPT_FILE:
        return await _fail(key, rec, "file_hash_mismatch", "SHA-512 of the reassembled file does not match")
    app.stats.count("chunks_received")
    app.stats.count("bytes_received", len(chunk.data))
    return rec


def _held_here(key: str, rec: PartialFile) -> bool:
    """Whether this worker's staging area really has what ``rec`` says was received."""
    staging = app.staging
    if rec.holder != staging.holder:
        return False
    if rec.state == FileState.COMPLETE:
        return staging.has_complete(key)
    return rec.state == FileState.FAILED or not rec.received or staging.has_partial(key)


async def _complete(key: str, rec: PartialFile, offset: int) -> None:
    """Every chunk has passed: announce the sealed file, or forget a rejected one (it can no
    longer hold the commit floor)."""
    if rec.state == FileState.FAILED:
        forget(key, rec, outcome=rec.reason)
        return
    rec = rec.derive(state=FileState.COMPLETE, completing_offset=offset)
    save_partial(key, rec)
    app.stats.count("files_completed")
    await _announce(key, rec)


async def _fail(key: str, rec: PartialFile, reason: str, detail: str) -> PartialFile:
    await app.run_blocking(app.staging.discard, key)
    await dead_letter_file(rec.relpath, reason, detail, file_hash=rec.file_hash, partition=rec.partition,
                           first_offset=rec.first_offset)
    return rec.derive(state=FileState.FAILED, reason=reason)


async def _announce(key: str, rec: PartialFile) -> None:
    # force=True: not attached to the event, which would hold it back until the commit
    # passes this offset, and the commit floor keeps that from happening while rec exists.
    await files_topic.send(
        key=rec.relpath,
        value=CompletedFile(key=key, relpath=rec.relpath, file_hash=rec.file_hash, size=rec.size, mtime=rec.mtime,
                            holder=rec.holder, partition=rec.partition, first_offset=rec.first_offset),
        partition=rec.partition,
        force=True,
    )


@app.timer(interval=min(60.0, max(0.5, app.settings.abandon_after / 4)))
async def expire_records() -> None:
    """Give up on uploads that stopped sending chunks, so they stop holding the commit floor,
    and forget finished files after their retention."""
    now = time.time()
    active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == chunk_topic.get_topic_name()}
    expired = [(k, r) for k, r in finished_files.items()
               if r.partition in active and r.finished_at < now - app.settings.finished_retention]
    for key, finished in expired:
        forget_finished(key, finished)
    deadline = now - app.settings.abandon_after
    stale = [(k, r) for k, r in partial_files.items()
             if r.partition in active and r.state != FileState.COMPLETE and r.updated_at < deadline]
    for key, rec in stale:
        if rec.state == FileState.RECEIVING:
            await dead_letter_file(rec.relpath, "abandoned", f"no chunk for {app.settings.abandon_after:.0f} s",
                                   received=chunkset.count(rec.received), total=rec.total)
        forget(key, rec, outcome="abandoned")
