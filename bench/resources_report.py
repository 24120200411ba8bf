"""Tables of the resource measurements (plain text and Markdown) and the section of
``bench/RESULTS.md`` between ``<!-- resources:start -->`` and ``<!-- resources:end -->``.

Units: MB = 10^6 bytes (RSS, as the 300 MB target), MiB = 2^20 bytes (file sizes).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .resources_cases import PartialStateResult, RestartResult, SingleFileResult, WriteResult

__all__ = ["Report", "machine_facts", "render_markdown", "render_text", "update_results_file"]

START, END = "<!-- resources:start -->", "<!-- resources:end -->"
HEADING = "## Resources (issue 3)"
RSS_TARGET_MB = 300.0
RESTART_TARGET_S = 10.0
MIB = 1 << 20
#: The other harness (``python -m bench``) rewrites RESULTS.md but keeps everything from this heading on.
NOTES_HEADING = "## Notes"


@dataclass
class Report:
    """Everything one ``python -m bench.resources`` run found."""

    command: str
    machine: dict[str, str]
    settings: dict[str, str]
    started: str
    duration_s: float = 0.0
    load: tuple[str, str] = ("", "")
    single: list[SingleFileResult] = field(default_factory=list)
    partial: list[PartialStateResult] = field(default_factory=list)
    restarts: list[RestartResult] = field(default_factory=list)
    writes: list[WriteResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[0] if lines else "unknown"


def _proc_field(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine_facts(kafka: str) -> dict[str, str]:
    """nproc, memory, CPU model, kernel, Python, Java, Kafka and client library versions."""
    mem_kib = _proc_field("/proc/meminfo", "MemTotal:").split()[0]
    facts = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": f"{int(mem_kib) / 2**20:.1f} GiB" if mem_kib.isdigit() else "unknown",
        "CPU model": _proc_field("/proc/cpuinfo", "model name"),
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Java": _first_line(["java", "-version"]),
        "Kafka": kafka,
    }
    for name in ("faust-streaming", "aiokafka"):
        try:
            facts[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            facts[name] = "not installed"
    return facts


def _mb(n: int | float | None) -> str:
    return "-" if n is None else f"{n / 1e6:.0f} MB"


def _mib(n: int) -> str:
    return f"{n / MIB / 1024:.0f} GiB" if n >= 1 << 30 and n % (1 << 30) == 0 else f"{n / MIB:.0f} MiB"


def _ratio(x: float) -> str:
    """Bytes per file byte: 4 decimals, or 2 significant digits when tiny."""
    return "0" if x == 0 else f"{x:.4f}" if x >= 0.01 else f"{x:.1e}"


def _s(x: float | None) -> str:
    return "-" if x is None or x < 0 else f"{x:.1f} s"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def single_rows(results: Sequence[SingleFileResult]) -> tuple[list[str], list[list[str]]]:
    head = ["file", "idle RSS", "peak RSS (VmHWM)", "maxrss at exit", f"target <= {RSS_TARGET_MB:.0f} MB",
            "produce -> verified on disk", "MB/s"]
    rows = [[_mib(r.size), _mb(r.idle.rss), _mb(r.peak_hwm), _mb(r.exit_maxrss),
             _verdict(r.peak_hwm / 1e6 <= RSS_TARGET_MB), _s(r.transfer_s), f"{r.size / r.transfer_s / 1e6:.0f}"]
            for r in results]
    return head, rows


def partial_rows(results: Sequence[PartialStateResult]) -> tuple[list[str], list[list[str]]]:
    head = ["partial files", "held (all but last chunk)", "staged on disk", "idle RSS", "RSS while holding",
            "peak RSS (VmHWM) while holding", "peak RSS after completing all", f"target <= {RSS_TARGET_MB:.0f} MB"]
    rows = []
    for r in results:
        rows.append([f"{r.count} x {_mib(r.size)}", _mib(r.held_bytes), _mib(r.staged_bytes), _mb(r.idle.rss),
                     _mb(r.holding.rss), _mb(r.holding.hwm), _mb(r.final_hwm),
                     _verdict(r.final_hwm / 1e6 <= RSS_TARGET_MB)])
    return head, rows


def restart_rows(results: Sequence[RestartResult]) -> tuple[list[str], list[list[str]]]:
    head = ["restart with", "partial state", "re-read (commit floor -> end)", "ahead of the small file",
            "status up", "joining group", "joined group", "tables restored", "small file out",
            "all partial files out", f"target < {RESTART_TARGET_S:.0f} s (small file)"]
    rows = []
    for r in results:
        ev = r.log_events
        rows.append(["same data dir" if r.same_datadir else "empty data dir (other host)",
                     f"{r.count} x {_mib(r.size)} - 1 chunk", f"{r.reread_chunks} chunks ({_mib(r.reread_bytes)})",
                     f"{r.reread_ahead_of_probe} chunks (partition {r.probe_partition})", _s(r.status_up),
                     _s(ev.get("joining group")), _s(ev.get("joined group")), _s(ev.get("tables restored")),
                     _s(r.probe_done), _s(r.all_done), _verdict(r.probe_done < RESTART_TARGET_S)])
    return head, rows


def _topic(r: WriteResult, topic: str) -> str:
    return topic.replace(r.app_id, "<app_id>") if r.app_id else topic


def write_rows(r: WriteResult) -> tuple[list[str], list[list[str]]]:
    head = ["written to", "bytes", "per file byte", "records read back", "payload bytes read back"]
    rows = []
    for topic, grown in r.log_bytes.items():
        records, payload = r.payload.get(topic, (0, 0))
        shown = "-" if topic == "__consumer_offsets" else f"{payload:,}"
        rows.append([f"Kafka log `{_topic(r, topic)}`", f"{grown:,}", _ratio(grown / r.file_bytes),
                     "-" if topic == "__consumer_offsets" else f"{records:,}", shown])
    if not r.log_bytes:  # external broker: only what can be read back
        for topic, (records, payload) in r.payload.items():
            rows.append([f"Kafka topic `{_topic(r, topic)}` (payload)", f"{payload:,}", _ratio(payload / r.file_bytes),
                         f"{records:,}", f"{payload:,}"])
    if r.worker_io is not None:
        io = r.worker_io
        rows.append(["worker disk: write_bytes (staging + output)", f"{io.write_bytes:,}",
                     _ratio(io.write_bytes / r.file_bytes), "-", "-"])
        rows.append(["worker disk: cancelled_write_bytes", f"{io.cancelled_write_bytes:,}",
                     _ratio(io.cancelled_write_bytes / r.file_bytes), "-", "-"])
        rows.append(["worker write(2) calls: wchar", f"{io.wchar:,}", _ratio(io.wchar / r.file_bytes), "-", "-"])
    if r.broker_io is not None:
        rows.append(["broker disk: write_bytes (all its files)", f"{r.broker_io.write_bytes:,}",
                     _ratio(r.broker_io.write_bytes / r.file_bytes), "-", "-"])
    return head, rows


def _text_table(title: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return [title, fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*row) for row in rows), ""]


def _sections(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    out: list[tuple[str, list[str], list[list[str]]]] = []
    if report.single:
        out.append(("1. Worker peak RSS while reassembling one file", *single_rows(report.single)))
    if report.partial:
        out.append(("2. Worker RSS while holding many partial files", *partial_rows(report.partial)))
    if report.restarts:
        out.append(("3. Worker restart with partial state (seconds from process start)",
                    *restart_rows(report.restarts)))
    for w in report.writes:
        out.append((f"4. Bytes written for {w.count} files x {_mib(w.size)} ({_mib(w.file_bytes)})", *write_rows(w)))
    return out


def render_text(report: Report) -> str:
    """Plain-text tables for the terminal."""
    lines: list[str] = []
    for title, head, rows in _sections(report):
        lines += _text_table(title, head, rows)
    lines += [f"ERROR: {e}" for e in report.errors]
    return "\n".join(lines)


def _restart_notes(report: Report) -> list[str]:
    notes = []
    for r in report.restarts:
        where = "same data dir" if r.same_datadir else "empty data dir"
        counters = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r.counters.items())) or "none"
        events = ", ".join(f"{k} {v:.1f} s" for k, v in r.log_events.items())
        notes.append(f"- {where}: log events after process start: {events}; group joins: {r.joins}; "
                     f"small file acknowledged at {_s(r.probe_sent)}, last chunks at {_s(r.last_sent)}; "
                     f"worker counters: {counters}.")
    return notes


def _write_notes(report: Report) -> list[str]:
    notes = []
    for w in report.writes:
        chunks = w.payload.get(next((t for t in w.payload if t.endswith(".chunks")), ""), (0, 0))[0]
        partial = next((g for t, g in w.log_bytes.items() if t.endswith("-partial-files-changelog")), 0)
        if chunks and partial:
            notes.append(f"- {chunks} chunk messages: the partial-files changelog grew {partial / chunks:.0f} bytes "
                         "per chunk message "
                         "(one record per chunk, as the README says).")
        link = "hard link (same filesystem)" if w.same_filesystem else "copy (other filesystem)"
        notes.append(f"- Output placed as a {link}; link count of an output file afterwards: {w.output_nlink} "
                     "(the staged name is removed once processed). Kafka figures are log segment growth "
                     "(`*.log` files, batch framing included) on the broker's disk; payload = key + value + "
                     "headers of the records still in the topic (compaction may have dropped superseded ones). "
                     "`__consumer_offsets` holds the group's commits (every 1 s).")
    return notes


def render_markdown(report: Report, analysis: Sequence[str] = ()) -> str:
    """The whole section, markers included."""
    lines = [START, HEADING, "", f"Command: `{report.command}` (started {report.started}, took "
             f"{report.duration_s / 60:.1f} min; load average at start {report.load[0]}, at end {report.load[1]}).",
             "", "Machine: " + "; ".join(f"{k}: {v}" for k, v in report.machine.items()) + ".", "",
             "Worker settings: " + ", ".join(f"{k}={v}" for k, v in report.settings.items()) + ".", "",
             "MB = 10^6 bytes, MiB = 2^20 bytes. Synthetic files (seeded PRNG, produced as raw chunk messages "
             "with aiokafka, acks=all); every output was read back and its SHA-512 compared.", ""]
    for title, head, rows in _sections(report):
        lines += [f"### {title}", "", *_table(head, rows), ""]
        if title.startswith("3.") and report.restarts:
            lines += [*_restart_notes(report), ""]
        if title.startswith("4."):
            lines += [*_write_notes(report), ""]
    if report.errors:
        lines += ["### Errors", "", *(f"- {e if len(e) <= 1200 else e[:1200] + ' ...'}" for e in report.errors), ""]
    if analysis:
        lines += ["### Analysis", "", *analysis, ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def update_results_file(path: Path, section: str) -> None:
    """Replace our marked section of ``path``, or append it at the end (after the other harness's
    Notes heading, the part of the file it keeps when it rewrites the rest)."""
    old = path.read_text() if path.exists() else ""
    if START in old and END in old:
        head, rest = old.split(START, 1)
        new = head + section.rstrip("\n") + rest.split(END, 1)[1]
    elif old:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        new = f"# Benchmark results\n\n{NOTES_HEADING}\n\n(none yet)\n\n{section}"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    tmp.replace(path)
