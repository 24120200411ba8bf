"""Uploading files as chunk messages.

Reads stream from disk one chunk at a time (in threads), so memory is bounded by
``upload_inflight_bytes`` however large a file is. A file counts as uploaded only when the
broker has acknowledged every one of its chunks (``acks=all``, idempotent producer).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aiokafka import AIOKafkaProducer
from mode import Service

from .admin import ensure_topic
from .codec import Chunk, encode_chunk
from .paths import message_key
from .security import aiokafka_security
from .settings import Settings

__all__ = ["ByteBudget", "FileUpload", "Uploader", "chunk_file", "find_files"]

READ_BLOCK = 1 << 20
#: msgpack framing, names and two SHA-512 digests on top of the data.
MESSAGE_OVERHEAD = 4096
DEFAULT_EXCLUDE = r"(^|/)\."  # hidden files and directories, including our temporary files


@dataclass(frozen=True)
class FileUpload:
    """One local file and the relative path it travels under."""

    path: Path
    relpath: PurePosixPath

    @property
    def subdir(self) -> str:
        parent = self.relpath.parent
        return "" if str(parent) == "." else parent.as_posix()


def find_files(
    roots: Iterable[Path], include: str | None = None, exclude: str | None = DEFAULT_EXCLUDE
) -> list[FileUpload]:
    """Files to upload: each file given, and every file under each directory given (its path
    relative to that directory becomes the subdirectory). Regexes match relative posix paths."""
    inc = re.compile(include) if include else None
    exc = re.compile(exclude) if exclude else None
    found: list[FileUpload] = []
    for root in roots:
        if root.is_file():
            candidates: Iterable[tuple[Path, PurePosixPath]] = [(root, PurePosixPath(root.name))]
        elif root.is_dir():
            files = (p for p in sorted(root.rglob("*")) if p.is_file())
            candidates = ((p, PurePosixPath(p.relative_to(root).as_posix())) for p in files)
        else:
            raise FileNotFoundError(f"no such file or directory: {root}")
        for path, rel in candidates:
            text = rel.as_posix()
            if (inc is None or inc.search(text)) and not (exc is not None and exc.search(text)):
                found.append(FileUpload(path, rel))
    return found


def file_digest(path: Path) -> tuple[bytes, int, float]:
    """SHA-512, size and mtime of a file, read in blocks."""
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        while block := f.read(READ_BLOCK):
            digest.update(block)
    return digest.digest(), stat.st_size, stat.st_mtime


def chunk_file(upload: FileUpload, chunk_size: int, file_hash: bytes, size: int, mtime: float) -> Iterator[Chunk]:
    """The chunks of a file, read lazily one at a time. An empty file is one empty chunk."""
    total = max(1, -(-size // chunk_size))
    with open(upload.path, "rb") as f:
        for index in range(1, total + 1):
            offset = (index - 1) * chunk_size
            data = f.read(chunk_size)
            if len(data) != min(chunk_size, size - offset):
                raise OSError(f"{upload.path} changed while being uploaded")
            yield Chunk(
                filename=upload.relpath.name,
                file_hash=file_hash,
                chunk_hash=hashlib.sha512(data).digest(),
                offset=offset,
                index=index,
                total=total,
                subdir=upload.subdir,
                filename_append="",
                data=data,
                mtime=mtime,
            )


class ByteBudget:
    """An async limit on bytes in flight: :meth:`acquire` waits until they fit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = asyncio.Condition()

    async def acquire(self, amount: int) -> None:
        # One item larger than the limit is let through alone rather than waiting forever.
        async with self._changed:
            await self._changed.wait_for(lambda: self.used == 0 or self.used + amount <= self.limit)
            self.used += amount

    async def release(self, amount: int) -> None:
        async with self._changed:
            self.used -= amount
            self._changed.notify_all()


ProgressCallback = Callable[[FileUpload, int], None]


class Uploader(Service):
    """Produces files to the chunk topic; start it, call :meth:`upload`, stop it."""

    def __init__(self, settings: Settings, *, topic: str | None = None, chunk_size: int | None = None,
                 on_bytes: ProgressCallback | None = None, **kwargs: object) -> None:
        self.settings = settings
        self.topic = topic or settings.chunk_topic
        self.chunk_size = chunk_size or settings.chunk_size
        if self.chunk_size + MESSAGE_OVERHEAD > settings.max_fetch_bytes:
            raise ValueError(f"chunk size {self.chunk_size} too large for max_fetch_bytes {settings.max_fetch_bytes}")
        self.on_bytes = on_bytes
        self._budget = ByteBudget(settings.upload_inflight_bytes)
        self._producer: AIOKafkaProducer | None = None
        super().__init__(**kwargs)  # type: ignore[arg-type]

    async def on_start(self) -> None:
        await ensure_topic(self.settings, self.topic)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=max(self.chunk_size + MESSAGE_OVERHEAD, 1 << 20),
            max_request_size=self.settings.max_fetch_bytes,
            request_timeout_ms=60_000,
            **aiokafka_security(self.settings),
        )
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()  # flushes what is still buffered
            self._producer = None

    async def upload(self, upload: FileUpload) -> int:
        """Send every chunk of one file and wait until the broker has acknowledged them all.
        Returns the file size."""
        loop = asyncio.get_running_loop()
        file_hash, size, mtime = await loop.run_in_executor(None, file_digest, upload.path)
        pending = [fut async for fut in self._send_chunks(upload, file_hash, size, mtime)]
        await asyncio.gather(*pending)
        return size

    async def _send_chunks(
        self, upload: FileUpload, file_hash: bytes, size: int, mtime: float
    ) -> AsyncIterator[asyncio.Future]:
        assert self._producer is not None, "Uploader is not started"
        loop = asyncio.get_running_loop()
        chunks = chunk_file(upload, self.chunk_size, file_hash, size, mtime)
        key = message_key(upload.relpath)
        try:
            while (chunk := await loop.run_in_executor(None, next, chunks, None)) is not None:
                value = encode_chunk(chunk)
                await self._budget.acquire(len(value))
                try:
                    delivery = await self._producer.send(self.topic, value, key=key)
                except BaseException:
                    await self._budget.release(len(value))
                    raise
                yield asyncio.ensure_future(self._settle(delivery, upload, len(value), len(chunk.data)))
        finally:
            chunks.close()

    async def _settle(self, delivery: asyncio.Future, upload: FileUpload, size: int, data_len: int) -> None:
        try:
            await delivery
        finally:
            await self._budget.release(size)
        if self.on_bytes is not None:
            self.on_bytes(upload, data_len)
