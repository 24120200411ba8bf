"""Synthetic files for the resource measurements: bytes regenerated on demand from a seed.

No source file is ever written: each chunk's bytes come from a PRNG seeded with the file's seed
and the chunk index, so the whole-file SHA-512 can be computed in a first pass and the chunk
messages produced in a second pass, in any order (interleaved across files, last chunk held
back), with the same bytes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from app.codec import Chunk, encode_chunk
from app.paths import message_key

__all__ = ["Message", "SyntheticFile", "interleaved", "last_chunks", "sha512_of_path", "synthetic_set"]

READ_BLOCK = 4 << 20
MTIME = 1_700_000_000.0

#: ``(key, value)`` of one chunk message.
Message = tuple[bytes, bytes]


@dataclass(frozen=True)
class SyntheticFile:
    """A file of ``size`` pseudo-random bytes travelling as ``relpath`` in ``chunk_size`` chunks."""

    relpath: str
    size: int
    seed: int
    chunk_size: int = 524_288

    @property
    def total(self) -> int:
        """Number of chunks (an empty file is one empty chunk)."""
        return max(1, -(-self.size // self.chunk_size))

    @property
    def key(self) -> bytes:
        return message_key(self.relpath)

    def chunk_bytes(self, index: int) -> bytes:
        """The data of chunk ``index`` (1-based), the same on every call."""
        offset = (index - 1) * self.chunk_size
        length = max(0, min(self.chunk_size, self.size - offset))
        return random.Random(f"{self.seed}:{self.relpath}:{index}").randbytes(length)

    def digest(self) -> bytes:
        """SHA-512 of the whole file (first pass: generates every byte once)."""
        h = hashlib.sha512()
        for index in range(1, self.total + 1):
            h.update(self.chunk_bytes(index))
        return h.digest()

    def message(self, index: int, file_hash: bytes) -> Message:
        """The chunk message ``index`` exactly as ``filestream upload`` would send it."""
        data = self.chunk_bytes(index)
        pure = PurePosixPath(self.relpath)
        subdir = "" if str(pure.parent) == "." else pure.parent.as_posix()
        chunk = Chunk(filename=pure.name, file_hash=file_hash, chunk_hash=hashlib.sha512(data).digest(),
                      offset=(index - 1) * self.chunk_size, index=index, total=self.total, subdir=subdir,
                      filename_append="", data=data, mtime=MTIME)
        return self.key, encode_chunk(chunk)

    def messages(self, file_hash: bytes, indices: Iterable[int] | None = None) -> Iterator[Message]:
        """Chunk messages in ``indices`` order (all, in order, by default)."""
        for index in indices if indices is not None else range(1, self.total + 1):
            yield self.message(index, file_hash)


def synthetic_set(prefix: str, count: int, size: int, seed: int, chunk_size: int) -> list[SyntheticFile]:
    """``count`` files ``<prefix>-NN.bin`` of ``size`` bytes each."""
    return [SyntheticFile(f"{prefix}-{i:03d}.bin", size, seed + i, chunk_size) for i in range(count)]


def interleaved(files: Sequence[SyntheticFile], hashes: Sequence[bytes], *, hold_last: bool) -> Iterator[Message]:
    """Chunk ``i`` of every file, then chunk ``i + 1`` of every file...: concurrent uploads.

    With ``hold_last`` the last chunk of each file is left out (send them with :func:`last_chunks`).
    """
    rounds = max(f.total for f in files)
    for index in range(1, rounds + 1):
        for f, h in zip(files, hashes, strict=True):
            if index < f.total or (index == f.total and not hold_last):
                yield f.message(index, h)


def last_chunks(files: Sequence[SyntheticFile], hashes: Sequence[bytes]) -> Iterator[Message]:
    """The last chunk of every file."""
    for f, h in zip(files, hashes, strict=True):
        yield f.message(f.total, h)


def sha512_of_path(path: Path) -> bytes:
    """SHA-512 of a file on disk, read in blocks."""
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            h.update(block)
    return h.digest()
