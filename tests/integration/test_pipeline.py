"""End to end on the real broker: ``filestream upload`` -> worker -> files under the output root."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import signal
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from app.admin import ensure_topic
from app.codec import Chunk, encode_chunk
from app.paths import message_key
from app.settings import Settings
from app.uploader import FileUpload, chunk_file, file_digest

from .harness import FILESTREAM, Deployment, WorkerProcess, committed_offset, topic_end_offset, tree_digests, wait_for

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
        if not w.alive():
            continue  # a dead host's disk; a restarted worker sweeps it (test_scale_out_and_rebalance)
        def staged(w: WorkerProcess = w) -> list[Path]:
            return [p for p in (w.datadir / "staging").rglob("*") if p.is_file() and p.name != "holder-id"]

        # staged bytes go once the records releasing them are on the broker, just after the output
        try:
            wait_for(lambda: not staged(), 30, f"the staging area of {w.name} to be cleaned up")
        except AssertionError:
            raise AssertionError(f"staging of {w.name} not cleaned up: {staged()}") from None


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


def test_chunks_keyed_per_chunk_reach_the_worker_of_their_file(deployment: Deployment, tmp_path: Path) -> None:
    """OpenMSIStream producers key each chunk on its own; the worker re-keys them onto the
    partition (and lane) of their file, so chunks of one file are never handled concurrently."""
    src = tmp_path / "src"
    rels = [f"per-chunk/f{i}.bin" for i in range(4)]
    for i, rel in enumerate(rels):
        write(src, rel, rand(CHUNK * (i + 3) + 123, 300 + i))
    msgs = [(f"{rel}_chunk_{c.index}_of_{c.total}".encode(), encode_chunk(c))
            for rel in rels for c in chunks_of(src / rel, rel)]
    random.Random(11).shuffle(msgs)
    worker = deployment.worker().start()
    worker.wait_assigned()
    deployment.produce(msgs)
    deployment.wait_output(tree_digests(src))
    counters = (worker.status() or {}).get("counters", {})
    assert counters.get("chunks_rekeyed") == len(msgs), counters
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output", "src", "w1-data", "w1.log"]
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


def test_watch_uploads_new_and_rewritten_files_and_stops_cleanly(deployment: Deployment, tmp_path: Path) -> None:
    src = tmp_path / "watched"
    write(src, "existing.txt", b"was here before the watcher started\n")
    deployment.worker().start().wait_assigned()
    log = tmp_path / "watcher.log"
    with open(log, "w") as out:
        watcher = subprocess.Popen([str(FILESTREAM), "upload", str(src), "--watch", "--settle", "0.5"], cwd=tmp_path,
                                   env=deployment.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # files written before the first scan would count as already there
        wait_for(lambda: "watching" in log.read_text(), 60, "the watcher to start watching")
        write(src, "new/one.bin", rand(3 * CHUNK + 3, 11))
        write(src, "two.txt", b"second\n")
        deployment.wait_output({k: v for k, v in tree_digests(src).items() if k != "existing.txt"})
        write(src, "two.txt", b"second, rewritten with other content\n")
        deployment.wait_output({k: v for k, v in tree_digests(src).items() if k != "existing.txt"})
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=30)
    text = log.read_text()
    assert watcher.returncode == 0, text
    assert text.count("uploaded two.txt") == 2 and "existing.txt" not in text


def test_redelivered_chunks_of_a_finished_file_are_not_processed_again(
        deployment: Deployment, tmp_path: Path, kafka_bootstrap: str) -> None:
    src = tmp_path / "src"
    write(src, "held/unfinished.bin", rand(4 * CHUNK, 21))
    write(src, "held/finished.bin", rand(3 * CHUNK, 22))
    unfinished = messages(chunks_of(src / "held/unfinished.bin", "held/unfinished.bin"), "held/unfinished.bin")
    finished = messages(chunks_of(src / "held/finished.bin", "held/finished.bin"), "held/finished.bin")
    deployment.env["FILESTREAM_PARTITIONS"] = "1"  # both files in one partition: the unfinished one holds the floor
    worker = deployment.worker().start()
    worker.wait_assigned()
    deployment.produce(unfinished[:-1] + finished)  # the last chunk of the first file is still to come
    deployment.wait_output({"held/finished.bin": tree_digests(src)["held/finished.bin"]})
    first_inode = (deployment.output / "held/finished.bin").stat().st_ino
    finished_log = f"{deployment.env['FILESTREAM_APP_ID']}-finished-files-changelog"
    wait_for(lambda: topic_end_offset(kafka_bootstrap, finished_log) >= 1, 30, "the finished record to be durable")

    worker.kill()
    worker.start()
    status = wait_for(lambda: (s := worker.status()) and s["counters"].get("chunks_redelivered", 0) >= 3 and s,
                      90, "the restarted worker to read the finished file's chunks again")
    assert status["counters"].get("files_processed", 0) == 0, status
    deployment.produce(unfinished[-1:])
    deployment.wait_output(tree_digests(src))
    assert (deployment.output / "held/finished.bin").stat().st_ino == first_inode  # not written again


def test_abandoned_upload_is_reported_and_releases_the_commit_floor(kafka_bootstrap: str, tmp_path: Path) -> None:
    deployment = Deployment(kafka_bootstrap, tmp_path, partitions=1, abandon_after="2")
    try:
        src = tmp_path / "src"
        write(src, "gone/partial.bin", rand(4 * CHUNK, 31))
        write(src, "gone/after.bin", rand(CHUNK + 1, 32))
        worker = deployment.worker().start()
        worker.wait_assigned()
        deployment.produce(messages(chunks_of(src / "gone/partial.bin", "gone/partial.bin"), "gone/partial.bin")[:2])
        report = next(d for d in deployment.dead_letters(expect=1, timeout=60) if d["reason"] == "abandoned")
        facts = json.loads(report["value"])
        assert (facts["relpath"], facts["received"], facts["total"]) == ("gone/partial.bin", 2, 4)
        wait_for(lambda: (s := worker.status()) and s["partial_files"] == [], 30, "the partial record to be dropped")
        assert not any((worker.datadir / "staging" / "partial").iterdir()), "staged bytes not freed"
        # the worker goes on, and its commits pass the abandoned chunks
        deployment.produce(messages(chunks_of(src / "gone/after.bin", "gone/after.bin"), "gone/after.bin"))
        deployment.wait_output({"gone/after.bin": tree_digests(src)["gone/after.bin"]})
        wait_for(lambda: committed_offset(kafka_bootstrap, deployment) >= 4, 30, "the commit to pass every chunk")
    finally:
        deployment.stop_all()


def test_worker_refuses_a_chunk_topic_with_other_partitions(deployment: Deployment) -> None:
    settings = Settings.from_env(deployment.env)
    asyncio.run(ensure_topic(settings, deployment.chunk_topic, partitions=2))
    worker = deployment.worker().start()
    assert worker.proc is not None
    assert worker.proc.wait(timeout=120) != 0
    assert "FILESTREAM_PARTITIONS must agree" in worker.log_path.read_text()
