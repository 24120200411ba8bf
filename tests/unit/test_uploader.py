"""The pure parts of the uploader (app/uploader.py): finding files, chunking them, and the
in-flight byte budget."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.codec import decode_chunk, encode_chunk
from app.uploader import ByteBudget, FileUpload, chunk_file, file_digest, find_files

C = 64  # chunk size


def sha(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


# --- find_files ---------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    files = {
        "a.txt": b"a",
        "sub dir/b é.bin": b"b",
        "sub dir/deeper/c": b"c",
        "データ/ファイル.csv": b"d",
        ".hidden": b"h",
        ".git/config": b"g",
        "sub dir/.partial.tmp": b"t",
        "sub dir/x.log": b"l",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "empty dir").mkdir()
    return root


def rels(found: list[FileUpload]) -> list[str]:
    return [f.relpath.as_posix() for f in found]


def test_find_files_walks_subdirectories_and_skips_hidden(tree: Path) -> None:
    found = find_files([tree])
    assert sorted(rels(found)) == [
        "a.txt",
        "sub dir/b é.bin",
        "sub dir/deeper/c",
        "sub dir/x.log",
        "データ/ファイル.csv",
    ]
    for upload in found:
        assert upload.path == tree / upload.relpath
        assert upload.path.is_file()
    by_rel = {f.relpath.as_posix(): f for f in found}
    assert by_rel["a.txt"].subdir == ""
    assert by_rel["sub dir/b é.bin"].subdir == "sub dir"
    assert by_rel["sub dir/deeper/c"].subdir == "sub dir/deeper"
    assert by_rel["sub dir/deeper/c"].relpath.name == "c"


def test_find_files_without_exclude_includes_hidden(tree: Path) -> None:
    found = set(rels(find_files([tree], exclude=None)))
    assert {".hidden", ".git/config", "sub dir/.partial.tmp"} <= found
    assert len(found) == 8


def test_find_files_include_and_exclude_regexes(tree: Path) -> None:
    assert rels(find_files([tree], include=r"\.(txt|log)$")) == ["a.txt", "sub dir/x.log"]
    assert sorted(rels(find_files([tree], include=r"^sub dir/", exclude=r"\.log$|^\."))) == [
        "sub dir/.partial.tmp",
        "sub dir/b é.bin",
        "sub dir/deeper/c",
    ]
    assert rels(find_files([tree], include="no such thing")) == []


def test_single_file_argument_gets_its_own_name(tree: Path) -> None:
    (upload,) = find_files([tree / "sub dir" / "b é.bin"])
    assert upload.relpath == PurePosixPath("b é.bin")
    assert upload.subdir == ""
    assert upload.path == tree / "sub dir" / "b é.bin"


def test_several_roots(tree: Path) -> None:
    found = find_files([tree / "sub dir", tree / "a.txt"])
    assert rels(found) == ["b é.bin", "deeper/c", "x.log", "a.txt"]


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        find_files([tmp_path / "nope"])


def test_empty_directory_finds_nothing(tmp_path: Path) -> None:
    assert find_files([tmp_path]) == []


# --- chunk_file ---------------------------------------------------------------------------------


def chunks_of(path: Path, relpath: str = "d/file.bin", chunk_size: int = C) -> tuple[list, bytes, float]:
    file_hash, size, mtime = file_digest(path)
    chunks = list(chunk_file(FileUpload(path, PurePosixPath(relpath)), chunk_size, file_hash, size, mtime))
    return chunks, file_hash, mtime


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 3 * C])
def test_chunk_file(tmp_path: Path, size: int) -> None:
    content = os.urandom(size)
    path = tmp_path / "file.bin"
    path.write_bytes(content)
    chunks, file_hash, mtime = chunks_of(path)
    expected_total = max(1, -(-size // C))
    assert file_hash == sha(content)
    assert mtime == path.stat().st_mtime
    assert len(chunks) == expected_total
    assert b"".join(c.data for c in chunks) == content
    assert [c.index for c in chunks] == list(range(1, expected_total + 1))
    for c in chunks:
        assert c.total == expected_total
        assert c.offset == (c.index - 1) * C
        assert len(c.data) == min(C, size - c.offset)
        assert c.chunk_hash == sha(c.data)
        assert c.file_hash == file_hash
        assert (c.filename, c.subdir, c.filename_append) == ("file.bin", "d", "")
        assert c.mtime == mtime
        assert decode_chunk(encode_chunk(c)) == c  # a valid message, hash included
    assert chunks[-1].is_last and chunks[-1].end == size


def test_empty_file_is_exactly_one_empty_chunk(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    chunks, _, _ = chunks_of(path, "empty")
    assert len(chunks) == 1
    (c,) = chunks
    assert (c.data, c.index, c.total, c.offset, c.subdir) == (b"", 1, 1, 0, "")
    assert c.chunk_hash == sha(b"") == c.file_hash


@given(st.binary(max_size=1000), st.integers(1, 300))
@settings(max_examples=50, deadline=None)
def test_chunk_file_reassembles_for_any_size(content: bytes, chunk_size: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f"
        path.write_bytes(content)
        chunks, _, _ = chunks_of(path, "f", chunk_size)
    assert b"".join(c.data for c in chunks) == content
    assert all(len(c.data) == chunk_size for c in chunks[:-1])
    assert 1 <= len(chunks[-1].data) <= chunk_size or content == b""


def test_file_that_shrinks_before_it_is_read_raises(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3 * C))
    file_hash, size, mtime = file_digest(path)
    with open(path, "r+b") as f:
        f.truncate(2 * C + 1)
    with pytest.raises(OSError, match="changed"):
        list(chunk_file(FileUpload(path, PurePosixPath("f")), C, file_hash, size, mtime))


def test_file_that_shrinks_while_being_chunked_raises(tmp_path: Path) -> None:
    chunk_size = 1 << 16  # larger than any read buffer: every chunk is a fresh read
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3 * chunk_size))
    file_hash, size, mtime = file_digest(path)
    chunks = chunk_file(FileUpload(path, PurePosixPath("f")), chunk_size, file_hash, size, mtime)
    first = next(chunks)
    assert first.index == 1
    with open(path, "r+b") as f:
        f.truncate(chunk_size + 10)
    with pytest.raises(OSError, match="changed"):
        list(chunks)


def test_chunk_file_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * (3 * C))
    file_hash, size, mtime = file_digest(path)
    chunks = chunk_file(FileUpload(path, PurePosixPath("f")), C, file_hash, size, mtime)
    path.unlink()  # nothing opened yet: a generator only reads when iterated
    with pytest.raises(FileNotFoundError):
        next(chunks)


# --- ByteBudget ---------------------------------------------------------------------------------


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


@given(st.integers(1, 200), st.lists(st.integers(1, 300), min_size=1, max_size=40), st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_budget_never_exceeds_the_limit(limit: int, amounts: list[int], rnd) -> None:  # type: ignore[no-untyped-def]
    async def main() -> int:
        budget = ByteBudget(limit)
        holders: list[int] = []
        peak = 0

        async def worker(amount: int) -> None:
            nonlocal peak
            await budget.acquire(amount)
            holders.append(amount)
            peak = max(peak, budget.used)
            assert budget.used == sum(holders)
            assert budget.used <= limit or holders == [amount]  # over the limit only alone
            for _ in range(rnd.randint(0, 3)):
                await asyncio.sleep(0)  # yield to the other tasks
            holders.remove(amount)
            await budget.release(amount)

        await asyncio.gather(*(worker(a) for a in amounts))
        assert budget.used == 0
        return peak

    peak = run(main())
    assert peak <= max(limit, max(amounts))


def test_an_item_larger_than_the_limit_passes_alone() -> None:
    async def main() -> None:
        budget = ByteBudget(100)
        await budget.acquire(50)
        big = asyncio.ensure_future(budget.acquire(150))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not big.done()  # waits for the others to finish
        await budget.release(50)
        await big
        assert budget.used == 150
        small = asyncio.ensure_future(budget.acquire(1))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not small.done()  # nothing joins an oversized item
        await budget.release(150)
        await small
        assert budget.used == 1

    run(main())


def test_a_waiter_proceeds_once_there_is_room() -> None:
    async def main() -> None:
        budget = ByteBudget(100)
        await budget.acquire(60)
        await budget.acquire(40)  # exactly at the limit: no wait
        waiter = asyncio.ensure_future(budget.acquire(30))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()
        await budget.release(20)  # 80 used: still no room for 30
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()
        await budget.release(40)
        await waiter
        assert budget.used == 70

    run(main())
