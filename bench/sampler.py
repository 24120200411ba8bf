"""An all-threads sampling profiler for a benchmark process (pyinstrument sees one thread only).

``python -m bench.sampler OUT.txt -m app worker -l info`` runs the module with a thread that
records every thread's stack every few milliseconds, and writes a summary to OUT.txt at exit:
per thread, how its samples split between waiting (select, locks, queues, sleep) and running,
and the functions it spends them in (self and inclusive counts).
"""

from __future__ import annotations

import atexit
import collections
import runpy
import sys
import threading
import time
from pathlib import Path
from types import FrameType

__all__ = ["Sampler", "main"]

_WAITS = ("select", "poll", "epoll", "wait", "acquire", "sleep", "get", "_worker", "read", "recv", "accept")
_WAIT_FILES = ("selectors.py", "threading.py", "queue.py", "concurrent/futures/thread.py")


def _where(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{code.co_name}"


class Sampler:
    """Samples ``sys._current_frames()`` every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = 0.005, depth: int = 40) -> None:
        self.interval = interval
        self.depth = depth
        self.samples: collections.Counter[str] = collections.Counter()  # thread -> samples
        self.waiting: collections.Counter[str] = collections.Counter()  # thread -> samples waiting
        self.leaf: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self.started = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                self._record(names.get(ident, str(ident)), frame)

    def _record(self, thread: str, frame: FrameType) -> None:
        thread = thread.split(" (")[0]
        self.samples[thread] += 1
        leaf = _where(frame)
        if leaf.rsplit(":", 1)[1].startswith(_WAITS) and leaf.split(":")[0].endswith(_WAIT_FILES):
            self.waiting[thread] += 1
        self.leaf[thread][f"{leaf}:{frame.f_lineno}"] += 1  # the line tells which C call (hash, write, fsync)
        seen = set()
        current: FrameType | None = frame
        for _ in range(self.depth):
            if current is None:
                break
            where = _where(current)
            if where not in seen:
                seen.add(where)
                self.inclusive[thread][where] += 1
            current = current.f_back

    def report(self) -> str:
        elapsed = time.monotonic() - self.started
        lines = [f"all-threads sampler: {elapsed:.1f} s, one sample per thread every {self.interval * 1000:.0f} ms",
                 "(waiting = the innermost frame is a select/lock/queue/sleep wait in the standard library)", ""]
        for thread, count in self.samples.most_common():
            waiting = self.waiting[thread]
            lines.append(f"== thread {thread}: {count} samples, {waiting / count:.0%} waiting, "
                         f"{(count - waiting) * self.interval:.1f} s not waiting")
            lines.append("   innermost frames (with line):")
            lines += [f"   {n:7d} {n / count:6.1%}  {where}" for where, n in self.leaf[thread].most_common(12)]
            lines.append("   inclusive (frame anywhere on the stack):")
            lines += [f"   {n:7d} {n / count:6.1%}  {where}" for where, n in self.inclusive[thread].most_common(40)]
            lines.append("")
        return "\n".join(lines)

    def stop(self, out: Path) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        out.write_text(self.report())


def main(argv: list[str]) -> None:
    """``python -m bench.sampler OUT -m MODULE [ARGS...]``."""
    if len(argv) < 3 or argv[1] != "-m":
        raise SystemExit("usage: python -m bench.sampler OUT.txt -m MODULE [ARGS...]")
    out, module, args = Path(argv[0]), argv[2], argv[3:]
    sampler = Sampler()
    atexit.register(sampler.stop, out)
    sampler.start()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
