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
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .corpus import CORPORA
from .machine import describe_machine, load_average
from .report import render_markdown, render_table, summarize, write_markdown
from .runner import Plan, execute
from .systems import OMS_VENV, SYSTEMS, openmsistream_available

DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"
QUICK_SCALE = 16


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
    parser.add_argument("--chunk-sizes", type=_sizes, default=None,
                        help="comma-separated bytes (default 524288,1048576; quick 524288)")
    parser.add_argument("--scale", type=int, default=None, help="divide corpus sizes by this (default 1, quick 16)")
    parser.add_argument("--seed", type=int, default=20251204, help="corpus seed")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run")
    parser.add_argument("--bootstrap", default=None, help="use this broker (HOST:PORT) instead of starting one")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file (default bench/RESULTS.md)")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary directory")
    args = parser.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.chunk_sizes = args.chunk_sizes or ((524_288,) if args.quick else (524_288, 1_048_576))
    args.scale = args.scale or (QUICK_SCALE if args.quick else 1)
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
                args.timeout)
    command = " ".join([".venv/bin/python -m bench", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    started, load_before = time.monotonic(), load_average()
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
    machine["load average before / after (1/5/15 min)"] = f"{load_before}  →  {load_average()}"
    settings = {
        "systems": ", ".join(plan.systems),
        "corpora": ", ".join(f"{c} ({CORPORA[c].description})" for c in plan.corpora),
        "scale": f"1/{plan.scale}" if plan.scale > 1 else "1 (full size)", "seed": str(plan.seed),
        "chunk sizes": ", ".join(str(c) for c in plan.chunk_sizes), "partitions": str(plan.partitions),
        "repetitions": str(plan.repeat), "total time": f"{elapsed / 60:.1f} min",
    }
    body = render_markdown(summaries, errors, command=command, machine=machine, settings=settings, runs=results)
    write_markdown(args.out, body)
    print(f"\nwrote {args.out} ({elapsed / 60:.1f} min)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
