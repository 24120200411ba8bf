"""``python -m bench.resources``: what a filestream worker costs in memory, restart time and bytes
written (issue 3).

Run from the repository root with the project venv::

    .venv/bin/python -m bench.resources            # full: 512 MiB and 4 GiB files, 2 GiB partial state (~15 min)
    .venv/bin/python -m bench.resources --quick    # scaled down (~3 min)

Measurements, each on its own app id and topics, cleaned up before the next:

1. the worker's peak RSS (VmHWM) while reassembling one large file, at two sizes;
2. its RSS while holding many partial files (every chunk but the last of each);
3. the time from a restart (after SIGKILL, same or empty data directory) with partial state
   until a new small file and then all partial files are out;
4. bytes appended to each topic's log and written to local disk per byte of file.

No source file is written: chunk messages are generated from a seeded PRNG and produced with
aiokafka. A private broker is started (fresh state in a temporary directory) unless
``--bootstrap`` is given. Prints a table and updates the "Resources (issue 3)" section of
``bench/RESULTS.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .resources_cases import Context, RestartResult, partial_state, restart, single_file, write_amplification
from .resources_kafka import BrokerHandle, start_broker
from .resources_report import (
    RESTART_TARGET_S,
    RSS_TARGET_MB,
    Report,
    machine_facts,
    render_markdown,
    render_text,
    update_results_file,
)
from .resources_worker import EXTERNAL_SIGNAL, WorkerError

__all__ = ["FULL", "QUICK", "Plan", "main"]

MIB = 1 << 20
GIB = 1 << 30
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass(frozen=True)
class Plan:
    """Sizes of every measurement."""

    single_sizes: tuple[int, ...]
    partial: tuple[int, int]  #: (files, bytes each)
    restart: tuple[int, int]
    writes: tuple[int, int]


FULL = Plan(single_sizes=(512 * MIB, 4 * GIB), partial=(64, 32 * MIB), restart=(32, 32 * MIB), writes=(8, 32 * MIB))
QUICK = Plan(single_sizes=(64 * MIB, 512 * MIB), partial=(16, 16 * MIB), restart=(8, 32 * MIB), writes=(8, 8 * MIB))
CASES = ("single", "partial", "restart", "writes")


def _cases(text: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items or any(t not in CASES for t in items):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(CASES)} (got {text!r})")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.resources", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="scaled down: 512 MiB file, 256 MiB partial state")
    parser.add_argument("--cases", type=_cases, default=CASES, help=f"comma-separated: {','.join(CASES)}")
    parser.add_argument("--bootstrap", default=None, help="use this broker (HOST:PORT) instead of starting one")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file (default bench/RESULTS.md)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the results file alone")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the scratch directory")
    parser.add_argument("--seed", type=int, default=20251204)
    parser.add_argument("--repeat", type=int, default=1, help="run the selected cases this many times")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _run(report: Report, name: str, job: Callable[[], None]) -> None:
    """Run one measurement; a failure is recorded and the next one still runs. A worker that died,
    stalled or never got its partitions gets one more attempt (on a fresh app id): the first
    failure stays in the report, as it is a finding in itself."""
    started = time.monotonic()
    _log(f"{name} ...")
    for attempt in (1, 2):
        try:
            job()
            break
        except Exception as exc:
            traceback.print_exc()
            text = str(exc)
            first = text.splitlines()[0] if text else ""
            if attempt == 1 and isinstance(exc, WorkerError):
                external = f"{EXTERNAL_SIGNAL.lower()} from another process" in text
                cause = "lost its worker to a signal from another process" if external else f"failed: {first}"
                report.errors.append(f"{name}: attempt 1 {cause}; ran it again")
                _log(f"{name}: attempt 1 {cause}; running it again")
                continue
            report.errors.append(f"{name}: {type(exc).__name__}: {first}")
            break
    _log(f"{name} took {time.monotonic() - started:.0f} s")


def run_plan(plan: Plan, cases: Sequence[str], ctx: Context, report: Report) -> None:
    """Every selected measurement, in order."""
    if "single" in cases:
        for size in plan.single_sizes:
            _run(report, f"1. one {size // MIB} MiB file", lambda s=size: report.single.append(single_file(ctx, s)))
    if "partial" in cases:
        n, size = plan.partial
        _run(report, f"2. {n} partial files of {size // MIB} MiB",
             lambda: report.partial.append(partial_state(ctx, n, size)))
    if "restart" in cases:
        n, size = plan.restart
        for same in (True, False):
            _run(report, f"3. restart ({'same' if same else 'empty'} data dir, {n} x {size // MIB} MiB partial)",
                 lambda same=same: report.restarts.append(restart(ctx, n, size, same_datadir=same)))
    if "writes" in cases:
        n, size = plan.writes
        _run(report, f"4. bytes written, {n} files of {size // MIB} MiB",
             lambda: report.writes.append(write_amplification(ctx, n, size)))


def analysis(report: Report) -> list[str]:
    """Plain statements the figures support (targets, size independence, where restart time goes)."""
    out = []
    if len(report.single) >= 2:
        lo, hi = min(report.single, key=lambda r: r.size), max(report.single, key=lambda r: r.size)
        out.append(f"- Peak RSS with a file {hi.size / lo.size:.0f} times larger: {lo.peak_hwm / 1e6:.0f} MB -> "
                   f"{hi.peak_hwm / 1e6:.0f} MB ({(hi.peak_hwm - lo.peak_hwm) / 1e6:+.0f} MB).")
    worst = max([r.peak_hwm for r in report.single] + [r.final_hwm for r in report.partial], default=0)
    if worst:
        verdict = "within" if worst / 1e6 <= RSS_TARGET_MB else "above"
        out.append(f"- Highest worker peak RSS measured: {worst / 1e6:.0f} MB, {verdict} the "
                   f"{RSS_TARGET_MB:.0f} MB target.")
    out += [_restart_analysis(r) for r in report.restarts]
    return out


def _restart_analysis(r: RestartResult) -> str:
    """Where the seconds of one restart went, from the worker's log and the milestones."""
    where = "same data dir" if r.same_datadir else "empty data dir"
    ev = r.log_events
    parts = [f"{where}: small file out {r.probe_done:.1f} s after process start "
             f"({'met' if r.probe_done < RESTART_TARGET_S else 'missed'} the {RESTART_TARGET_S:.0f} s target)"]
    if "first log line" in ev:
        parts.append(f"{ev['first log line']:.1f} s to start Python and the app")
    if "joining group" in ev and "joined group" in ev:
        parts.append(f"{ev['joined group'] - ev['joining group']:.1f} s in the group join (the killed member "
                     "is only dropped when its session times out)")
    if "tables restored" in ev and "joined group" in ev:
        parts.append(f"{ev['tables restored'] - ev['joined group']:.1f} s restoring the changelogs")
    if "tables restored" in ev:
        parts.append(f"{r.probe_done - ev['tables restored']:.1f} s from there to the small file, whose partition "
                     f"{r.probe_partition} had {r.reread_ahead_of_probe} chunks to re-read from its commit floor "
                     f"first ({r.reread_chunks} in all partitions)")
    parts.append(f"all partial files out at {r.all_done:.1f} s")
    return "- " + "; ".join(parts) + "."


def _code_state() -> str:
    """The commit measured, and which product files (not bench/ or tests/) differed from it at the start."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
        changed = subprocess.run(["git", "diff", "--name-only", "HEAD"], cwd=repo, capture_output=True, text=True,
                                 timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    product = [p for p in changed if not p.startswith(("bench/", "tests/"))]
    return f"{head}" + (f" + uncommitted changes to {', '.join(product)}" if product else "")


def _settings_shown() -> dict[str, str]:
    return {"FILESTREAM_CHUNK_SIZE": "524288", "FILESTREAM_PARTITIONS": "4",
            "FILESTREAM_STREAM_BUFFER": "16 (default)", "FILESTREAM_MAX_FETCH_BYTES": "4194304 (default)",
            "FILESTREAM_SESSION_TIMEOUT": "6", "FILESTREAM_HEARTBEAT_INTERVAL": "1",
            "FILESTREAM_COMMIT_INTERVAL": "1"}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    command = ".venv/bin/python -m bench.resources " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    scratch = Path(tempfile.mkdtemp(prefix="filestream-resources-", dir=args.tmp))
    started = time.monotonic()
    broker: BrokerHandle | None = None
    report = Report(command.strip(), {}, _settings_shown(), time.strftime("%Y-%m-%d %H:%M:%S %Z"), load=(_load(), ""))
    try:
        if args.bootstrap:
            broker = BrokerHandle(args.bootstrap)
        else:
            _log(f"starting a private broker under {scratch / 'broker'}")
            broker = start_broker(scratch / "broker")
            _log(f"broker {broker.bootstrap} (pid {broker.pid})")
        report.machine = {**machine_facts(broker.kafka_version), "code": _code_state()}
        session = uuid.uuid4().hex[:6]
        logs = Path(tempfile.gettempdir()) / f"filestream-resources-failed-{session}"
        ctx = Context(broker, scratch / "cases", session, seed=args.seed, log=_log, failed_logs=logs)
        for _ in range(args.repeat):
            run_plan(plan, args.cases, ctx, report)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    report.duration_s = time.monotonic() - started
    report.load = (report.load[0], _load())
    print()
    print(render_text(report))
    notes = analysis(report)
    print("\n".join(notes))
    if not args.no_write:
        update_results_file(args.out, render_markdown(report, notes))
        _log(f"wrote the resources section of {args.out}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
