"""A ``filestream worker`` subprocess under observation: status, memory, disk writes, log events.

Memory is read from ``/proc/<pid>/status`` (VmHWM is the kernel's own peak, so nothing between
samples is missed) and, once the process is reaped with ``os.wait4``, from its rusage.
Disk writes come from ``/proc/<pid>/io`` (``write_bytes``: bytes the process caused to be sent
to the block layer, counted when the pages are dirtied).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["EXTERNAL_SIGNAL", "FILESTREAM", "IoSample", "MemSample", "Worker", "WorkerError", "free_port", "read_io",
           "read_mem", "wait_until", "worker_env"]

#: ``filestream`` as ``python -m app`` (the same command). Not the console script: on the shared
#: machine another session kills processes whose command line matches ``filestream worker``.
FILESTREAM = [sys.executable, "-m", "app"]
T = TypeVar("T")

#: Logged by a Faust worker that receives SIGTERM/SIGINT.
EXTERNAL_SIGNAL = "Signal received"
_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")
#: Worker log lines that mark the phases of a (re)start; the first occurrence of each is kept.
LOG_EVENTS = {
    "first log line": None,
    "joining group": re.compile(r"\(Re-\)joining group"),
    "joined group": re.compile(r"Joined group"),
    "restoring tables": re.compile(r"Restoring state from changelog topics"),
    "tables restored": re.compile(r"Done reading from changelog topics|Recovery complete"),
    "worker ready": re.compile(r"Worker ready"),
}


class WorkerError(RuntimeError):
    """The worker died or a bounded wait on it ran out."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; :class:`WorkerError` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WorkerError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def worker_env(bootstrap: str, app_id: str, output: Path, *, partitions: int = 4, chunk_size: int = 524_288,
               **settings: str) -> dict[str, str]:
    """Environment of a worker of deployment ``app_id`` (topics ``<app_id>.chunks`` etc.), with the
    fast group-join settings; any FILESTREAM_* of the calling environment is dropped."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FILESTREAM_")}
    return {
        **base,
        "FILESTREAM_BROKER": bootstrap,
        "FILESTREAM_APP_ID": app_id,
        "FILESTREAM_CHUNK_TOPIC": f"{app_id}.chunks",
        "FILESTREAM_FILES_TOPIC": f"{app_id}.files",
        "FILESTREAM_DEAD_LETTER_TOPIC": f"{app_id}.dead-letter",
        "FILESTREAM_PARTITIONS": str(partitions),
        "FILESTREAM_CHUNK_SIZE": str(chunk_size),
        "FILESTREAM_OUTPUT_DIR": str(output),
        "FILESTREAM_SESSION_TIMEOUT": "6",
        "FILESTREAM_HEARTBEAT_INTERVAL": "1",
        "FILESTREAM_COMMIT_INTERVAL": "1",
        "PYTHONUNBUFFERED": "1",
        **{f"FILESTREAM_{k.upper()}": v for k, v in settings.items()},
    }


@dataclass(frozen=True)
class MemSample:
    """Current and peak resident set size, bytes."""

    rss: int
    hwm: int


@dataclass(frozen=True)
class IoSample:
    """Cumulative disk I/O of a process, bytes (``/proc/<pid>/io``)."""

    write_bytes: int
    cancelled_write_bytes: int
    read_bytes: int
    wchar: int

    def minus(self, other: IoSample) -> IoSample:
        return IoSample(self.write_bytes - other.write_bytes,
                        self.cancelled_write_bytes - other.cancelled_write_bytes,
                        self.read_bytes - other.read_bytes, self.wchar - other.wchar)


def read_mem(pid: int) -> MemSample | None:
    """VmRSS and VmHWM of a live process, or None if it is gone."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        return None
    if len(values) != 2:
        return None
    return MemSample(values["VmRSS"], values["VmHWM"])


def read_io(pid: int) -> IoSample | None:
    """``/proc/<pid>/io`` of a live process, or None if it is gone or unreadable."""
    try:
        pairs = (line.split(":") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        values = {k.strip(): int(v) for k, v in pairs}
    except (OSError, ValueError):
        return None
    return IoSample(values["write_bytes"], values["cancelled_write_bytes"], values["read_bytes"], values["wchar"])


class _Sampler(threading.Thread):
    """Reads VmRSS/VmHWM every ``interval`` s while the process lives; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True, name=f"rss-{pid}")
        self.pid = pid
        self.interval = interval
        self.max_rss = 0
        self.hwm = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            if not self.sample():
                return
            self._stop_event.wait(self.interval)

    def sample(self) -> MemSample | None:
        mem = read_mem(self.pid)
        if mem is not None:
            self.max_rss = max(self.max_rss, mem.rss)
            self.hwm = max(self.hwm, mem.hwm)
        return mem

    def stop(self) -> None:
        self._stop_event.set()


@dataclass
class Worker:
    """One ``filestream worker -l info`` process; each start logs to its own file."""

    name: str
    env: dict[str, str]
    workdir: Path
    datadir: Path
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started_wall: float = 0.0
    started_mono: float = 0.0
    exit_maxrss: int | None = None
    _sampler: _Sampler | None = None
    _signalled: bool = False

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "worker not started"
        return self.proc.pid

    def start(self) -> Worker:
        """Launch the process; the clock of :meth:`since_start` starts just before it."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "FILESTREAM_DATADIR": str(self.datadir), "FILESTREAM_WEB_PORT": str(self.web_port)}
        with open(self.log_path, "wb") as log:
            self.started_wall, self.started_mono = time.time(), time.monotonic()
            self.proc = subprocess.Popen([*FILESTREAM, "worker", "-l", "info"], cwd=self.workdir, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.exit_maxrss = None
        self._signalled = False
        self._sampler = _Sampler(self.proc.pid)
        self._sampler.start()
        return self

    def since_start(self) -> float:
        return time.monotonic() - self.started_mono

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and self._poll() is None

    def _poll(self) -> int | None:
        assert self.proc is not None
        try:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        except ChildProcessError:
            return self.proc.returncode
        if pid == 0:
            return None
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.exit_maxrss = usage.ru_maxrss * 1024
        return self.proc.returncode

    def check_alive(self) -> None:
        """Raise :class:`WorkerError` if the worker is gone; says so if a signal we did not send ended it."""
        if self.alive():
            return
        code = self.proc.returncode if self.proc is not None else None
        external = ""
        if not self._signalled and ((code or 0) < 0 or EXTERNAL_SIGNAL in self.log_text()):
            external = f" ({EXTERNAL_SIGNAL.lower()} from another process)"
        raise WorkerError(f"worker {self.name} exited ({code}){external}:\n{self.log_tail()}")

    def status(self) -> dict[str, Any] | None:
        """The worker's status JSON, or None while it does not answer."""
        try:
            url = f"http://127.0.0.1:{self.web_port}/filestream/status/"
            with urllib.request.urlopen(url, timeout=2) as r:
                return dict(json.loads(r.read()))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str,
                    interval: float = 0.2) -> dict[str, Any]:
        """Wait until the status satisfies ``predicate``; fails early if the worker dies."""

        def check() -> dict[str, Any] | None:
            self.check_alive()
            st = self.status()
            return st if st is not None and predicate(st) else None

        try:
            return wait_until(check, timeout, f"worker {self.name}: {what}", interval)
        except WorkerError as exc:
            raise WorkerError(f"{exc}\nlast status: {self.status()}\n{self.log_tail()}") from None

    def wait_assigned(self, partitions: int, timeout: float = 60) -> dict[str, Any]:
        return self.wait_status(lambda st: len(st["active_partitions"]) == partitions, timeout,
                                f"{partitions} active partitions")

    def memory(self) -> MemSample:
        """VmRSS and VmHWM now (the peak also folds in every earlier sample)."""
        mem = self._sampler.sample() if self._sampler is not None else None
        if mem is None:
            raise WorkerError(f"worker {self.name} is gone: no memory figures")
        return mem

    def io(self) -> IoSample:
        sample = read_io(self.pid)
        if sample is None:
            raise WorkerError(f"cannot read /proc/{self.pid}/io")
        return sample

    def kill(self) -> None:
        """SIGKILL, as in a crash, and reap."""
        self._signalled = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._reap(30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, SIGKILL after ``timeout`` s; always reaps."""
        if self.proc is None:
            return
        self._signalled = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(WorkerError):
                self._reap(timeout)
        self.kill()

    def _reap(self, timeout: float) -> None:
        wait_until(lambda: not self.alive(), timeout, f"worker {self.name} to exit", 0.05)
        if self._sampler is not None:
            self._sampler.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_events(self) -> dict[str, float]:
        """Seconds from process start to the first log line of each of :data:`LOG_EVENTS`."""
        found: dict[str, float] = {}
        for line in self.log_text().splitlines():
            match = _LOG_TIME.match(line)
            if not match:
                continue
            at = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000
            for event, pattern in LOG_EVENTS.items():
                if event not in found and (pattern is None or pattern.search(line)):
                    found[event] = round(at - self.started_wall, 2)
        return found

    def count_log(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log_text()))

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"
