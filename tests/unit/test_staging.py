"""The worker's local staging area (app/staging.py) on a temporary directory."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.codec import Chunk
from app.staging import StagingArea, Stored

KEY = "d/file.dat#0123456789abcdef0123456789abcdef#3"


def sha(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


def split(content: bytes, chunk_len: int) -> list[Chunk]:
    total = max(1, -(-len(content) // chunk_len))
    out = []
    for index in range(1, total + 1):
        offset = (index - 1) * chunk_len
        data = content[offset : offset + chunk_len]
        out.append(Chunk("file.dat", sha(content), sha(data), offset, index, total, "d", "", data))
    return out


def local_files(staging: StagingArea) -> list[str]:
    return sorted(os.listdir(staging.partial_dir)) + sorted(os.listdir(staging.complete_dir))


@pytest.fixture
def staging(tmp_path: Path) -> StagingArea:
    return StagingArea(tmp_path / "staging")


def test_in_order_chunks_seal_into_the_exact_file(staging: StagingArea) -> None:
    content = os.urandom(10_000)
    for chunk in split(content, 1024):
        assert staging.write_chunk(KEY, chunk)
        assert staging.has_partial(KEY)
    assert not staging.has_complete(KEY)
    assert staging.seal(KEY, sha(content), len(content))
    assert staging.complete_path(KEY).read_bytes() == content
    assert not staging.has_partial(KEY)
    assert not staging.partial_path(KEY).exists()
    assert staging.has_complete(KEY)
    assert local_files(staging) == [staging.complete_path(KEY).name]


@given(
    content=st.binary(max_size=3000),
    chunk_len=st.integers(1, 700),
    seed=st.integers(0, 2**32),
    duplicates=st.lists(st.integers(0, 1000), max_size=8),
)
@settings(max_examples=60, deadline=None)
def test_shuffled_chunks_with_duplicates_still_seal(
    content: bytes, chunk_len: int, seed: int, duplicates: list[int]
) -> None:
    chunks = split(content, chunk_len)
    arrivals = chunks + [chunks[d % len(chunks)] for d in duplicates]
    random.Random(seed).shuffle(arrivals)
    with tempfile.TemporaryDirectory() as root:
        staging = StagingArea(Path(root))
        for chunk in arrivals:
            assert staging.write_chunk(KEY, chunk)
        assert staging.seal(KEY, sha(content), len(content))
        assert staging.complete_path(KEY).read_bytes() == content
        assert not staging.has_partial(KEY)


def test_running_hash_is_dropped_after_a_gap_then_file_is_read(staging: StagingArea) -> None:
    content = os.urandom(4 * 100)
    c1, c2, c3, c4 = split(content, 100)
    for chunk in (c1, c3, c2, c4, c1):
        assert staging.write_chunk(KEY, chunk)
    assert staging.seal(KEY, sha(content), len(content))
    assert staging.complete_path(KEY).read_bytes() == content


def test_wrong_hash_after_in_order_writes_is_detected(staging: StagingArea) -> None:
    content = os.urandom(300)
    for chunk in split(content, 100):
        staging.write_chunk(KEY, chunk)
    assert not staging.seal(KEY, sha(content + b"!"), len(content))
    assert local_files(staging) == []


def test_corrupt_chunk_is_refused_and_nothing_is_written(staging: StagingArea) -> None:
    good = split(os.urandom(300), 100)
    bad = dataclasses.replace(good[1], chunk_hash=sha(b"other"))
    assert not staging.write_chunk(KEY, bad)
    assert not staging.has_partial(KEY)
    assert local_files(staging) == []
    # and over an existing partial file, the bytes already there are untouched
    assert staging.write_chunk(KEY, good[0])
    before = staging.partial_path(KEY).read_bytes()
    assert not staging.write_chunk(KEY, bad)
    assert staging.partial_path(KEY).read_bytes() == before


@pytest.mark.parametrize("in_order", [True, False])
def test_wrong_file_hash_seals_false_and_leaves_no_trace(staging: StagingArea, in_order: bool) -> None:
    content = os.urandom(2500)
    chunks = split(content, 1000)
    for chunk in chunks if in_order else chunks[::-1]:
        assert staging.write_chunk(KEY, chunk)
    assert not staging.seal(KEY, sha(b"something else"), len(content))
    assert not staging.has_partial(KEY)
    assert not staging.has_complete(KEY)
    assert local_files(staging) == []


@pytest.mark.parametrize("size_delta", [-1, 1, 1000])
def test_wrong_size_seals_false_and_leaves_no_trace(staging: StagingArea, size_delta: int) -> None:
    content = os.urandom(2500)
    for chunk in split(content, 1000):
        assert staging.write_chunk(KEY, chunk)
    assert not staging.seal(KEY, sha(content), len(content) + size_delta)
    assert local_files(staging) == []


def test_missing_middle_chunk_fails_the_seal(staging: StagingArea) -> None:
    content = os.urandom(300)
    c1, _, c3 = split(content, 100)
    staging.write_chunk(KEY, c1)
    staging.write_chunk(KEY, c3)  # the file has its full length, with a hole of zeros
    assert not staging.seal(KEY, sha(content), len(content))
    assert local_files(staging) == []


def test_empty_file_from_one_empty_chunk_seals(staging: StagingArea) -> None:
    (chunk,) = split(b"", 10)
    assert chunk.data == b"" and chunk.total == 1
    assert staging.write_chunk(KEY, chunk)
    assert staging.seal(KEY, sha(b""), 0)
    assert staging.complete_path(KEY).read_bytes() == b""
    assert not staging.has_partial(KEY)


def test_empty_file_seals_without_any_write(staging: StagingArea) -> None:
    assert staging.seal(KEY, sha(b""), 0)
    assert staging.has_complete(KEY)
    assert staging.complete_path(KEY).stat().st_size == 0


def test_seal_without_any_write_for_a_nonempty_size_fails_cleanly(staging: StagingArea) -> None:
    assert not staging.seal(KEY, sha(b"x"), 1)
    assert local_files(staging) == []


def test_keys_do_not_interfere(staging: StagingArea) -> None:
    a, b = os.urandom(500), os.urandom(500)
    key_b = KEY + "-other"
    for ca, cb in zip(split(a, 100), split(b, 100), strict=True):
        staging.write_chunk(KEY, ca)
        staging.write_chunk(key_b, cb)
    assert staging.seal(key_b, sha(b), len(b))
    assert staging.seal(KEY, sha(a), len(a))
    assert staging.complete_path(KEY).read_bytes() == a
    assert staging.complete_path(key_b).read_bytes() == b


def test_staged_bytes_survive_a_new_staging_area_instance(tmp_path: Path) -> None:
    content = os.urandom(300)
    c1, c2, c3 = split(content, 100)
    first = StagingArea(tmp_path)
    first.write_chunk(KEY, c1)
    first.write_chunk(KEY, c2)
    second = StagingArea(tmp_path)  # a restarted worker: no running hash in memory
    assert second.has_partial(KEY)
    second.write_chunk(KEY, c3)
    assert second.seal(KEY, sha(content), len(content))
    assert second.complete_path(KEY).read_bytes() == content


def test_seal_checks_the_bytes_on_disk_after_a_rewrite_with_other_data(staging: StagingArea) -> None:
    original = b"A" * 100
    other = b"B" * 100
    file_hash = sha(original)
    staging.write_chunk(KEY, Chunk("f", file_hash, sha(original), 0, 1, 1, "", "", original))
    staging.write_chunk(KEY, Chunk("f", file_hash, sha(other), 0, 1, 1, "", "", other))
    assert staging.partial_path(KEY).read_bytes() == other
    # the staged file holds `other`: it must not be sealed as `original`
    assert not staging.seal(KEY, file_hash, 100)


def test_holder_id_is_stable_per_root(tmp_path: Path) -> None:
    first = StagingArea(tmp_path / "a")
    again = StagingArea(tmp_path / "a")
    other = StagingArea(tmp_path / "b")
    assert first.holder == again.holder
    assert first.holder != other.holder
    assert len(first.holder) == 32
    int(first.holder, 16)
    assert (tmp_path / "a" / "holder-id").read_text().strip() == first.holder
    assert not (tmp_path / "a" / "holder-id.tmp").exists()


def test_discard_removes_partial_and_complete(staging: StagingArea) -> None:
    content = os.urandom(300)
    key_done = KEY + "-done"
    for chunk in split(content, 100):
        staging.write_chunk(KEY, chunk)
        staging.write_chunk(key_done, chunk)
    assert staging.seal(key_done, sha(content), len(content))
    staging.discard(KEY)
    staging.discard(key_done)
    assert not staging.has_partial(KEY) and not staging.has_complete(KEY)
    assert not staging.has_partial(key_done) and not staging.has_complete(key_done)
    assert local_files(staging) == []
    staging.discard(KEY)  # discarding twice, or an unknown key, is harmless
    staging.discard("never seen")


def test_discard_forgets_the_running_hash(staging: StagingArea) -> None:
    first, second = os.urandom(200), os.urandom(200)
    for chunk in split(first, 100):
        staging.write_chunk(KEY, chunk)
    staging.discard(KEY)
    for chunk in split(second, 100):
        staging.write_chunk(KEY, chunk)
    assert staging.seal(KEY, sha(second), len(second))
    assert staging.complete_path(KEY).read_bytes() == second


def test_partial_and_complete_names_are_fixed_length_and_distinct(staging: StagingArea) -> None:
    odd_key = "../../" + "x" * 1000 + "\x00/\\"
    assert staging.partial_path(odd_key).parent == staging.partial_dir
    assert staging.complete_path(odd_key).parent == staging.complete_dir
    assert len(staging.partial_path(odd_key).name) == 64
    assert staging.partial_path(KEY) != staging.partial_path(KEY + "x")


def test_store_seals_when_the_last_chunk_completes_the_file(staging: StagingArea) -> None:
    content = random.Random(5).randbytes(10_000)
    chunks = split(content, 4096)
    assert [staging.store("k", c) for c in chunks[:-1]] == [Stored.WRITTEN, Stored.WRITTEN]
    assert staging.store("k", chunks[-1], seal=(sha(content), len(content))) is Stored.SEALED
    assert staging.complete_path("k").read_bytes() == content
    assert not staging.has_partial("k")


def test_store_reports_a_corrupt_chunk_and_a_corrupt_file(staging: StagingArea) -> None:
    content = random.Random(6).randbytes(5000)
    (chunk,) = split(content, 8192)
    bad = dataclasses.replace(chunk, data=b"x" + chunk.data[1:])
    assert staging.store("k", bad, seal=(sha(content), len(content))) is Stored.CORRUPT_CHUNK
    assert local_files(staging) == []
    assert staging.store("k", chunk, seal=(sha(b"other"), len(content))) is Stored.CORRUPT_FILE
    assert local_files(staging) == []


@pytest.mark.parametrize("sync", [True, False])
def test_a_one_chunk_file_goes_straight_to_the_complete_area(
    staging: StagingArea, monkeypatch: pytest.MonkeyPatch, sync: bool
) -> None:
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    content = random.Random(7).randbytes(3000)
    (chunk,) = split(content, 4096)
    assert staging.store("k", chunk, seal=(sha(content), len(content)), sync=sync) is Stored.SEALED
    assert staging.complete_path("k").read_bytes() == content
    assert not staging.has_partial("k")
    assert bool(synced) is sync


def test_a_first_chunk_holding_the_whole_file_supersedes_the_empty_last_one(staging: StagingArea) -> None:
    content = random.Random(8).randbytes(3000)
    first = Chunk("file.dat", sha(content), sha(content), 0, 1, 2, "d", "", content)
    empty_last = Chunk("file.dat", sha(content), sha(b""), len(content), 2, 2, "d", "", b"")
    assert staging.store("k", empty_last) is Stored.WRITTEN
    assert staging.store("k", first, seal=(sha(content), len(content))) is Stored.SEALED
    assert local_files(staging) == [staging.complete_path("k").name]
    assert staging.complete_path("k").read_bytes() == content


def test_multi_chunk_seal_without_sync_skips_only_the_fdatasync(
    staging: StagingArea, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "fdatasync", lambda fd: pytest.fail("synced although sync=False"))
    content = random.Random(9).randbytes(9000)
    *head, last = split(content, 4096)
    for c in head:
        staging.store("k", c)
    assert staging.store("k", last, seal=(sha(content), len(content)), sync=False) is Stored.SEALED
    assert staging.complete_path("k").read_bytes() == content
