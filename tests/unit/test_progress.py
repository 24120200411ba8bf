"""Bookkeeping of one upload (tables/progress.py) on PartialFile records (tables/records.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app  # noqa: F401 - import before `tables` (circular import, see test_chunkset.py)
from app.codec import Chunk
from app.uploader import FileUpload, chunk_file, file_digest
from tables import progress
from tables.records import FileState, FinishedFile, PartialFile

L = 16  # chunk length used throughout


def sha(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


def split(content: bytes, chunk_len: int = L, *, mtime: float = 0.0) -> list[Chunk]:
    """Chunks of ``content`` built by hand, independently of the uploader."""
    total = max(1, -(-len(content) // chunk_len))
    file_hash = sha(content)
    out = []
    for index in range(1, total + 1):
        offset = (index - 1) * chunk_len
        data = content[offset : offset + chunk_len]
        out.append(Chunk("f.dat", file_hash, sha(data), offset, index, total, "d", "", data, mtime))
    return out


def make(index: int, total: int, offset: int, data: bytes) -> Chunk:
    return Chunk("f.dat", sha(b"file"), sha(data), offset, index, total, "", "", data)


def start(chunk: Chunk, *, offset: int = 100) -> PartialFile:
    return progress.new_partial("d/f.dat", chunk, partition=2, offset=offset, holder="holder-a", now=1000.0)


def feed(chunks: list[Chunk]) -> PartialFile:
    """Run the chunks through the checks and counting the way the reassembly agent does."""
    rec = start(chunks[0])
    for n, chunk in enumerate(chunks):
        assert progress.geometry_error(rec, chunk) is None, (chunk.index, chunk.offset, len(chunk.data))
        rec = progress.record_chunk(rec, chunk, offset=100 + n, now=1000.0 + n)
    return rec


def uploaded_chunks(tmp_path: Path, content: bytes, chunk_size: int = L) -> list[Chunk]:
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    file_hash, size, mtime = file_digest(path)
    return list(chunk_file(FileUpload(path, PurePosixPath("d/f.dat")), chunk_size, file_hash, size, mtime))


# --- records ------------------------------------------------------------------------------------


def test_new_partial_fields() -> None:
    chunk = Chunk("f.dat", sha(b"whole"), sha(b"x"), 0, 1, 7, "d", "", b"x", 1_700_000_000.5)
    rec = progress.new_partial("d/f.dat", chunk, partition=3, offset=42, holder="h1", now=123.5)
    assert rec.relpath == "d/f.dat"
    assert rec.file_hash == sha(b"whole").hex()
    assert rec.total == 7
    assert rec.partition == 3
    assert rec.first_offset == rec.last_offset == 42
    assert rec.holder == "h1"
    assert rec.state == FileState.RECEIVING
    assert rec.received == [] and rec.done == []
    assert rec.mtime == 1_700_000_000.5
    assert rec.started_at == rec.updated_at == 123.5
    assert rec.chunk_len == 0 and rec.size == -1 and rec.bytes_received == 0
    assert rec.completing_offset == -1 and rec.reason == ""
    assert not progress.is_complete(rec)
    assert not progress.has_chunk(rec, 1)


def test_records_round_trip_through_their_json_serializer() -> None:
    rec = feed(split(os.urandom(3 * L + 5))[:2])
    back = PartialFile.loads(rec.dumps())
    assert back == rec
    assert back.received == [[1, 3]]
    done = FinishedFile(relpath="a", file_hash="00", size=3, partition=1, last_offset=9, outcome="ok", finished_at=1.0)
    assert FinishedFile.loads(done.dumps()) == done


def test_progress_never_mutates_the_record_it_was_given() -> None:
    chunks = split(os.urandom(2 * L))
    rec = start(chunks[0])
    after = progress.record_chunk(rec, chunks[0], offset=100, now=1001.0)
    assert rec.received == [] and rec.bytes_received == 0 and rec.size == -1
    assert after.received == [[1, 2]]
    # a brand-new record is not affected by other records' progress (list defaults stay empty)
    assert start(chunks[1]).received == []
    reset = progress.reset_for_holder(after, "holder-b", 2000.0)
    assert after.received == [[1, 2]] and after.holder == "holder-a"
    assert reset.received == []


# --- record_chunk -------------------------------------------------------------------------------


def test_record_chunk_counts_chunks_and_bytes_in_order() -> None:
    content = os.urandom(3 * L + 5)
    chunks = split(content)
    rec = start(chunks[0])
    for n, chunk in enumerate(chunks[:-1]):
        rec = progress.record_chunk(rec, chunk, offset=100 + n, now=2000.0 + n)
        assert rec.size == -1  # only the last chunk tells the size
        assert rec.chunk_len == L
    assert rec.bytes_received == 3 * L
    assert not progress.is_complete(rec)
    rec = progress.record_chunk(rec, chunks[-1], offset=150, now=3000.0)
    assert rec.size == len(content)
    assert rec.bytes_received == len(content)
    assert rec.last_offset == 150
    assert rec.updated_at == 3000.0
    assert rec.received == [[1, 5]]
    assert progress.is_complete(rec)


def test_last_offset_only_grows() -> None:
    chunks = split(os.urandom(2 * L))
    rec = progress.record_chunk(start(chunks[0]), chunks[0], offset=500, now=1.0)
    rec = progress.record_chunk(rec, chunks[1], offset=300, now=2.0)
    assert rec.last_offset == 500


def test_chunk_len_is_implied_by_a_last_chunk_that_arrives_first() -> None:
    chunks = split(os.urandom(3 * L + 5))
    rec = progress.record_chunk(start(chunks[-1]), chunks[-1], offset=100, now=1.0)
    assert rec.chunk_len == L
    assert rec.size == 3 * L + 5
    rec = progress.record_chunk(rec, chunks[1], offset=101, now=2.0)
    assert rec.chunk_len == L  # not overwritten by later chunks


def test_single_chunk_file_keeps_chunk_len_zero() -> None:
    (chunk,) = split(b"tiny")
    rec = progress.record_chunk(start(chunk), chunk, offset=1, now=1.0)
    assert rec.chunk_len == 0
    assert rec.size == 4
    assert progress.is_complete(rec)


@given(
    content=st.binary(max_size=12 * L),
    order=st.randoms(use_true_random=False),
    duplicates=st.lists(st.integers(0, 100), max_size=20),
)
@settings(max_examples=200)
def test_complete_after_all_indices_in_any_order_with_duplicates(content: bytes, order, duplicates: list[int]) -> None:  # type: ignore[no-untyped-def]
    chunks = split(content)
    arrivals = list(chunks) + [chunks[d % len(chunks)] for d in duplicates]
    order.shuffle(arrivals)
    rec = start(arrivals[0])
    seen: set[int] = set()
    for n, chunk in enumerate(arrivals):
        assert not progress.is_complete(rec)
        if progress.has_chunk(rec, chunk.index):  # what the agent does with a redelivery
            assert chunk.index in seen
            continue
        assert chunk.index not in seen
        assert progress.geometry_error(rec, chunk) is None
        rec = progress.record_chunk(rec, chunk, offset=100 + n, now=float(n))
        seen.add(chunk.index)
        if len(seen) == len(chunks):
            break
    assert progress.is_complete(rec)
    assert rec.bytes_received == len(content)
    assert rec.size == len(content)
    assert rec.received == [[1, len(chunks) + 1]]
    assert rec.chunk_len == (L if len(chunks) > 1 else 0)


# --- geometry -----------------------------------------------------------------------------------

SIZES = [0, 1, L - 1, L, L + 1, 2 * L - 1, 2 * L, 2 * L + 1, 5 * L - 1, 5 * L, 5 * L + 1]


@pytest.mark.parametrize("size", SIZES)
def test_uploaded_files_pass_geometry_in_order_and_reversed(tmp_path: Path, size: int) -> None:
    content = os.urandom(size)
    chunks = uploaded_chunks(tmp_path, content)
    assert chunks == split(content, mtime=chunks[0].mtime)  # the uploader chunks exactly like the model
    for arrival in (chunks, chunks[::-1]):
        rec = feed(arrival)
        assert progress.is_complete(rec)
        assert rec.size == size
        assert rec.bytes_received == size
        assert rec.chunk_len == (L if len(chunks) > 1 else 0)


@given(content=st.binary(max_size=8 * L + 3), chunk_size=st.integers(1, 3 * L), order=st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_uniform_chunking_passes_geometry(tmp_path: Path, content: bytes, chunk_size: int, order) -> None:  # type: ignore[no-untyped-def]
    chunks = uploaded_chunks(tmp_path, content, chunk_size)
    order.shuffle(chunks)
    rec = feed(chunks)
    assert progress.is_complete(rec)
    assert rec.size == len(content)


def test_empty_file_is_one_empty_chunk_that_completes(tmp_path: Path) -> None:
    chunks = uploaded_chunks(tmp_path, b"")
    assert len(chunks) == 1
    rec = feed(chunks)
    assert progress.is_complete(rec)
    assert rec.size == 0


@pytest.mark.parametrize(
    ("chunk", "why"),
    [
        (make(1, 1, 5, b"abc"), "single chunk"),
        (make(1, 1, 1, b""), "single chunk"),
        (make(2, 3, L - 1, bytes(L)), "does not match its length"),
        (make(2, 3, L + 1, bytes(L)), "does not match its length"),
        (make(1, 3, L, bytes(L)), "does not match its length"),
        (make(1, 2, 0, b""), "empty but not last"),
        (make(2, 3, L, b""), "empty but not last"),
        (make(2, 2, L, bytes(L + 1)), "longer than the implied chunk length"),
        (make(3, 3, 2 * L, bytes(L + 1)), "longer than the implied chunk length"),
        (make(2, 2, 0, b"x"), "longer than the implied chunk length"),
        (make(2, 2, 0, b""), "longer than the implied chunk length"),
        (make(3, 3, 2 * L + 1, b"x"), "not a multiple"),
    ],
    ids=repr,
)
def test_geometry_rejects_impossible_chunks(chunk: Chunk, why: str) -> None:
    error = progress.geometry_error(start(chunk), chunk)
    assert error is not None
    assert why in error


def test_geometry_rejects_a_chunk_length_other_than_the_recorded_one() -> None:
    first = make(1, 4, 0, bytes(L))
    rec = progress.record_chunk(start(first), first, offset=1, now=1.0)
    assert rec.chunk_len == L
    shorter = make(2, 4, L // 2, bytes(L // 2))  # consistent on its own, not with chunk 1
    assert progress.geometry_error(start(shorter), shorter) is None
    error = progress.geometry_error(rec, shorter)
    assert error is not None and "differs" in error
    longer_last = make(4, 4, 3 * (L + 2), bytes(3))  # implies a chunk length of L + 2
    assert progress.geometry_error(start(longer_last), longer_last) is None
    error = progress.geometry_error(rec, longer_last)
    assert error is not None and "differs" in error
    assert progress.geometry_error(rec, make(4, 4, 3 * L, bytes(L))) is None


def test_geometry_rejects_non_last_chunks_disagreeing_with_a_last_chunk_seen_first() -> None:
    last = make(3, 3, 2 * L, b"tail")
    rec = progress.record_chunk(start(last), last, offset=1, now=1.0)
    assert progress.geometry_error(rec, make(1, 3, 0, bytes(L))) is None
    assert progress.geometry_error(rec, make(1, 3, 0, bytes(L - 1))) is not None


# --- reset_for_holder ---------------------------------------------------------------------------


def test_reset_for_holder_keeps_first_offset_and_clears_progress() -> None:
    chunks = split(os.urandom(3 * L))
    rec = feed(chunks[:2]).derive(state=FileState.COMPLETE, done=["directory"], completing_offset=130, reason="x")
    reset = progress.reset_for_holder(rec, "holder-b", 5000.0)
    assert reset.first_offset == rec.first_offset == 100
    assert (reset.relpath, reset.file_hash, reset.total, reset.partition) == (
        rec.relpath,
        rec.file_hash,
        rec.total,
        rec.partition,
    )
    assert reset.holder == "holder-b"
    assert reset.state == FileState.RECEIVING
    assert reset.received == [] and reset.done == []
    assert reset.bytes_received == 0
    assert reset.completing_offset == -1
    assert reset.reason == ""
    assert reset.updated_at == 5000.0
    assert reset.started_at == rec.started_at
    assert not progress.is_complete(reset)
    assert not progress.has_chunk(reset, 1)
    # chunks read again from the floor are counted afresh
    for n, chunk in enumerate(chunks):
        assert not progress.has_chunk(reset, chunk.index)
        assert progress.geometry_error(reset, chunk) is None
        reset = progress.record_chunk(reset, chunk, offset=100 + n, now=6000.0)
    assert progress.is_complete(reset)
    assert reset.bytes_received == 3 * L
