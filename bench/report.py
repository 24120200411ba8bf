"""Aggregate runs into medians and spreads, check the targets, print a table, write Markdown.

Units: MB = 10^6 bytes (throughput and RSS), GiB = 2^30 bytes (CPU seconds per GiB moved).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .systems import RunResult

__all__ = ["NOTES_HEADING", "RunError", "Summary", "Target", "render_markdown", "render_table", "summarize",
           "targets", "write_markdown"]

NOTES_HEADING = "## Notes"
RSS_LIMIT_MB = 300.0
_SYSTEM_ORDER = ("ceiling", "openmsistream", "filestream")
_LABEL = {"ceiling": "ceiling (raw aiokafka)", "openmsistream": "OpenMSIStream 1.8.8", "filestream": "filestream"}


@dataclass(frozen=True)
class RunError:
    """A run that failed: no figure, only the reason."""

    system: str
    corpus: str
    chunk_size: int
    rep: int
    message: str


@dataclass(frozen=True)
class Spread:
    """Median and range of one figure over repetitions."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        data = list(values)
        return cls(statistics.median(data), min(data), max(data))

    def show(self, fmt: str = "{:.1f}") -> str:
        if self.low == self.high:
            return fmt.format(self.median)
        return f"{fmt.format(self.median)} ({fmt.format(self.low)}-{fmt.format(self.high)})"


@dataclass(frozen=True)
class Summary:
    """Every run of one system on one corpus at one chunk size."""

    system: str
    corpus: str
    chunk_size: int
    runs: tuple[RunResult, ...]

    def spread(self, figure: Callable[[RunResult], float]) -> Spread:
        return Spread.of(figure(r) for r in self.runs)

    @property
    def mb_s(self) -> Spread:
        return self.spread(lambda r: r.mb_s)

    @property
    def files_s(self) -> Spread:
        return self.spread(lambda r: r.files_s)

    @property
    def wall_s(self) -> Spread:
        return self.spread(lambda r: r.wall_s)

    @property
    def cpu_per_gib(self) -> Spread:
        return self.spread(lambda r: r.cpu_s_per_gib)

    @property
    def producer_rss_mb(self) -> float:
        return max(r.producer.peak_rss for r in self.runs) / 1e6

    @property
    def consumer_rss_mb(self) -> float:
        return max(r.consumer.peak_rss for r in self.runs) / 1e6

    @property
    def broker_cpu_per_gib(self) -> float | None:
        values = [r.broker_cpu_s / (r.bytes / 2**30) for r in self.runs if r.broker_cpu_s is not None]
        return statistics.median(values) if values else None

    @property
    def other_cores(self) -> Spread:
        return self.spread(lambda r: r.other_cores)


def summarize(results: Iterable[RunResult]) -> list[Summary]:
    """Group runs by (corpus, chunk size, system), in run order of corpus and chunk size."""
    groups: dict[tuple[str, int, str], list[RunResult]] = {}
    for result in results:
        groups.setdefault((result.corpus, result.chunk_size, result.system), []).append(result)
    order = list(dict.fromkeys(key[:2] for key in groups))
    keys = sorted(groups, key=lambda k: (order.index(k[:2]), _SYSTEM_ORDER.index(k[2])))
    return [Summary(k[2], k[0], k[1], tuple(groups[k])) for k in keys]


def _find(summaries: list[Summary], corpus: str, chunk: int, system: str) -> Summary | None:
    return next((s for s in summaries if (s.corpus, s.chunk_size, s.system) == (corpus, chunk, system)), None)


def _chunk(size: int) -> str:
    return f"{size // 1024} KiB" if size < 1 << 20 else f"{size / 2**20:g} MiB"


@dataclass(frozen=True)
class Target:
    """One line of the targets: what is required, what was measured, and whether it passed."""

    corpus: str
    what: str
    measured: str
    passed: bool | None  # None: not measured, or for information only

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]


def _ratio_target(summaries: list[Summary], corpus: str, chunk: int, other: str, factor: float,
                  what: str) -> Target:
    fs, ref = _find(summaries, corpus, chunk, "filestream"), _find(summaries, corpus, chunk, other)
    label = f"{what} @ {_chunk(chunk)}"
    if fs is None or ref is None:
        return Target(corpus, label, "not measured", None)
    ratio = fs.mb_s.median / ref.mb_s.median
    shown = f"{ratio:.0%}" if factor < 1 else f"{ratio:.2f}x"
    return Target(corpus, label, f"{shown} ({fs.mb_s.median:.1f} vs {ref.mb_s.median:.1f} MB/s)", ratio >= factor)


def targets(summaries: list[Summary]) -> list[Target]:
    """The issue's targets, from medians."""
    out: list[Target] = []
    chunks = list(dict.fromkeys(s.chunk_size for s in summaries))
    corpora = list(dict.fromkeys(s.corpus for s in summaries))
    for chunk in chunks:
        if _find(summaries, "large", chunk, "filestream"):
            out.append(_ratio_target(summaries, "large", chunk, "openmsistream", 1.5,
                                     "filestream >= 1.5x OpenMSIStream"))
            out.append(_ratio_target(summaries, "large", chunk, "ceiling", 0.6, "filestream >= 60% of ceiling"))
    for chunk in chunks:
        fs = _find(summaries, "small", chunk, "filestream")
        if fs is None:
            continue
        rate = fs.files_s.median
        out.append(Target("small", f"filestream >= 500 files/s @ {_chunk(chunk)}", f"{rate:.0f} files/s", rate >= 500))
        oms = _find(summaries, "small", chunk, "openmsistream")
        measured = ("not measured" if oms is None
                    else f"{rate / oms.files_s.median:.2f}x ({oms.files_s.median:.0f} files/s)")
        out.append(Target("small", f"filestream / OpenMSIStream files/s @ {_chunk(chunk)}", measured, None))
    for chunk in chunks:
        if _find(summaries, "mixed", chunk, "filestream"):
            out.append(_ratio_target(summaries, "mixed", chunk, "openmsistream", 2.0, "filestream >= 2x OpenMSIStream"))
    for corpus in corpora:
        runs = [s for s in summaries if s.corpus == corpus and s.system == "filestream"]
        if not runs:
            continue
        worker = max(s.consumer_rss_mb for s in runs)
        uploader = max(s.producer_rss_mb for s in runs)
        out.append(Target(corpus, f"worker peak RSS <= {RSS_LIMIT_MB:.0f} MB", f"{worker:.0f} MB",
                          worker <= RSS_LIMIT_MB))
        out.append(Target(corpus, f"uploader peak RSS <= {RSS_LIMIT_MB:.0f} MB", f"{uploader:.0f} MB",
                          uploader <= RSS_LIMIT_MB))
    return out


def _rows(summaries: list[Summary]) -> list[list[str]]:
    rows = []
    for s in summaries:
        broker = s.broker_cpu_per_gib
        label = _LABEL.get(s.system, s.system)
        if s.runs[0].subset_of:
            label += f" (first {s.runs[0].files} of {s.runs[0].subset_of} files)"
        rows.append([s.corpus, _chunk(s.chunk_size), label, str(len(s.runs)),
                     s.mb_s.show(), s.files_s.show("{:.0f}" if s.files_s.median >= 100 else "{:.1f}"),
                     s.wall_s.show("{:.2f}"), s.cpu_per_gib.show(), f"{s.producer_rss_mb:.0f}",
                     f"{s.consumer_rss_mb:.0f}", "-" if broker is None else f"{broker:.1f}",
                     f"{s.other_cores.median:.2f}"])
    return rows


_HEADERS = ["corpus", "chunk", "system", "runs", "MB/s", "files/s", "wall s", "CPU s/GiB",
            "producer RSS MB", "consumer RSS MB", "broker CPU s/GiB", "other load (cores)"]


def _ratio_rows(summaries: list[Summary]) -> list[list[str]]:
    rows = []
    for corpus, chunk in dict.fromkeys((s.corpus, s.chunk_size) for s in summaries):
        fs = _find(summaries, corpus, chunk, "filestream")
        if fs is None:
            continue
        cells = [corpus, _chunk(chunk)]
        for other in ("ceiling", "openmsistream"):
            ref = _find(summaries, corpus, chunk, other)
            cells.append("-" if ref is None else f"{fs.mb_s.median / ref.mb_s.median:.2f}")
        rows.append(cells)
    return rows


def _text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_table(summaries: list[Summary], errors: list[RunError]) -> str:
    """The console report: figures, ratios, targets, errors."""
    parts = [_text_table(_HEADERS, _rows(summaries))]
    ratios = _ratio_rows(summaries)
    if ratios:
        parts.append(_text_table(["corpus", "chunk", "filestream/ceiling", "filestream/OpenMSIStream"], ratios))
    parts += [f"{t.verdict:4}  {t.corpus:6} {t.what}: {t.measured}" for t in targets(summaries)]
    parts += [f"ERROR {e.system} {e.corpus} @ {_chunk(e.chunk_size)} run {e.rep}: {e.message}" for e in errors]
    return "\n\n".join(parts[:2]) + "\n\n" + "\n".join(parts[2:])


def render_markdown(summaries: list[Summary], errors: list[RunError], *, command: str, machine: dict[str, str],
                    settings: dict[str, str], runs: list[RunResult]) -> str:
    """The results file, without the Notes section."""
    out = ["# filestream benchmark results", "",
           "Generated by `bench/` (see bench/README.md). MB = 10^6 bytes; GiB = 2^30 bytes. Each cell is the "
           "median over runs with the range (min-max) in parentheses. RSS is the peak over runs.", "",
           "```sh", command, "```", "", "## Machine", "", _md_table(["", ""], [[k, v] for k, v in machine.items()]),
           "", "## Settings", "", _md_table(["", ""], [[k, v] for k, v in settings.items()]), "",
           "## Results", "", _md_table(_HEADERS, _rows(summaries)), ""]
    ratios = _ratio_rows(summaries)
    if ratios:
        out += ["### Ratios of median MB/s", "",
                _md_table(["corpus", "chunk", "filestream / ceiling", "filestream / OpenMSIStream"], ratios), ""]
    target_rows = [[t.corpus, t.what, t.measured, f"**{t.verdict}**"] for t in targets(summaries)]
    out += ["### Targets", "", _md_table(["corpus", "target", "measured", "verdict"], target_rows), ""]
    if errors:
        out += ["### Errors (runs without a figure)", ""]
        out += [f"- {e.system} {e.corpus} @ {_chunk(e.chunk_size)} run {e.rep}: "
                f"`{e.message.splitlines()[0][:300]}`" for e in errors]
        out.append("")
    out += ["<details><summary>Every run</summary>", "",
            _md_table(["corpus", "chunk", "system", "run", "wall s", "uploader done s", "MB/s", "files/s",
                       "producer CPU s", "consumer CPU s", "broker CPU s", "other cores", "verified files"],
                      [[r.corpus, _chunk(r.chunk_size), r.system, str(r.rep), f"{r.wall_s:.2f}",
                        "-" if r.producer_done_s is None else f"{r.producer_done_s:.2f}", f"{r.mb_s:.1f}",
                        f"{r.files_s:.1f}", f"{r.producer.cpu_s:.1f}", f"{r.consumer.cpu_s:.1f}",
                        "-" if r.broker_cpu_s is None else f"{r.broker_cpu_s:.1f}", f"{r.other_cores:.2f}",
                        str(r.verified_files) if r.system != "ceiling" else "n/a (bytes counted)"] for r in runs]),
            "", "</details>", ""]
    return "\n".join(out)


def write_markdown(path: Path, body: str) -> None:
    """Write ``body`` to ``path``, keeping the hand-written Notes section of the existing file."""
    notes = ""
    if path.exists():
        old = path.read_text()
        if NOTES_HEADING in old:
            notes = old[old.index(NOTES_HEADING):]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body.rstrip("\n") + "\n\n" + (notes or f"{NOTES_HEADING}\n\n(none yet)\n"))
