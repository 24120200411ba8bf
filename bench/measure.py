"""Process accounting without psutil: CPU time and peak RSS from ``/proc`` and ``wait4``.

A long-running process (a worker) is sampled through ``/proc/<pid>/stat`` and
``/proc/<pid>/status`` while it runs; a process that exits on its own (an uploader) is reaped
with :func:`os.wait4`, whose rusage holds its CPU time and peak RSS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["UNKNOWN_EXIT", "CpuSample", "MachineCpu", "Tracked", "proc_cpu_seconds", "proc_peak_rss"]

_TICK = os.sysconf("SC_CLK_TCK")
UNKNOWN_EXIT = -255
"""Exit code of a process that was reaped by someone else (no status, no rusage)."""


def proc_cpu_seconds(pid: int) -> float | None:
    """user+sys CPU seconds of a live process (all its threads), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def proc_peak_rss(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of a live process in bytes, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds and peak RSS of one process at one moment (or at its exit)."""

    cpu_s: float
    peak_rss: int


class Tracked:
    """A subprocess whose CPU time and peak RSS are known, whether it is running or has exited.

    The process is reaped with ``os.wait4`` (not ``Popen.wait``) so its rusage is kept.
    """

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 log: Path | None = None, stdin: int | IO[bytes] | None = subprocess.DEVNULL,
                 stdout: int | IO[bytes] | None = None) -> None:
        self.argv = argv
        self.log = log
        out: int | IO[bytes] | None = stdout
        log_file = open(log, "ab") if log is not None and stdout is None else None
        try:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin,
                                         stdout=log_file if log_file is not None else out,
                                         stderr=log_file if log_file is not None else None)
        finally:
            if log_file is not None:
                log_file.close()
        self.started = time.monotonic()
        self.exit_sample: CpuSample | None = None
        self.exited_at: float | None = None  #: monotonic time the exit was noticed
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        """The exit code if the process has exited (reaping it), else None."""
        if self.returncode is None:
            try:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, and its pid may be reused, so never signal it
                self.returncode = self.proc.returncode if self.proc.returncode is not None else UNKNOWN_EXIT
                return self.returncode
            if pid == 0:
                return None
            self._reaped(status, usage)
        return self.returncode

    def _reaped(self, status: int, usage: os.struct_rusage) -> None:  # type: ignore[name-defined]
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode  # keep Popen from waiting again
        self.exit_sample = CpuSample(usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)
        self.exited_at = time.monotonic()

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the exit; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.argv[0]} (pid {self.pid}) still running after {timeout:.0f} s")
            time.sleep(0.05)
        return code

    def sample(self) -> CpuSample | None:
        """CPU and peak RSS now (or at exit, once exited); None if unknown."""
        if self.poll() is not None:
            return self.exit_sample
        cpu, rss = proc_cpu_seconds(self.pid), proc_peak_rss(self.pid)
        if cpu is None or rss is None:
            self.poll()
            return self.exit_sample
        return CpuSample(cpu, rss)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; always reaps."""
        if self.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.wait(timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            self.wait(30)

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None:
            return ""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class MachineCpu:
    """Busy CPU seconds of the whole machine (all cores) from ``/proc/stat``."""

    @staticmethod
    def busy_seconds() -> float:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        # user, nice, system, irq, softirq (idle, iowait and steal are not busy; guest is in user)
        return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / _TICK
