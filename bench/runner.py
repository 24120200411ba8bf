"""The benchmark loop: each corpus generated once, then every (chunk size, repetition, system)
run on a fresh topic, with its output and topics deleted before the next run."""

from __future__ import annotations

import os
import shutil
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .corpus import Corpus, generate
from .report import RunError
from .systems import BenchError, RunContext, RunResult, run_system

__all__ = ["Plan", "execute"]


@dataclass(frozen=True)
class Plan:
    """What to run."""

    systems: tuple[str, ...]
    corpora: tuple[str, ...]
    chunk_sizes: tuple[int, ...]
    repeat: int
    scale: int
    seed: int
    partitions: int
    timeout: float
    profile_dir: Path | None = None
    profiler: str = "pyinstrument"
    repeat_other: int | None = None  # repetitions at chunk sizes after the first (default: repeat)
    oms_max_files: int | None = None  # OpenMSIStream gets at most this many files of a corpus
    filestream_env: tuple[tuple[str, str], ...] = ()


def chunk_sizes_for(corpus: Corpus, chunk_sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The chunk sizes worth running: when every file fits in one chunk of the smallest size,
    every chunk size sends the same messages, so only the first is run."""
    largest = max(size for size, _ in corpus.files.values())
    return chunk_sizes[:1] if largest <= min(chunk_sizes) else chunk_sizes


def execute(plan: Plan, bootstrap: str, broker_pid: int | None, tmp: Path,
            log: Callable[[str], None]) -> tuple[list[RunResult], list[RunError]]:
    """Run the plan; failed runs become :class:`RunError` entries, not figures."""
    results: list[RunResult] = []
    errors: list[RunError] = []
    session = uuid.uuid4().hex[:6]
    for name in plan.corpora:
        started = time.monotonic()
        corpus = generate(name, tmp / "corpora" / name, plan.seed, plan.scale)
        log(f"corpus {corpus.describe()} generated in {time.monotonic() - started:.1f} s")
        oms_corpus = corpus
        if plan.oms_max_files and corpus.n_files > plan.oms_max_files and "openmsistream" in plan.systems:
            oms_corpus = corpus.subset(plan.oms_max_files, tmp / "corpora" / f"{name}-subset")
            log(f"  OpenMSIStream gets the first {oms_corpus.n_files} of the {corpus.n_files} files")
        try:
            sizes = chunk_sizes_for(corpus, plan.chunk_sizes)
            for chunk in sizes:
                reps = plan.repeat if chunk == sizes[0] or plan.repeat_other is None else plan.repeat_other
                for rep in range(1, reps + 1):
                    for system in plan.systems:
                        tag = f"bench-{session}-{system[:3]}-{name}-{chunk // 1024}k-r{rep}"
                        source = oms_corpus if system == "openmsistream" else corpus
                        outcome = _run_one(plan, system, source, chunk, rep, tag, bootstrap, broker_pid, tmp)
                        if isinstance(outcome, RunResult) and source is not corpus:
                            outcome.subset_of = corpus.n_files
                        if isinstance(outcome, RunError):
                            errors.append(outcome)
                            log(f"  {system:13} {name} {chunk // 1024:5d} KiB run {rep}: ERROR {outcome.message}")
                        else:
                            results.append(outcome)
                            log(f"  {system:13} {name} {chunk // 1024:5d} KiB run {rep}: {outcome.wall_s:7.2f} s "
                                f"{outcome.mb_s:7.1f} MB/s {outcome.files_s:8.1f} files/s "
                                f"CPU {outcome.cpu_s_per_gib:5.1f} s/GiB, RSS {outcome.producer.peak_rss / 1e6:.0f}/"
                                f"{outcome.consumer.peak_rss / 1e6:.0f} MB, other load "
                                f"{outcome.other_cores:.2f} cores")
        finally:
            shutil.rmtree(corpus.root, ignore_errors=True)
            if oms_corpus is not corpus:
                shutil.rmtree(oms_corpus.root, ignore_errors=True)
    return results, errors


def _run_one(plan: Plan, system: str, corpus: Corpus, chunk: int, rep: int, tag: str, bootstrap: str,
             broker_pid: int | None, tmp: Path) -> RunResult | RunError:
    workdir = tmp / "runs" / tag
    workdir.mkdir(parents=True)
    os.sync()  # start from clean page-cache writeback, not the previous run's dirty pages
    ctx = RunContext(bootstrap=bootstrap, corpus=corpus, chunk_size=chunk, partitions=plan.partitions,
                     workdir=workdir, tag=tag, timeout=plan.timeout, broker_pid=broker_pid,
                     profile_dir=plan.profile_dir, profiler=plan.profiler, filestream_env=plan.filestream_env)
    try:
        result = run_system(system, ctx)
        result.rep = rep
        return result
    except BenchError as exc:
        return RunError(system, corpus.name, chunk, rep, str(exc))
    except Exception as exc:  # a bug or a client error: keep going with the other runs
        return RunError(system, corpus.name, chunk, rep,
                        f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
