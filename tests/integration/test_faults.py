"""Fault injection on the real broker: every uploaded file arrives exactly once, intact, whatever
happens to workers and brokers in between.

Each scenario checks the output tree byte for byte (SHA-512), that no temporary file is left and
nothing is written outside the output root, and counts processor runs per file version from the
workers' journal. Counts are printed (``pytest -s``) and attached to the test report.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.local_broker import LocalBroker

from .harness import Deployment, WorkerProcess, free_port, tree_digests, wait_for
from .test_pipeline import CHUNK, assert_no_leftovers, chunks_of, messages, rand, write

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def make_corpus(root: Path, files: int, seed: int, max_size: int = 8 * 1024 * 1024) -> dict[str, str]:
    """Files of log-uniform sizes from 0 B to ``max_size`` in subdirectories, plus empty files."""
    rng = random.Random(seed)
    for i in range(files):
        size = 0 if i % 50 == 0 else int(2 ** rng.uniform(0, max_size.bit_length() - 1))
        write(root, f"d{i % 7}/s{i % 3}/f{i:04d}.bin", rand(size, seed * 10_000 + i))
    return tree_digests(root)


def journal_counts(journal: Path) -> Counter[tuple[str, str]]:
    """Successful directory-processor runs per (relpath, file hash)."""
    if not journal.exists():
        return Counter()
    entries = [json.loads(line) for line in journal.read_text().splitlines() if line]
    return Counter((e["relpath"], e["file_hash"]) for e in entries if e["processor"] == "directory")


def check_delivery(dep: Deployment, expected: dict[str, str], journal: Path, outside: Path,
                   record: Callable[[str, Any], None], timeout: float = 300) -> dict[str, int]:
    """Wait for the output, then check it and count processing; return the counts."""
    dep.wait_output(expected, timeout=timeout)
    assert_no_leftovers(dep)
    assert not [p for p in outside.iterdir() if p.name not in {"src", "output", "journal.jsonl", "upload.log"}
                and not p.name.startswith(("w", "broker"))], "something was written outside the output root"
    runs = journal_counts(journal)
    versions = {rel for rel, _ in runs}
    assert versions == set(expected), f"processed paths differ from uploaded: {set(expected) ^ versions}"
    counts = {
        "files": len(expected),
        "bytes": sum((dep.output / rel).stat().st_size for rel in expected),
        "processor_runs": sum(runs.values()),
        "versions_processed_twice_or_more": sum(1 for n in runs.values() if n > 1),
        "restarts": sum(max(0, w.starts - 1) for w in dep.workers),
    }
    record("delivery", counts)
    print(f"\n{counts}")
    return counts


def start_upload(dep: Deployment, root: Path, *args: str) -> subprocess.Popen[bytes]:
    """``filestream upload`` of ``root/src`` in the background, its output in ``root/upload.log``."""
    with open(root / "upload.log", "wb") as log:
        return subprocess.Popen([*dep.upload_command(root / "src"), *args], env=dep.env, cwd=root,
                                stdout=log, stderr=subprocess.STDOUT)


def new_deployment(bootstrap: str, root: Path, **settings: str) -> tuple[Deployment, Path]:
    journal = root / "journal.jsonl"
    dep = Deployment(bootstrap, root, partitions=4, chunk_size=CHUNK * 4, journal=str(journal), **settings)
    return dep, journal


def kill_repeatedly(dep: Deployment, worker: WorkerProcess, expected: dict[str, str], kills: int, seed: int,
                    fresh_datadir: bool) -> None:
    """SIGKILL the worker at random moments while files arrive; restart it each time."""
    rng = random.Random(seed)
    for n in range(kills):
        target = len(expected) * (n + 1) // (kills + 2)
        wait_for(lambda t=target: len(tree_digests(dep.output)) >= t, 240, f"{target} files before kill {n + 1}")
        time.sleep(rng.uniform(0, 0.5))  # a random moment within the transfer, not a condition to wait for
        worker.kill()
        if fresh_datadir:
            worker.datadir = dep.root / f"{worker.name}-host{n + 2}"
        worker.start()


@pytest.mark.parametrize("fresh_datadir", [False, True], ids=["same-host", "host-move"])
def test_sigkill_during_transfer(kafka_bootstrap: str, tmp_path: Path, fresh_datadir: bool,
                                 record_property: Callable[[str, Any], None]) -> None:
    dep, journal = new_deployment(kafka_bootstrap, tmp_path)
    try:
        expected = make_corpus(tmp_path / "src", 240, seed=1 if fresh_datadir else 2)
        worker = dep.worker().start()
        worker.wait_assigned()
        upload = start_upload(dep, tmp_path)
        kill_repeatedly(dep, worker, expected, kills=3, seed=7, fresh_datadir=fresh_datadir)
        assert upload.wait(timeout=300) == 0, (tmp_path / "upload.log").read_text()
        check_delivery(dep, expected, journal, tmp_path, record_property)
    finally:
        dep.stop_all()


def test_scale_out_and_rebalance(kafka_bootstrap: str, tmp_path: Path,
                                 record_property: Callable[[str, Any], None]) -> None:
    dep, journal = new_deployment(kafka_bootstrap, tmp_path)
    try:
        expected = make_corpus(tmp_path / "src", 200, seed=3)
        workers = [dep.worker(f"w{i}").start() for i in (1, 2, 3)]
        wait_for(lambda: sum(len((w.status() or {}).get("active_partitions", [])) for w in workers) == 4, 120,
                 "three workers to share the four partitions")
        result = dep.upload(tmp_path / "src")
        assert result.returncode == 0, result.stderr
        wait_for(lambda: len(tree_digests(dep.output)) >= len(expected) // 4, 240, "a quarter of the files")
        dep.worker("w4").start()  # scale out ...
        busiest = max(workers, key=lambda w: len((w.status() or {}).get("partial_files", [])))
        busiest.kill()  # ... and lose the worker with the most files in flight
        check_delivery(dep, expected, journal, tmp_path, record_property)
        holders = {json.loads(line)["holder"] for line in journal.read_text().splitlines()}
        assert len(holders) >= 2, "files were not spread over several workers"
        busiest.start()  # the lost worker comes back: it frees what it had staged
        wait_for(lambda: not [p for p in (busiest.datadir / "staging").rglob("*") if p.is_file()
                              and p.name != "holder-id"], 120, "the restarted worker to sweep its staging area")
    finally:
        dep.stop_all()


def test_broker_restart_mid_transfer(tmp_path: Path, record_property: Callable[[str, Any], None]) -> None:
    broker = LocalBroker(free_port(), controller_port=free_port(), state_root=tmp_path / "broker")
    status = broker.up()
    dep, journal = new_deployment(status.bootstrap, tmp_path)
    try:
        expected = make_corpus(tmp_path / "src", 120, seed=4)
        worker = dep.worker().start()
        worker.wait_assigned()
        upload = start_upload(dep, tmp_path, "--parallel", "2")
        wait_for(lambda: len(tree_digests(dep.output)) >= len(expected) // 5, 240, "a fifth of the files")
        broker.down()
        time.sleep(3)  # the broker stays away for a while: clients must retry, not give up
        broker.up()
        assert upload.wait(timeout=300) == 0, (tmp_path / "upload.log").read_text()
        check_delivery(dep, expected, journal, tmp_path, record_property)
        assert worker.alive(), "the worker did not survive the broker restart"
    finally:
        dep.stop_all()
        broker.down()


def test_rewritten_file_newest_upload_wins(deployment: Deployment, tmp_path: Path) -> None:
    """Two versions of one path uploading at once: the one uploaded last is the one kept, whichever
    completes first, and the output is never a mix of both."""
    src = tmp_path / "src"
    write(src, "v/data.bin", rand(5 * CHUNK, 1))
    old = messages(chunks_of(src / "v/data.bin", "v/data.bin"), "v/data.bin")
    write(src, "v/data.bin", rand(5 * CHUNK + 17, 2))
    new = messages(chunks_of(src / "v/data.bin", "v/data.bin"), "v/data.bin")
    write(src, "w/other.bin", rand(3 * CHUNK, 3))
    old_other = messages(chunks_of(src / "w/other.bin", "w/other.bin"), "w/other.bin")
    write(src, "w/other.bin", rand(3 * CHUNK, 4))
    new_other = messages(chunks_of(src / "w/other.bin", "w/other.bin"), "w/other.bin")

    deployment.worker().start().wait_assigned()
    # v: the old version starts first but completes last; w: the old version completes first
    deployment.produce(old[:3] + new + old[3:] + old_other + new_other)
    deployment.wait_output(tree_digests(src))
    letters = deployment.dead_letters(expect=0, timeout=5)
    assert letters == [], letters


def test_sigterm_finishes_commits_and_next_start_repeats_nothing(
        kafka_bootstrap: str, tmp_path: Path, record_property: Callable[[str, Any], None]) -> None:
    dep, journal = new_deployment(kafka_bootstrap, tmp_path, shutdown_timeout="30")
    try:
        expected = make_corpus(tmp_path / "src", 150, seed=5)
        worker = dep.worker().start()
        worker.wait_assigned()
        result = dep.upload(tmp_path / "src")
        assert result.returncode == 0, result.stderr
        wait_for(lambda: len(tree_digests(dep.output)) >= len(expected) // 3, 240, "a third of the files")
        started = time.monotonic()
        assert worker.terminate(timeout=45) == 0, worker.log_tail()
        stop_seconds = time.monotonic() - started
        done_before = journal_counts(journal)
        worker.start()
        counts = check_delivery(dep, expected, journal, tmp_path, record_property)
        assert counts["versions_processed_twice_or_more"] == 0, journal_counts(journal).most_common(5)
        assert stop_seconds < 30
        record_property("stop_seconds", round(stop_seconds, 1))
        record_property("processed_before_stop", sum(done_before.values()))
    finally:
        dep.stop_all()
