"""``python -m bench``: throughput of filestream against raw aiokafka and OpenMSIStream.

Run from the repository root with the project venv::

    .venv/bin/python -m bench            # full run (about 15 minutes on 2 cores)
    .venv/bin/python -m bench --quick    # corpora 16x smaller, one run each, 512 KiB chunks

It starts the project's local broker on spare ports with fresh state in a temporary directory
(or uses ``--bootstrap HOST:PORT``), generates the corpora from a seed, runs every selected
system on each, prints a table and writes ``bench/RESULTS.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .corpus import CORPORA
from .machine import REPO, describe_machine, git_revision, load_average
from .report import render_markdown, render_table, summarize, write_markdown
from .runner import Plan, execute
from .systems import OMS_VENV, SYSTEMS, openmsistream_available

DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"
QUICK_SCALE = 16
OMS_MAX_FILES = 500
"""OpenMSIStream uploads one file per 50 ms turn of its main loop (about 19 files/s), so all 5,000 small
files would take over 4 minutes per run; its rate is the same on the first 500."""


def _csv(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        unknown = [t for t in items if t not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (got {text!r})")
        return items

    return parse


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated byte counts expected, got {text!r}") from None
    if not sizes or min(sizes) < 1024:
        raise argparse.ArgumentTypeError("chunk sizes must be at least 1024 bytes")
    return sizes


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("FILESTREAM_"):
        raise argparse.ArgumentTypeError(f"FILESTREAM_NAME=VALUE expected, got {text!r}")
    return name, value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"corpora {QUICK_SCALE}x smaller, 1 repetition, default chunk size only")
    parser.add_argument("--systems", type=_csv(tuple(SYSTEMS)), default=tuple(SYSTEMS),
                        help="comma-separated: ceiling,openmsistream,filestream (default: all)")
    parser.add_argument("--corpora", type=_csv(tuple(CORPORA)), default=tuple(CORPORA),
                        help="comma-separated: large,small,mixed (default: all)")
    parser.add_argument("--repeat", type=int, default=None, help="runs of each measurement (default 3, quick 1)")
    parser.add_argument("--repeat-other", type=int, default=None,
                        help="runs at the chunk sizes after the first (default: as --repeat)")
    parser.add_argument("--oms-max-files", type=int, default=None,
                        help="OpenMSIStream moves at most this many files of a corpus (default 500; 0: all)")
    parser.add_argument("--chunk-sizes", type=_sizes, default=None,
                        help="comma-separated bytes (default 524288,1048576; quick 524288)")
    parser.add_argument("--scale", type=int, default=None, help="divide corpus sizes by this (default 1, quick 16)")
    parser.add_argument("--seed", type=int, default=20251204, help="corpus seed")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run")
    parser.add_argument("--bootstrap", default=None, help="use this broker (HOST:PORT) instead of starting one")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file (default bench/RESULTS.md)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="run filestream's worker and uploader under a profiler, reports saved in DIR")
    parser.add_argument("--profiler", choices=("pyinstrument", "threads"), default="pyinstrument",
                        help="pyinstrument (main thread, needs it installed) or threads (bench/sampler.py)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="FILESTREAM_X=VALUE",
                        type=_setting, help="extra filestream setting for its worker and uploader (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's figures here as JSON")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary directory")
    args = parser.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.chunk_sizes = args.chunk_sizes or ((524_288,) if args.quick else (524_288, 1_048_576))
    args.scale = args.scale or (QUICK_SCALE if args.quick else 1)
    if args.oms_max_files is None:
        args.oms_max_files = OMS_MAX_FILES
    if args.repeat < 1 or args.scale < 1 or args.partitions < 1:
        parser.error("--repeat, --scale and --partitions must be positive")
    return args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(message: str) -> None:
    print(message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if "openmsistream" in args.systems and not openmsistream_available():
        print(f"error: OpenMSIStream not found in {OMS_VENV}; create it with: python3 -m venv .venv-openmsistream "
              "&& .venv-openmsistream/bin/pip install openmsistream==1.8.8 (or leave it out with --systems)",
              file=sys.stderr)
        return 2
    plan = Plan(args.systems, args.corpora, args.chunk_sizes, args.repeat, args.scale, args.seed, args.partitions,
                args.timeout, profile_dir=args.profile.resolve() if args.profile else None, profiler=args.profiler,
                repeat_other=args.repeat_other, oms_max_files=args.oms_max_files or None,
                filestream_env=tuple(args.settings))
    command = " ".join([".venv/bin/python -m bench", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    started, load_before, revision = time.monotonic(), load_average(), git_revision(REPO)
    with tempfile.TemporaryDirectory(prefix="filestream-bench-", dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        broker = None
        try:
            if args.bootstrap:
                bootstrap, broker_pid, kafka = args.bootstrap, None, f"external broker at {args.bootstrap}"
            else:
                from app.local_broker import KAFKA_VERSION, LocalBroker

                broker = LocalBroker(_free_port(), controller_port=_free_port(), state_root=tmp / "broker",
                                     extra_properties={"file.delete.delay.ms": "1000"})
                _log("starting the local broker ...")
                status = broker.up()
                bootstrap, broker_pid = status.bootstrap, status.pid
                kafka = f"Apache Kafka {KAFKA_VERSION} (KRaft, local broker of app/local_broker.py)"
                _log(f"broker {bootstrap} (pid {broker_pid}) ready")
            results, errors = execute(plan, bootstrap, broker_pid, tmp, _log)
        finally:
            if broker is not None:
                broker.down()
    elapsed = time.monotonic() - started
    summaries = summarize(results)
    print()
    print(render_table(summaries, errors))
    machine = describe_machine(kafka, OMS_VENV / "bin" / "python")
    machine["load average before / after (1/5/15 min)"] = f"{load_before} -> {load_average()}"
    machine["filestream commit"] = revision
    if git_revision(REPO) != revision:
        machine["filestream commit"] += f"; at the end: {git_revision(REPO)} (the code changed during the run)"
    settings = {
        "systems": ", ".join(plan.systems),
        "corpora": ", ".join(f"{c} ({CORPORA[c].description})" for c in plan.corpora),
        "scale": f"1/{plan.scale}" if plan.scale > 1 else "1 (full size)", "seed": str(plan.seed),
        "chunk sizes": ", ".join(str(c) for c in plan.chunk_sizes), "partitions": str(plan.partitions),
        "repetitions": str(plan.repeat) + ("" if plan.repeat_other is None
                                           else f" (first chunk size), {plan.repeat_other} (others)"),
        "OpenMSIStream file cap": (f"first {plan.oms_max_files} files of a larger corpus (small)" if plan.oms_max_files
                                   else "none"),
        "filestream settings": "FILESTREAM_SESSION_TIMEOUT=6 FILESTREAM_HEARTBEAT_INTERVAL=1 (fast group join), "
                               "own app id, topics (created before the worker starts), output and data dirs; "
                               "everything else default",
        "OpenMSIStream settings": "shipped producer/consumer config (lz4, batch.size 2000000, linger.ms 100, "
                                  "fetch.min.bytes 100000) + message.max.bytes 8388608; 2 upload and 2 download "
                                  "threads (defaults)",
        "extra filestream settings": " ".join(f"{k}={v}" for k, v in plan.filestream_env) or "none (defaults)",
        "total time": f"{elapsed / 60:.1f} min",
    }
    body = render_markdown(summaries, errors, command=command, machine=machine, settings=settings, runs=results)
    write_markdown(args.out, body)
    if args.json is not None:
        errors_json = [{"system": e.system, "corpus": e.corpus, "chunk_size": e.chunk_size, "rep": e.rep,
                        "message": e.message} for e in errors]
        args.json.write_text(json.dumps({"runs": [r.to_json() for r in results], "errors": errors_json}, indent=1))
    print(f"\nwrote {args.out} ({elapsed / 60:.1f} min)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
