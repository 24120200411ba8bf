"""The four resource measurements of issue 3, each on its own app id, topics and directories,
all removed again before the next case starts (disk use stays bounded)."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from .resources_kafka import BrokerHandle, delete_topics, group_offsets, payload_bytes, produce, topic_log_bytes
from .resources_synth import SyntheticFile, interleaved, last_chunks, sha512_of_path, synthetic_set
from .resources_worker import IoSample, MemSample, Worker, WorkerError, read_io, wait_until, worker_env

__all__ = ["Context", "PartialStateResult", "RestartResult", "SingleFileResult", "WriteResult", "partial_state",
           "restart", "single_file", "write_amplification"]

MIB = 1 << 20
PROBE_SIZE = 64 * 1024
#: Floor of the throughput assumed when sizing timeouts (the machine is shared).
SLOW_BYTES_PER_S = 4 * MIB


@dataclass
class Context:
    """Shared by every case: the broker, a scratch root, and the chunking."""

    broker: BrokerHandle
    root: Path
    session: str
    chunk_size: int = 524_288
    partitions: int = 4
    seed: int = 20251204
    log: Callable[[str], None] = print
    #: where the worker logs of a failed case are copied (None: not kept)
    failed_logs: Path | None = None


def _timeout(nbytes: int) -> float:
    return 120 + nbytes / SLOW_BYTES_PER_S


class Case:
    """One isolated deployment (app id ``res-<session>-<name>-<random>``); cleans up on exit."""

    def __init__(self, ctx: Context, name: str, **settings: str) -> None:
        self.ctx = ctx
        attempt = uuid.uuid4().hex[:4]  # a retried case gets fresh topics and a fresh consumer group
        self.app_id = f"res-{ctx.session}-{name}-{attempt}"
        self.dir = ctx.root / f"{name}-{attempt}"
        self.output = self.dir / "output"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = worker_env(ctx.broker.bootstrap, self.app_id, self.output, partitions=ctx.partitions,
                              chunk_size=ctx.chunk_size, **settings)
        self.workers: list[Worker] = []

    @property
    def chunk_topic(self) -> str:
        return self.env["FILESTREAM_CHUNK_TOPIC"]

    def worker(self, label: str, datadir: Path | None = None) -> Worker:
        w = Worker(label, self.env, self.dir, datadir or self.dir / f"{label}-data")
        self.workers.append(w)
        return w

    def start_worker(self, label: str, datadir: Path | None = None) -> Worker:
        """Start a worker and wait until it owns every partition."""
        w = self.worker(label, datadir).start()
        w.wait_assigned(self.ctx.partitions)
        return w

    def produce(self, messages: Iterable[tuple[bytes, bytes]]) -> float:
        """Send chunk messages; returns seconds until all were acknowledged."""
        return produce(self.ctx.broker.bootstrap, self.chunk_topic, messages).seconds

    def __enter__(self) -> Case:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for w in self.workers:
            if w.proc is not None:
                w.stop()
        if exc is not None and self.ctx.failed_logs is not None:
            keep = self.ctx.failed_logs / self.dir.name
            keep.mkdir(parents=True, exist_ok=True)
            for log in self.dir.glob("*.log"):
                shutil.copy(log, keep / log.name)
            self.ctx.log(f"  worker logs of the failed case kept in {keep}")
        try:
            delete_topics(self.ctx.broker.bootstrap, self.app_id)
        except Exception as err:  # cleanup must not hide the case's own error
            self.ctx.log(f"  (could not delete topics of {self.app_id}: {err!r})")
        shutil.rmtree(self.dir, ignore_errors=True)


def _digests(files: Sequence[SyntheticFile]) -> tuple[list[bytes], float]:
    started = time.monotonic()
    return [f.digest() for f in files], time.monotonic() - started


def _wait_outputs(output: Path, relpaths: Sequence[str], workers: Sequence[Worker], timeout: float,
                  interval: float = 0.1) -> dict[str, float]:
    """Wait until every ``output/relpath`` exists (they appear atomically, by rename); returns the
    monotonic time each was first seen."""
    seen: dict[str, float] = {}

    def done() -> bool:
        for w in workers:
            if w.proc is not None and w.proc.returncode is None:
                w.check_alive()
        now = time.monotonic()
        for rel in relpaths:
            if rel not in seen and (output / rel).exists():
                seen[rel] = now
        return len(seen) == len(relpaths)

    try:
        wait_until(done, timeout, f"{len(relpaths) - len(seen)} of {len(relpaths)} files in {output}", interval)
    except WorkerError as exc:
        tails = "\n".join(f"--- {w.name}: {w.status()}\n{w.log_tail(15)}" for w in workers if w.proc is not None)
        raise WorkerError(f"{exc}\n{tails}") from None
    return seen


def _verify(output: Path, files: Sequence[SyntheticFile], hashes: Sequence[bytes]) -> int:
    """Read every output back and compare its SHA-512; returns the bytes verified."""
    total = 0
    for f, h in zip(files, hashes, strict=True):
        path = output / f.relpath
        if path.stat().st_size != f.size or sha512_of_path(path) != h:
            raise WorkerError(f"{path} does not match the uploaded bytes")
        total += f.size
    return total


# --------------------------------------------------------------------------- #
# 1. one large file
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class SingleFileResult:
    """Worker memory while reassembling one file of ``size`` bytes."""

    size: int
    idle: MemSample
    peak_hwm: int
    exit_maxrss: int | None
    digest_s: float
    transfer_s: float
    verify_s: float


def single_file(ctx: Context, size: int) -> SingleFileResult:
    """Produce one synthetic file of ``size`` bytes, wait until it is verified on disk, read the
    worker's VmHWM, then delete everything."""
    with Case(ctx, f"single-{size // MIB}m") as case:
        w = case.start_worker("w")
        idle = w.memory()
        f = SyntheticFile(f"big/file-{size // MIB}m.bin", size, ctx.seed, ctx.chunk_size)
        (h,), digest_s = _digests([f])
        ctx.log(f"  {size / MIB:.0f} MiB: digest {digest_s:.1f} s, producing {f.total} chunks")
        started = time.monotonic()
        case.produce(f.messages(h))
        _wait_outputs(case.output, [f.relpath], case.workers, _timeout(size), interval=0.2)
        transfer_s = time.monotonic() - started
        verified_at = time.monotonic()
        _verify(case.output, [f], [h])
        verify_s = time.monotonic() - verified_at
        peak = w.memory().hwm
        (case.output / f.relpath).unlink()
        w.stop()
        return SingleFileResult(size, idle, peak, w.exit_maxrss, digest_s, transfer_s, verify_s)


# --------------------------------------------------------------------------- #
# 2. many partial files
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class PartialStateResult:
    """Worker memory while it holds ``count`` partial files of ``size`` bytes (all but one chunk)."""

    count: int
    size: int
    held_bytes: int
    idle: MemSample
    holding: MemSample
    staged_bytes: int
    final_hwm: int
    hold_s: float
    finish_s: float


def _expected_partial(f: SyntheticFile) -> int:
    return f.size - len(f.chunk_bytes(f.total)) if f.total > 1 else 0


def _holds_all(files: Sequence[SyntheticFile]) -> Callable[[dict[str, object]], bool]:
    """Status predicate: every file is partial with all but its last chunk received."""
    want = {f.relpath: _expected_partial(f) for f in files}

    def check(st: dict[str, object]) -> bool:
        partials = st["partial_files"]
        assert isinstance(partials, list)
        got = {p["relpath"]: p["bytes_received"] for p in partials}
        return got == want

    return check


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file())


def partial_state(ctx: Context, count: int, size: int) -> PartialStateResult:
    """Hold ``count`` partial uploads (interleaved, as concurrent uploads), record memory, then
    complete them and verify every output."""
    with Case(ctx, f"partial-{count}x{size // MIB}m") as case:
        w = case.start_worker("w")
        idle = w.memory()
        files = synthetic_set("partial/p", count, size, ctx.seed + 1000, ctx.chunk_size)
        hashes, digest_s = _digests(files)
        ctx.log(f"  {count} x {size / MIB:.0f} MiB: digests {digest_s:.1f} s, producing all but the last chunks")
        started = time.monotonic()
        case.produce(interleaved(files, hashes, hold_last=True))
        w.wait_status(_holds_all(files), _timeout(count * size), f"{count} partial files", interval=0.5)
        hold_s = time.monotonic() - started
        holding = w.memory()
        staged = _dir_bytes(w.datadir / "staging")
        started = time.monotonic()
        case.produce(last_chunks(files, hashes))
        _wait_outputs(case.output, [f.relpath for f in files], case.workers, _timeout(count * size), interval=0.2)
        finish_s = time.monotonic() - started
        _verify(case.output, files, hashes)
        final = w.memory().hwm
        held = sum(_expected_partial(f) for f in files)
        return PartialStateResult(count, size, held, idle, holding, staged, final, hold_s, finish_s)


# --------------------------------------------------------------------------- #
# 3. restart with partial state
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class RestartResult:
    """Seconds from the restarted worker's process start to each milestone."""

    same_datadir: bool
    count: int
    size: int
    reread_chunks: int
    reread_bytes: int
    status_up: float | None
    assigned: float | None
    probe_done: float
    all_done: float
    log_events: dict[str, float]
    joins: int
    counters: dict[str, float]
    probe_sent: float
    last_sent: float
    probe_partition: int
    reread_ahead_of_probe: int


def _commit_lag(case: Case, ends: dict[int, int]) -> dict[int, int]:
    """Chunk messages between the group's committed offsets and the ends of the chunk topic, by partition."""
    committed = group_offsets(case.ctx.broker.bootstrap, case.app_id)
    return {p: end - max(0, committed.get((case.chunk_topic, p), 0)) for p, end in ends.items()}


class _Milestones:
    """Polls a restarted worker until the probe and every other file exist in the output, noting
    when its status first answered, when it owned every partition and when each file appeared.
    A worker that makes no progress (no counter moves, no file appears) for ``STALL_S`` fails."""

    STALL_S = 30.0

    def __init__(self, case: Case, w: Worker, probe: str, rest: Sequence[str]) -> None:
        self.case, self.w, self.probe, self.rest = case, w, probe, rest
        self.status_up: float | None = None
        self.assigned: float | None = None
        self._progress: tuple[object, ...] = ()
        self._progress_at = time.monotonic()

    def run(self, timeout: float) -> tuple[float, float]:
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        next_status = 0.0
        while len(seen) < len(self.rest) + 1:
            self.w.check_alive()
            now = time.monotonic()
            if now >= next_status:
                self._poll_status(len(seen))
                next_status = now + (0.1 if self.assigned is None else 1.0)
            for rel in (self.probe, *self.rest):
                if rel not in seen and (self.case.output / rel).exists():
                    seen[rel] = self.w.since_start()
            stalled = self.assigned is not None and now - self._progress_at > self.STALL_S
            if now > deadline or stalled:
                raise WorkerError(self._diagnosis(seen, "stalled: no progress for "
                                                  f"{self.STALL_S:.0f} s" if stalled else f"{timeout:.0f} s passed"))
            time.sleep(0.02)
        return seen[self.probe], max(seen[r] for r in self.rest)

    def _poll_status(self, files_seen: int) -> None:
        st = self.w.status()
        if st is None:
            return
        if self.status_up is None:
            self.status_up = self.w.since_start()
        if self.assigned is None and len(st["active_partitions"]) == self.case.ctx.partitions:
            self.assigned = self.w.since_start()
        progress = (files_seen, tuple(sorted((k, v) for k, v in dict(st["counters"]).items() if k != "uptime_s")))
        if progress != self._progress:
            self._progress, self._progress_at = progress, time.monotonic()

    def _diagnosis(self, seen: dict[str, float], why: str) -> str:
        missing = [r for r in (self.probe, *self.rest) if r not in seen]
        committed = group_offsets(self.case.ctx.broker.bootstrap, self.case.app_id)
        st = self.w.status() or {}
        partials = [f"{p['relpath']} {p['state']} {p['chunks']} (partition {p['partition']}, first offset "
                    f"{p['first_offset']})" for p in st.get("partial_files", [])]
        return (f"restart: {len(seen)} of {len(self.rest) + 1} files out, {why}; missing {missing}; "
                f"group's committed offsets {committed}; worker counters {st.get('counters')}; "
                f"commit floors {st.get('commit_floors')}; partial files {partials}")


def restart(ctx: Context, count: int, size: int, *, same_datadir: bool) -> RestartResult:
    """Build ``count`` partial files of ``size`` bytes, SIGKILL the worker, start a new one (same
    or empty data directory), upload a small file and the last chunks right away, and time it."""
    label = "same" if same_datadir else "empty"
    with Case(ctx, f"restart-{label}-{count}x{size // MIB}m") as case:
        first = case.start_worker("before")
        files = synthetic_set("restart/r", count, size, ctx.seed + 2000, ctx.chunk_size)
        hashes, digest_s = _digests(files)
        probe = SyntheticFile("restart/probe.bin", PROBE_SIZE, ctx.seed + 2999, ctx.chunk_size)
        probe_hash = probe.digest()
        ctx.log(f"  {label} datadir, {count} x {size / MIB:.0f} MiB: digests {digest_s:.1f} s, building partial state")
        ends = produce(ctx.broker.bootstrap, case.chunk_topic, interleaved(files, hashes, hold_last=True)).end_offsets
        first.wait_status(_holds_all(files), _timeout(count * size), f"{count} partial files", interval=0.5)
        time.sleep(3 * float(case.env["FILESTREAM_COMMIT_INTERVAL"]))  # let commits and changelog writes land
        lag = _commit_lag(case, ends)
        first.kill()
        second = case.worker("after", first.datadir if same_datadir else case.dir / "other-host-data")
        sent: dict[str, float] = {}
        second.start()

        def upload() -> None:
            result = produce(ctx.broker.bootstrap, case.chunk_topic, probe.messages(probe_hash))
            sent["probe"] = second.since_start()
            sent["probe partition"] = min(result.end_offsets)
            case.produce(last_chunks(files, hashes))
            sent["last"] = second.since_start()

        sender = threading.Thread(target=upload, name="restart-upload")
        sender.start()
        marks = _Milestones(case, second, probe.relpath, [f.relpath for f in files])
        probe_done, all_done = marks.run(_timeout(count * size))
        sender.join()
        _verify(case.output, [*files, probe], [*hashes, probe_hash])
        st = second.status() or {}
        counters = {k: v for k, v in dict(st.get("counters", {})).items() if k != "uptime_s"}
        reread = sum(lag.values())
        part = int(sent.get("probe partition", -1))
        return RestartResult(same_datadir, count, size, reread, reread * ctx.chunk_size, marks.status_up,
                             marks.assigned, probe_done, all_done, second.log_events(),
                             second.count_log(r"Joined group"), counters, sent.get("probe", -1.0),
                             sent.get("last", -1.0), part, lag.get(part, 0))


# --------------------------------------------------------------------------- #
# 4. bytes written per byte of file
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class WriteResult:
    """Bytes written while ``count`` files of ``size`` bytes went through, by destination."""

    count: int
    size: int
    app_id: str = ""
    log_bytes: dict[str, int] = field(default_factory=dict)  #: topic -> growth of its log segments
    payload: dict[str, tuple[int, int]] = field(default_factory=dict)  #: topic -> (records, payload bytes)
    worker_io: IoSample | None = None
    broker_io: IoSample | None = None
    same_filesystem: bool = False
    output_nlink: int = 0

    @property
    def file_bytes(self) -> int:
        return self.count * self.size


def _topics(case: Case, data_dir: Path | None) -> list[str]:
    """Every topic of this deployment present on the broker's disk, plus the group offsets topic."""
    names = {case.chunk_topic, case.env["FILESTREAM_FILES_TOPIC"], case.env["FILESTREAM_DEAD_LETTER_TOPIC"],
             *(f"{case.app_id}-{t}-changelog" for t in ("partial-files", "finished-files", "placed-versions"))}
    if data_dir is not None and data_dir.is_dir():
        for entry in data_dir.iterdir():
            topic, _, part = entry.name.rpartition("-")
            if part.isdigit() and topic.startswith(f"{case.app_id}-"):
                names.add(topic)
    return [*sorted(names), "__consumer_offsets"]


def _settled(count: int) -> Callable[[dict[str, object]], bool]:
    return lambda st: not st["partial_files"] and st["finished_files"] == count


def write_amplification(ctx: Context, count: int, size: int) -> WriteResult:
    """Send ``count`` files of ``size`` bytes through one worker; measure what each topic's log,
    the worker's disk writes and the broker's disk writes grew by."""
    with Case(ctx, f"writes-{count}x{size // MIB}m") as case:
        w = case.start_worker("w")
        files = synthetic_set("corpus/c", count, size, ctx.seed + 3000, ctx.chunk_size)
        hashes, _ = _digests(files)
        data_dir = ctx.broker.data_dir
        time.sleep(2)  # let start-up commits and table declarations land before the baseline
        topics = _topics(case, data_dir)
        before = topic_log_bytes(data_dir, topics) if data_dir is not None else {}
        io_before = w.io()
        broker_before = read_io(ctx.broker.pid) if ctx.broker.pid is not None else None
        case.produce(interleaved(files, hashes, hold_last=False))  # concurrent uploads
        _wait_outputs(case.output, [f.relpath for f in files], case.workers, _timeout(count * size))
        w.wait_status(_settled(count), 120, f"{count} finished files and no partial file")
        time.sleep(3 * float(case.env["FILESTREAM_COMMIT_INTERVAL"]))  # commits and tombstones land
        io_delta = w.io().minus(io_before)
        broker_after = read_io(ctx.broker.pid) if ctx.broker.pid is not None else None
        topics = _topics(case, data_dir)
        after = topic_log_bytes(data_dir, topics) if data_dir is not None else {}
        _verify(case.output, files, hashes)
        out = case.output / files[0].relpath
        same_fs = out.stat().st_dev == w.datadir.stat().st_dev
        payload = {t: payload_bytes(ctx.broker.bootstrap, t) for t in topics if t != "__consumer_offsets"}
        growth = {t: after.get(t, 0) - before.get(t, 0) for t in topics} if data_dir is not None else {}
        broker_io = broker_after.minus(broker_before) if broker_after and broker_before else None
        return WriteResult(count, size, case.app_id, growth, payload, io_delta, broker_io, same_fs, out.stat().st_nlink)
