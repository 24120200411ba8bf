"""The chunk wire format, byte-compatible with OpenMSIStream's DataFileChunk.

A chunk message value is a msgpack array (``use_bin_type=True``) of ten items::

    [filename, file_sha512, chunk_sha512, write_offset, chunk_index (1-based),
     total_chunks, subdir (posix, "" at the root), filename_append, data, mtime]

Older producers send only the first nine. Decoding is strict and total: any
input yields either a :class:`Chunk` or a :class:`ChunkDecodeError` whose
``reason`` names what is wrong.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import msgpack

__all__ = [
    "MAX_TOTAL_CHUNKS",
    "Chunk",
    "ChunkDecodeError",
    "decode_chunk",
    "encode_chunk",
]

SHA512_SIZE = 64
#: Far above any real upload (2**24 chunks of 512 KiB is 8 TiB), low enough that
#: bookkeeping for a forged total cannot exhaust memory.
MAX_TOTAL_CHUNKS = 1 << 24


class ChunkDecodeError(ValueError):
    """A message value that is not a valid chunk; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of one file version, as carried by one Kafka message."""

    filename: str
    file_hash: bytes
    chunk_hash: bytes
    offset: int
    index: int
    total: int
    subdir: str
    filename_append: str
    data: bytes
    mtime: float = 0.0

    @property
    def end(self) -> int:
        """Offset just past this chunk's data."""
        return self.offset + len(self.data)

    @property
    def is_last(self) -> bool:
        """The last chunk tells the file size: its offset plus its length."""
        return self.index == self.total


def encode_chunk(chunk: Chunk) -> bytes:
    """Serialize a chunk exactly as OpenMSIStream's DataFileChunkSerializer does."""
    return msgpack.packb(
        [
            chunk.filename,
            chunk.file_hash,
            chunk.chunk_hash,
            chunk.offset,
            chunk.index,
            chunk.total,
            chunk.subdir,
            chunk.filename_append,
            chunk.data,
            float(chunk.mtime),
        ],
        use_bin_type=True,
    )


def decode_chunk(value: bytes | None, *, verify: bool = True) -> Chunk:
    """Parse and check one message value; raise :class:`ChunkDecodeError` on anything invalid.

    With ``verify`` the SHA-512 of the data is compared with the chunk hash.
    """
    if not value:
        raise ChunkDecodeError("empty", "message has no value")
    try:
        items = msgpack.unpackb(value, raw=True, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ChunkDecodeError("not_msgpack", f"{type(exc).__name__}: {exc}") from None
    if not isinstance(items, list) or len(items) not in (9, 10):
        size = len(items) if isinstance(items, list) else type(items).__name__
        raise ChunkDecodeError("bad_shape", f"expected an array of 9 or 10 items, got {size}")
    filename = _text(items[0], "filename")
    file_hash = _digest(items[1], "file_hash")
    chunk_hash = _digest(items[2], "chunk_hash")
    offset = _integer(items[3], "offset")
    index = _integer(items[4], "index")
    total = _integer(items[5], "total")
    subdir = _text(items[6], "subdir")
    filename_append = _text(items[7], "filename_append")
    data = items[8]
    if not isinstance(data, bytes):
        raise ChunkDecodeError("bad_field", f"data must be bytes, got {type(data).__name__}")
    mtime = 0.0
    if len(items) == 10:
        mtime = items[9]
        if isinstance(mtime, bool) or not isinstance(mtime, (int, float)) or not math.isfinite(mtime):
            raise ChunkDecodeError("bad_field", f"mtime must be a finite number, got {mtime!r}")
    if not 1 <= total <= MAX_TOTAL_CHUNKS:
        raise ChunkDecodeError("impossible_chunk", f"total chunks {total} out of range")
    if not 1 <= index <= total:
        raise ChunkDecodeError("impossible_chunk", f"chunk index {index} not in 1..{total}")
    if offset < 0:
        raise ChunkDecodeError("impossible_chunk", f"negative offset {offset}")
    if not filename:
        raise ChunkDecodeError("bad_field", "empty filename")
    if verify and hashlib.sha512(data).digest() != chunk_hash:
        raise ChunkDecodeError("chunk_hash_mismatch", f"chunk {index}/{total} of {filename!r} is corrupt")
    return Chunk(
        filename=filename,
        file_hash=file_hash,
        chunk_hash=chunk_hash,
        offset=offset,
        index=index,
        total=total,
        subdir=subdir,
        filename_append=filename_append,
        data=data,
        mtime=float(mtime),
    )


def _text(value: object, name: str) -> str:
    if not isinstance(value, bytes):
        raise ChunkDecodeError("bad_field", f"{name} must be a string, got {type(value).__name__}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ChunkDecodeError("bad_field", f"{name} is not valid UTF-8") from None


def _digest(value: object, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != SHA512_SIZE:
        raise ChunkDecodeError("bad_field", f"{name} must be a 64-byte SHA-512 digest")
    return value


def _integer(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChunkDecodeError("bad_field", f"{name} must be an integer, got {type(value).__name__}")
    return value
