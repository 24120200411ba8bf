"""The worker's local staging area: partial files being written chunk by chunk, and verified
files waiting for their processors.

Every method blocks (disk I/O, hashing); agents call them through ``app.run_blocking``.
One agent drives one file at a time, so no two calls touch the same key concurrently.
"""

from __future__ import annotations

import enum
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from .codec import Chunk
from .paths import staging_name

__all__ = ["StagingArea", "Stored"]

READ_BLOCK = 1 << 20


@dataclass
class _RunningHash:
    """SHA-512 of a file's prefix, kept while chunks arrive in order, so verifying a
    complete file usually needs no second read of it."""

    digest: hashlib._Hash
    next_offset: int


class Stored(enum.Enum):
    """What :meth:`StagingArea.store` did with a chunk."""

    WRITTEN = "written"
    SEALED = "sealed"  #: written, and the file it completed is verified, durable and complete
    CORRUPT_CHUNK = "corrupt_chunk"  #: the chunk's data does not match its SHA-512; nothing written
    CORRUPT_FILE = "corrupt_file"  #: the completed file does not match its SHA-512 or size; discarded


class StagingArea:
    """Partial and complete files under ``root``, identified by an id that names this staging
    area in table records: a record whose holder is another id has its bytes elsewhere."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial_dir = root / "partial"
        self.complete_dir = root / "complete"
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self.complete_dir.mkdir(parents=True, exist_ok=True)
        self.holder = self._load_holder_id()
        self._hashes: dict[str, _RunningHash] = {}

    def _load_holder_id(self) -> str:
        path = self.root / "holder-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            holder = uuid.uuid4().hex
            tmp = path.with_suffix(".tmp")
            tmp.write_text(holder)
            os.replace(tmp, path)
            return holder

    def partial_path(self, key: str) -> Path:
        return self.partial_dir / staging_name(key)

    def complete_path(self, key: str) -> Path:
        return self.complete_dir / staging_name(key)

    def has_partial(self, key: str) -> bool:
        return self.partial_path(key).exists()

    def has_complete(self, key: str) -> bool:
        return self.complete_path(key).exists()

    def store(self, key: str, chunk: Chunk, seal: tuple[bytes, int] | None = None, *, sync: bool = True) -> Stored:
        """Write one chunk and, when ``seal`` gives the file's ``(sha512, size)`` because this chunk
        completes it, seal the file too (one trip to the I/O pool per completed small file).
        ``sync=False`` skips making a sealed file durable, for files whose table record would
        not survive a crash either (its bytes are rebuilt from the chunk topic)."""
        if seal is not None and chunk.offset == 0 and len(chunk.data) == seal[1]:
            return self._store_whole(key, chunk, seal[0], sync)
        if not self.write_chunk(key, chunk):
            return Stored.CORRUPT_CHUNK
        if seal is None:
            return Stored.WRITTEN
        return Stored.SEALED if self.seal(key, *seal, sync=sync) else Stored.CORRUPT_FILE

    def _store_whole(self, key: str, chunk: Chunk, file_hash: bytes, sync: bool) -> Stored:
        """A file in one chunk: verified in memory (its two digests are one) and written straight
        into the complete area."""
        digest = hashlib.sha512(chunk.data).digest()
        if digest != chunk.chunk_hash:
            return Stored.CORRUPT_CHUNK
        if digest != file_hash:
            return Stored.CORRUPT_FILE
        if chunk.total > 1:  # its other chunks were empty, and one of them made a partial file
            self._hashes.pop(key, None)
            self.partial_path(key).unlink(missing_ok=True)
        fd = os.open(self.complete_path(key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_at(fd, chunk.data, 0)
            if sync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        return Stored.SEALED

    def write_chunk(self, key: str, chunk: Chunk) -> bool:
        """Verify the chunk's SHA-512 and write its data at its offset; False if it is corrupt."""
        if hashlib.sha512(chunk.data).digest() != chunk.chunk_hash:
            return False
        fd = os.open(self.partial_path(key), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            _write_at(fd, chunk.data, chunk.offset)
        finally:
            os.close(fd)
        running = self._hashes.get(key)
        if running is None and chunk.offset == 0:
            running = self._hashes[key] = _RunningHash(hashlib.sha512(), 0)
        if running is not None:
            if running.next_offset == chunk.offset:
                running.digest.update(chunk.data)
                running.next_offset = chunk.end
            else:
                # a gap, or bytes already hashed written again: read the file when sealing
                del self._hashes[key]
        return True

    def seal(self, key: str, file_hash: bytes, size: int, *, sync: bool = True) -> bool:
        """Check the staged file's length and SHA-512; if right, make it durable (unless not
        ``sync``) and move it to the complete area. Returns False (and keeps nothing) on a mismatch."""
        partial = self.partial_path(key)
        running = self._hashes.pop(key, None)
        with open(partial, "a+b") as f:  # "a" creates the file of a zero-length upload
            fd = f.fileno()
            ok = os.fstat(fd).st_size == size
            if ok:
                in_memory = running is not None and running.next_offset == size
                ok = (running.digest.digest() if in_memory else self._hash_fd(fd)) == file_hash
            if ok and sync:
                os.fdatasync(fd)
        if not ok:
            self.discard(key)
            return False
        # No directory fsync: if a crash loses this rename, the record says complete but the
        # file is not in complete/, and the worker rebuilds it from the chunk topic.
        os.replace(partial, self.complete_path(key))
        return True

    @staticmethod
    def _hash_fd(fd: int) -> bytes:
        digest = hashlib.sha512()
        offset = 0
        while block := os.pread(fd, READ_BLOCK, offset):
            digest.update(block)
            offset += len(block)
        return digest.digest()

    def sweep(self, keep: set[str]) -> int:
        """Delete staged files of every key not in ``keep``; return how many were deleted."""
        names = {staging_name(key) for key in keep}
        stale = [p for d in (self.partial_dir, self.complete_dir) for p in d.iterdir() if p.name not in names]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def discard(self, key: str) -> None:
        """Remove every local trace of a file version."""
        self._hashes.pop(key, None)
        for path in (self.partial_path(key), self.complete_path(key)):
            path.unlink(missing_ok=True)


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
