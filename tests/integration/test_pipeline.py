"""End to end on the real broker: ``filestream upload`` -> worker -> files under the output root."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path, PurePosixPath

import pytest

from app.codec import Chunk, encode_chunk
from app.paths import message_key
from app.uploader import FileUpload, chunk_file, file_digest

from .harness import Deployment, tree_digests, wait_for

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024


def write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def chunks_of(path: Path, rel: str, chunk_size: int = CHUNK) -> list[Chunk]:
    file_hash, size, mtime = file_digest(path)
    return list(chunk_file(FileUpload(path, PurePosixPath(rel)), chunk_size, file_hash, size, mtime))


def messages(chunks: list[Chunk], rel: str) -> list[tuple[bytes, bytes]]:
    return [(message_key(rel), encode_chunk(c)) for c in chunks]


def assert_no_leftovers(dep: Deployment) -> None:
    hidden = [p for p in dep.output.rglob("*") if p.name.startswith(".")]
    assert hidden == [], f"temporary files left in the output: {hidden}"
    for w in dep.workers:
        staged = [p for p in (w.datadir / "staging").rglob("*") if p.is_file() and p.name != "holder-id"]
        assert staged == [], f"staging of {w.name} not cleaned up: {staged}"


def test_tree_of_edge_cases_arrives_byte_identical(deployment: Deployment, tmp_path: Path) -> None:
    src = tmp_path / "src"
    sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 1, 64 * 1024 * 1024]
    for i, size in enumerate(sizes):
        write(src, f"sizes/file-{size}.bin", rand(size, i))
    write(src, "top.txt", b"at the root\n")
    write(src, "Ünïcødé dir/with spaces/naïve café.txt", "déjà vu ✓\n".encode())
    write(src, "a/b/c/d/e/deep.dat", rand(5000, 99))
    write(src, "empty-dir-sibling/empty", b"")

    worker = deployment.worker().start()
    worker.wait_assigned()
    result = deployment.upload(src)
    assert result.returncode == 0, result.stderr
    assert "FAILED" not in result.stderr

    deployment.wait_output(tree_digests(src), timeout=240)
    assert_no_leftovers(deployment)
    status = worker.status()
    assert status is not None and status["partial_files"] == [], status


def test_thousand_small_files(deployment: Deployment, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(1000):
        write(src, f"d{i % 10}/f{i:04d}.txt", f"file {i}\n".encode() * (1 + i % 7))
    deployment.worker().start().wait_assigned()
    result = deployment.upload(src)
    assert result.returncode == 0, result.stderr
    assert "1000 file(s)" in result.stderr
    deployment.wait_output(tree_digests(src))
    assert_no_leftovers(deployment)


def test_shuffled_and_duplicated_chunks(deployment: Deployment, tmp_path: Path) -> None:
    src = tmp_path / "src"
    rels = [f"shuffled/f{i}.bin" for i in range(6)]
    for i, rel in enumerate(rels):
        write(src, rel, rand(CHUNK * (i + 2) + i * 777, 100 + i))
    msgs = [m for rel in rels for m in messages(chunks_of(src / rel, rel), rel)]
    rng = random.Random(7)
    msgs += rng.sample(msgs, len(msgs) // 3)  # duplicates
    rng.shuffle(msgs)
    deployment.worker().start().wait_assigned()
    deployment.produce(msgs)
    deployment.wait_output(tree_digests(src))
    assert_no_leftovers(deployment)


def test_bad_input_is_dead_lettered_and_nothing_else_is_lost(deployment: Deployment, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, "good/before.bin", rand(3 * CHUNK, 1))
    write(src, "bad/corrupt.bin", rand(4 * CHUNK, 2))
    write(src, "good/after.bin", rand(2 * CHUNK + 5, 3))
    write(src, "good/evil-neighbour.txt", b"fine\n")

    corrupt = chunks_of(src / "bad/corrupt.bin", "bad/corrupt.bin")
    broken = corrupt[1]
    corrupt[1] = dataclasses.replace(broken, data=bytes([broken.data[0] ^ 0xFF]) + broken.data[1:])
    traversal = [Chunk(filename="passwd", file_hash=hashlib.sha512(b"x").digest(),
                       chunk_hash=hashlib.sha512(b"x").digest(), offset=0, index=1, total=1,
                       subdir=subdir, filename_append="", data=b"x") for subdir in ("../../escape", "/etc", "a/../..")]
    msgs = messages(chunks_of(src / "good/before.bin", "good/before.bin"), "good/before.bin")
    msgs += [(b"garbage", b"\x00not msgpack at all"), (b"shape", b"\x93\x01\x02\x03"), (None, b"")]
    msgs += messages(corrupt, "bad/corrupt.bin")
    msgs += [(b"evil", encode_chunk(c)) for c in traversal]
    msgs += messages(chunks_of(src / "good/after.bin", "good/after.bin"), "good/after.bin")
    msgs += messages(chunks_of(src / "good/evil-neighbour.txt", "good/evil-neighbour.txt"), "good/evil-neighbour.txt")

    deployment.worker().start().wait_assigned()
    deployment.produce(msgs)

    expected = {rel: digest for rel, digest in tree_digests(src).items() if rel.startswith("good/")}
    deployment.wait_output(expected)
    letters = deployment.dead_letters(expect=8)
    reasons = sorted(d["reason"] for d in letters)
    assert reasons.count("unsafe_path") == 3
    assert reasons.count("not_msgpack") == 1 and reasons.count("bad_shape") == 1 and reasons.count("empty") == 1
    assert reasons.count("chunk_hash_mismatch") == 2  # the message itself, and the report of its file
    file_report = next(d for d in letters if d["reason"] == "chunk_hash_mismatch" and d.get("kind") == "file")
    assert json.loads(file_report["value"])["relpath"] == "bad/corrupt.bin"
    garbage = next(d for d in letters if d["reason"] == "not_msgpack")
    assert garbage["value"] == b"\x00not msgpack at all" and garbage["key"] == b"garbage"  # preserved as sent
    # nothing escaped the output root
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["src", "output", "w1-data", "w1.log"])
    assert_no_leftovers(deployment)


def test_worker_killed_mid_transfer_still_delivers_every_file(deployment: Deployment, tmp_path: Path) -> None:
    src = tmp_path / "src"
    rng = random.Random(42)
    for i in range(60):
        write(src, f"k/{i:02d}.bin", rand(rng.randrange(0, 3 * 1024 * 1024), i))
    write(src, "k/large.bin", rand(40 * 1024 * 1024, 1000))
    expected = tree_digests(src)

    worker = deployment.worker().start()
    worker.wait_assigned()
    result = deployment.upload(src)
    assert result.returncode == 0, result.stderr

    kills = 0
    for target in (len(expected) // 4, len(expected) // 2):
        wait_for(lambda t=target: len(tree_digests(deployment.output)) >= t, 180,
                 f"{target} files to arrive before killing the worker")
        worker.kill()
        kills += 1
        worker.start()
    deployment.wait_output(expected, timeout=300)
    assert kills == 2
    assert_no_leftovers(deployment)
