"""Processor agents: each gets every completed file once it is staged and verified.

``@file_processor("name")`` turns ``async def fn(file: CompletedFile, path: Path) -> None``
into a Faust agent on the files topic, which runs it on up to ``processor_lanes`` files at
once (the versions of one path in order, see :mod:`app.lanes`). The staged file is released
(and its commit floor lifted) once every registered processor has finished with it,
successfully or, after ``processor_attempts`` tries, by dead-lettering it. Processors must be idempotent: after a
crash a file may be offered again to a processor whose success was not yet recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from faust.types import EventT

from app.application import app
from app.topics import CompletedFile, files_topic
from tables import FileState, partial_files, save_partial

from .dead_letters import dead_letter_file
from .release import forget

__all__ = ["ProcessorFn", "file_processor", "registered_processors"]

log = logging.getLogger(__name__)

ProcessorFn = Callable[[CompletedFile, Path], Awaitable[None]]
_RETRY_BASE_DELAY = 0.5

_registry: dict[str, ProcessorFn] = {}


def registered_processors() -> list[str]:
    """Names of the processors every file waits for."""
    return sorted(_registry)


def file_processor(name: str) -> Callable[[ProcessorFn], ProcessorFn]:
    """Register ``fn`` as the processor ``name``, run by its own agent on the files topic."""

    def register(fn: ProcessorFn) -> ProcessorFn:
        if name in _registry:
            raise ValueError(f"a file processor named {name!r} is already registered")
        _registry[name] = fn

        async def processor_agent(stream: AsyncIterator[EventT]) -> None:
            # Keyed by path: the versions of one path are processed in order, other files concurrently.
            await app.lanes(lambda event: run_processor(name, fn, event.value), lanes=app.settings.processor_lanes,
                            depth=app.settings.lane_depth).consume(stream)

        processor_agent.__doc__ = fn.__doc__
        app.agent(files_topic, name=f"processor.{name}")(processor_agent)
        return fn

    return register


async def run_processor(name: str, fn: ProcessorFn, file: CompletedFile) -> None:
    """Run one processor on one announced file, unless that already happened or the file's
    bytes are on another worker (then it is rebuilt there and announced again)."""
    rec = partial_files.get(file.key)
    if rec is None or rec.state != FileState.COMPLETE or name in rec.done:
        return
    if rec.holder != app.staging.holder or not app.staging.has_complete(file.key):
        return
    path = app.staging.complete_path(file.key)
    attempts = app.settings.processor_attempts
    for attempt in range(1, attempts + 1):
        try:
            await fn(file, path)
        except Exception as exc:  # a processor's failure must not stop the worker
            log.warning("processor %s failed on %s (attempt %d/%d): %r", name, file.relpath, attempt, attempts, exc)
            if attempt == attempts:
                await dead_letter_file(file.relpath, "processor_failed", f"{name}: {exc!r}", processor=name,
                                       file_hash=file.file_hash)
            else:
                await asyncio.sleep(_RETRY_BASE_DELAY * 2 ** (attempt - 1))
        else:
            app.stats.count(f"processed.{name}")
            if app.settings.journal:
                await app.run_blocking(_journal, app.settings.journal, name, file)
            break
    await _mark_done(name, file)


def _journal(path: str, processor: str, file: CompletedFile) -> None:
    entry = {"time": time.time(), "processor": processor, "holder": app.staging.holder, "relpath": file.relpath,
             "file_hash": file.file_hash, "size": file.size, "first_offset": file.first_offset}
    with open(path, "a") as f:  # one short write per line: appends from several workers do not interleave
        f.write(json.dumps(entry) + "\n")


async def _mark_done(name: str, file: CompletedFile) -> None:
    rec = partial_files.get(file.key)  # read again: other processors may have moved on meanwhile
    if rec is None or rec.state != FileState.COMPLETE:
        return
    done = sorted({*rec.done, name})
    if set(done) >= set(_registry):
        forget(file.key, rec, outcome="processed")
        app.stats.count("files_processed")
    else:
        save_partial(file.key, rec.derive(done=done))
