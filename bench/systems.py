"""The three systems under test, each moving one corpus through one fresh topic.

Every runner starts its consumer side first and waits until it is ready (assigned), then starts
the clock with the producer; the clock stops when the consumer side has delivered the last
byte (the ceiling) or the last file is verified on disk (OpenMSIStream, filestream).
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import admin
from .ceiling import expected_messages
from .corpus import Corpus
from .measure import CpuSample, MachineCpu, Tracked, proc_cpu_seconds
from .verify import VerificationError, Verifier

__all__ = ["OMS_VENV", "SYSTEMS", "BenchError", "RunContext", "RunResult", "openmsistream_available", "run_system"]

REPO = Path(__file__).resolve().parents[1]
OMS_VENV = REPO / ".venv-openmsistream"
OMS_LOGS = "LOGS"  # DataFileUploadDirectory's registry and log directory inside the upload directory


class BenchError(RuntimeError):
    """A run that produced no figure: a process failed, a timeout, a verification failure."""


@dataclass(frozen=True)
class RunContext:
    """Everything one run needs: where the broker is, what to send, where to work."""

    bootstrap: str
    corpus: Corpus
    chunk_size: int
    partitions: int
    workdir: Path
    tag: str
    timeout: float
    broker_pid: int | None = None
    profile_dir: Path | None = None  # run the filestream worker and uploader under a profiler
    profiler: str = "pyinstrument"  # or "threads": bench/sampler.py, every thread
    filestream_env: tuple[tuple[str, str], ...] = ()  # extra FILESTREAM_* settings for experiments


@dataclass
class RunResult:
    """Figures of one run. CPU and RSS are per role: producer (uploader) and consumer (worker)."""

    system: str
    corpus: str
    chunk_size: int
    rep: int
    bytes: int
    files: int
    wall_s: float
    producer: CpuSample
    consumer: CpuSample
    broker_cpu_s: float | None = None
    bench_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0
    verified_files: int = 0
    verified_bytes: int = 0
    subset_of: int | None = None  # files in the whole corpus, when this run moved only some of them
    producer_done_s: float | None = None  # when the producer process exited, from the start of the clock
    notes: list[str] = field(default_factory=list)

    @property
    def mb_s(self) -> float:
        return self.bytes / 1e6 / self.wall_s

    @property
    def files_s(self) -> float:
        return self.files / self.wall_s

    @property
    def cpu_s_per_gib(self) -> float:
        return (self.producer.cpu_s + self.consumer.cpu_s) / (self.bytes / 2**30)

    @property
    def other_cores(self) -> float:
        """Average cores busy with work outside this run (other tests, the OS) during it."""
        ours = self.producer.cpu_s + self.consumer.cpu_s + (self.broker_cpu_s or 0.0) + self.bench_cpu_s
        return max(0.0, self.machine_cpu_s - ours) / self.wall_s

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system, "corpus": self.corpus, "chunk_size": self.chunk_size, "rep": self.rep,
            "bytes": self.bytes, "files": self.files, "wall_s": round(self.wall_s, 3),
            "mb_s": round(self.mb_s, 2), "files_s": round(self.files_s, 2),
            "cpu_s_per_gib": round(self.cpu_s_per_gib, 2),
            "producer_cpu_s": round(self.producer.cpu_s, 2), "consumer_cpu_s": round(self.consumer.cpu_s, 2),
            "producer_peak_rss": self.producer.peak_rss, "consumer_peak_rss": self.consumer.peak_rss,
            "broker_cpu_s": None if self.broker_cpu_s is None else round(self.broker_cpu_s, 2),
            "other_cores": round(self.other_cores, 2), "verified_files": self.verified_files,
            "verified_bytes": self.verified_bytes, "subset_of": self.subset_of,
            "producer_done_s": self.producer_done_s, "notes": self.notes,
        }


class _Window:
    """The timed window of a run: machine, broker and own CPU from its start."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid
        self.start = time.monotonic()
        self._machine = MachineCpu.busy_seconds()
        self._broker = proc_cpu_seconds(broker_pid) if broker_pid else None
        self._self = _self_cpu()

    def close(self, result: RunResult) -> RunResult:
        """Fill in the machine, broker and benchmark-process CPU used since the start."""
        result.machine_cpu_s = MachineCpu.busy_seconds() - self._machine
        result.bench_cpu_s = _self_cpu() - self._self
        if self.broker_pid and self._broker is not None:
            now = proc_cpu_seconds(self.broker_pid)
            result.broker_cpu_s = None if now is None else now - self._broker
        return result


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _delta(later: CpuSample | None, earlier: CpuSample | None) -> CpuSample:
    if later is None:
        raise BenchError("process accounting unavailable")
    return CpuSample(later.cpu_s - (earlier.cpu_s if earlier else 0.0), later.peak_rss)


def _wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return result


def _check_alive(proc: Tracked, name: str, *, may_exit_ok: bool = False) -> None:
    code = proc.poll()
    if code is None or (may_exit_ok and code == 0):
        return
    raise BenchError(f"{name} exited with code {code}:\n{textwrap.indent(proc.log_tail(), '    ')}")


def _verify(ctx: RunContext, output: Path, healthy: Callable[[], None]) -> tuple[float, Verifier]:
    verifier = Verifier(ctx.corpus, output)
    try:
        end = verifier.wait(ctx.timeout, healthy)
    except VerificationError as exc:
        raise BenchError(str(exc)) from None
    extra = verifier.unexpected()
    if extra:
        raise BenchError(f"{len(extra)} unexpected files in the output: {extra[:5]}")
    return end, verifier


# --------------------------------------------------------------------------- #
# ceiling
# --------------------------------------------------------------------------- #


def _read_line(proc: Tracked, timeout: float) -> str:
    """Next stdout line of a process started with ``stdout=PIPE``, within ``timeout`` s."""
    assert proc.proc.stdout is not None
    ready, _, _ = select.select([proc.proc.stdout], [], [], timeout)
    if not ready:
        raise BenchError(f"no output from {' '.join(proc.argv[:4])} within {timeout:.0f} s")
    return proc.proc.stdout.readline().decode().strip()


def run_ceiling(ctx: RunContext) -> RunResult:
    """Raw aiokafka: chunk-sized messages produced and consumed concurrently, nothing else."""
    topic = f"{ctx.tag}.raw"
    admin.create_topic(ctx.bootstrap, topic, ctx.partitions)
    sizes = [size for size, _ in ctx.corpus.files.values()]
    messages = expected_messages(sizes, ctx.chunk_size)
    base = [sys.executable, "-m", "bench.ceiling"]
    common = ["--bootstrap", ctx.bootstrap, "--topic", topic, "--partitions", str(ctx.partitions)]
    consumer = Tracked([*base, "consume", *common, "--messages", str(messages), "--timeout", str(ctx.timeout)],
                       cwd=REPO, stdout=subprocess.PIPE)
    producer: Tracked | None = None
    try:
        if _read_line(consumer, 60) != "ready":
            raise BenchError("ceiling consumer did not start")
        consumer_base = consumer.sample()
        window = _Window(ctx.broker_pid)
        producer = Tracked([*base, "produce", *common, "--root", str(ctx.corpus.root),
                            "--chunk-size", str(ctx.chunk_size)], cwd=REPO, log=ctx.workdir / "producer.log")
        line = _read_line(consumer, ctx.timeout)
        if producer.wait(60) != 0:
            raise BenchError(f"ceiling producer failed:\n{producer.log_tail()}")
        if consumer.wait(60) != 0 or not line.startswith("{"):
            raise BenchError(f"ceiling consumer failed: {line!r}")
        done = json.loads(line)
        result = RunResult("ceiling", ctx.corpus.name, ctx.chunk_size, 0, ctx.corpus.total_bytes,
                           ctx.corpus.n_files, done["done"] - window.start,
                           _delta(producer.exit_sample, None), _delta(consumer.exit_sample, consumer_base))
        if done["bytes"] != ctx.corpus.total_bytes:
            raise BenchError(f"ceiling consumer got {done['bytes']} bytes, expected {ctx.corpus.total_bytes}")
        result.notes.append(f"{done['messages']} messages counted")
        return window.close(result)
    finally:
        for proc in (producer, consumer):
            if proc is not None:
                proc.stop(5)


# --------------------------------------------------------------------------- #
# filestream
# --------------------------------------------------------------------------- #


def _filestream_argv(ctx: RunContext, role: str) -> list[str]:
    """``filestream`` as ``python -m app`` (app/__main__.py: the same command). Not the console
    script: on the shared benchmark machine another session kills processes whose command line
    matches ``filestream worker`` (observed: an idle worker got SIGTERM), which would end runs.
    With a profile directory, the process runs under pyinstrument (a pyisession file per role, main
    thread only) or bench/sampler.py (a text summary of every thread)."""
    if ctx.profile_dir is None:
        return [sys.executable, "-m", "app"]
    ctx.profile_dir.mkdir(parents=True, exist_ok=True)
    if ctx.profiler == "threads":
        return [sys.executable, "-m", "bench.sampler", str(ctx.profile_dir / f"{ctx.tag}.{role}.threads.txt"),
                "-m", "app"]
    out = ctx.profile_dir / f"{ctx.tag}.{role}.pyisession"
    return [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", str(out), "-m", "app"]


def _status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/filestream/status/", timeout=2) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError, ValueError):
        return None


def run_filestream(ctx: RunContext) -> RunResult:
    """``filestream upload DIR`` into one ``filestream worker`` writing to a directory."""
    output, datadir, web_port = ctx.workdir / "output", ctx.workdir / "data", _free_port()
    env = {
        **os.environ,
        "FILESTREAM_BROKER": ctx.bootstrap,
        "FILESTREAM_APP_ID": ctx.tag,
        "FILESTREAM_CHUNK_TOPIC": f"{ctx.tag}.chunks",
        "FILESTREAM_FILES_TOPIC": f"{ctx.tag}.files",
        "FILESTREAM_DEAD_LETTER_TOPIC": f"{ctx.tag}.dead-letter",
        "FILESTREAM_OUTPUT_DIR": str(output),
        "FILESTREAM_DATADIR": str(datadir),
        "FILESTREAM_WEB_PORT": str(web_port),
        "FILESTREAM_CHUNK_SIZE": str(ctx.chunk_size),
        "FILESTREAM_PARTITIONS": str(ctx.partitions),
        "FILESTREAM_SESSION_TIMEOUT": "6",
        "FILESTREAM_HEARTBEAT_INTERVAL": "1",
        "PYTHONUNBUFFERED": "1",
        **dict(ctx.filestream_env),
    }
    if ctx.profile_dir is not None and ctx.profiler == "threads":
        env["PYTHONPATH"] = str(REPO)  # for bench.sampler; app, agents and tables are the same files
    # Created before the worker starts: a worker that creates them itself can miss the files topic in
    # its first assignment ("Ignoring missing topic"), and then places no file for minutes.
    topics = [env["FILESTREAM_CHUNK_TOPIC"], env["FILESTREAM_FILES_TOPIC"], env["FILESTREAM_DEAD_LETTER_TOPIC"]]
    for topic in topics:
        admin.create_topic(ctx.bootstrap, topic, ctx.partitions)
    worker = Tracked([*_filestream_argv(ctx, "worker"), "worker", "-l", "info"], env=env, cwd=ctx.workdir,
                     log=ctx.workdir / "worker.log")
    uploader: Tracked | None = None
    try:
        def assigned() -> bool:
            _check_alive(worker, "filestream worker")
            status = _status(web_port)
            if not (status and len(status["active_partitions"]) == ctx.partitions):
                return False
            # The status view shows the chunk topic only; the directory processor needs the files topic.
            assignment = admin.group_assignment(ctx.bootstrap, ctx.tag)
            return all(len(assignment.get(t, ())) == ctx.partitions for t in (topics[0], topics[1]))

        _wait_until(assigned, 120, "the filestream worker to be assigned every partition of its topics")
        worker_base = worker.sample()
        window = _Window(ctx.broker_pid)
        uploader = Tracked([*_filestream_argv(ctx, "upload"), "upload", str(ctx.corpus.root)], env=env, cwd=ctx.workdir,
                           log=ctx.workdir / "upload.log")
        up = uploader

        def healthy() -> None:
            _check_alive(worker, "filestream worker")
            _check_alive(up, "filestream upload", may_exit_ok=True)

        end, verifier = _verify(ctx, output, healthy)
        consumer = _delta(worker.sample(), worker_base)
        if uploader.wait(120) != 0:
            raise BenchError(f"filestream upload failed:\n{uploader.log_tail()}")
        result = RunResult("filestream", ctx.corpus.name, ctx.chunk_size, 0, ctx.corpus.total_bytes,
                           ctx.corpus.n_files, end - window.start, _delta(uploader.exit_sample, None), consumer,
                           verified_files=ctx.corpus.n_files, verified_bytes=verifier.hashed_bytes)
        if uploader.exited_at is not None:
            result.producer_done_s = uploader.exited_at - window.start
        if ctx.profile_dir is not None:
            result.notes.append("profiled under pyinstrument: timings are perturbed")
        return window.close(result)
    finally:
        for proc in (uploader, worker):
            if proc is not None:
                proc.stop(30)


# --------------------------------------------------------------------------- #
# OpenMSIStream
# --------------------------------------------------------------------------- #

OMS_CONFIG = """\
# Written by bench/systems.py: the shipped test/prod producer and consumer settings of
# OpenMSIStream 1.8.8, plus message.max.bytes so that 1 MiB chunks fit in a message.
[broker]
bootstrap.servers = {bootstrap}

[producer]
batch.size        = 2000000
linger.ms         = 100
compression.type  = lz4
message.max.bytes = 8388608
key.serializer    = StringSerializer
value.serializer  = DataFileChunkSerializer

[consumer]
group.id           = create_new
auto.offset.reset  = earliest
enable.auto.commit = False
fetch.min.bytes    = 100000
key.deserializer   = StringDeserializer
value.deserializer = DataFileChunkDeserializer
"""


def openmsistream_available() -> bool:
    """True if the OpenMSIStream venv has its console scripts."""
    return (OMS_VENV / "bin" / "DataFileUploadDirectory").exists()


def _oms_stop(*procs: Tracked | None) -> None:
    """Ask OpenMSIStream programs to quit on stdin (each reads one character a second), then
    stop whatever is still running."""
    running = [p for p in procs if p is not None and p.poll() is None]
    for proc in running:
        stdin = proc.proc.stdin
        try:
            if stdin is not None:
                stdin.write(b"q\n")
                stdin.close()
        except OSError:
            pass
    deadline = time.monotonic() + 15
    for proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            proc.stop(10)


def run_openmsistream(ctx: RunContext) -> RunResult:
    """DataFileUploadDirectory --upload_existing into one DataFileDownloadDirectory."""
    if not openmsistream_available():
        raise BenchError(f"OpenMSIStream is not installed in {OMS_VENV}")
    topic, group = f"{ctx.tag}.chunks", f"{ctx.tag}-group"
    output = ctx.workdir / "output"
    config = ctx.workdir / "openmsistream.config"
    config.write_text(OMS_CONFIG.format(bootstrap=ctx.bootstrap))
    admin.create_topic(ctx.bootstrap, topic, ctx.partitions)  # it would be auto-created with 1 partition
    bin_dir = OMS_VENV / "bin"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    downloader = Tracked([str(bin_dir / "DataFileDownloadDirectory"), str(output), "--config", str(config),
                          "--topic_name", topic, "--consumer_group_id", group,
                          "--logger_file_path", str(ctx.workdir / "logs-download")],
                         env=env, cwd=ctx.workdir, log=ctx.workdir / "download.log", stdin=subprocess.PIPE)
    uploader: Tracked | None = None
    try:
        def joined() -> bool:
            _check_alive(downloader, "DataFileDownloadDirectory")
            return admin.group_is_stable(ctx.bootstrap, group, min_members=2)

        _wait_until(joined, 120, "DataFileDownloadDirectory to join its consumer group", interval=0.5)
        downloader_base = downloader.sample()
        window = _Window(ctx.broker_pid)
        # Its registry and log go to <upload dir>/LOGS (removed after the run): with --logger_file_path
        # elsewhere, 1.8.8 matches files against the log directory's parent and uploads nothing.
        uploader = Tracked([str(bin_dir / "DataFileUploadDirectory"), str(ctx.corpus.root), "--config", str(config),
                            "--topic_name", topic, "--upload_existing", "--chunk_size", str(ctx.chunk_size)],
                           env=env, cwd=ctx.workdir, log=ctx.workdir / "upload.log", stdin=subprocess.PIPE)
        up = uploader

        def healthy() -> None:
            _check_alive(downloader, "DataFileDownloadDirectory")
            _check_alive(up, "DataFileUploadDirectory")

        end, verifier = _verify(ctx, output, healthy)
        consumer = _delta(downloader.sample(), downloader_base)
        producer = _delta(uploader.sample(), None)
        result = RunResult("openmsistream", ctx.corpus.name, ctx.chunk_size, 0, ctx.corpus.total_bytes,
                           ctx.corpus.n_files, end - window.start, producer, consumer,
                           verified_files=ctx.corpus.n_files, verified_bytes=verifier.hashed_bytes)
        if verifier.mismatches:
            result.notes.append(f"{verifier.mismatches} early hashes of files still being written")
        return window.close(result)
    finally:
        _oms_stop(uploader, downloader)
        shutil.rmtree(ctx.corpus.root / OMS_LOGS, ignore_errors=True)


SYSTEMS: dict[str, Callable[[RunContext], RunResult]] = {
    "ceiling": run_ceiling,
    "openmsistream": run_openmsistream,
    "filestream": run_filestream,
}


def run_system(system: str, ctx: RunContext) -> RunResult:
    """Run one system once on a fresh topic; its topics are deleted afterwards."""
    try:
        return SYSTEMS[system](ctx)
    finally:
        try:
            admin.delete_topics(ctx.bootstrap, ctx.tag)
        except Exception as exc:  # cleanup must not hide the run's own error
            print(f"warning: could not delete topics {ctx.tag}*: {exc}", file=sys.stderr)
