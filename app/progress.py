"""Upload progress for people: a live status line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["UploadProgress"]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


class UploadProgress:
    """Counts files and bytes acknowledged by the broker and reports them."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.interval = interval
        self.started = time.monotonic()
        self.files_total = 0
        self.files_done = 0
        self.files_failed = 0
        self.bytes_done = 0
        self._last_draw = 0.0

    def add_bytes(self, amount: int) -> None:
        self.bytes_done += amount
        if self.live and time.monotonic() - self._last_draw >= self.interval:
            self._draw()

    def file_done(self, relpath: str, size: int) -> None:
        self.files_done += 1
        if self.live:
            self._draw()
        else:
            print(f"uploaded {relpath} ({_size(size)})", file=self.stream, flush=True)

    def file_failed(self, relpath: str, error: str) -> None:
        self.files_failed += 1
        self._clear()
        print(f"FAILED {relpath}: {error}", file=self.stream, flush=True)

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (f"{self.files_done} file(s), {_size(self.bytes_done)} uploaded in {elapsed:.1f} s "
                f"({_size(self.bytes_done / elapsed)}/s, {self.files_done / elapsed:.1f} files/s)"
                + (f"; {self.files_failed} FAILED" if self.files_failed else ""))

    def finish(self) -> None:
        self._clear()
        print(self.summary(), file=self.stream, flush=True)

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        total = f"/{self.files_total}" if self.files_total else ""
        elapsed = max(self._last_draw - self.started, 1e-9)
        line = f"files {self.files_done}{total}  {_size(self.bytes_done)}  {_size(self.bytes_done / elapsed)}/s"
        self.stream.write("\r" + line.ljust(70))
        self.stream.flush()

    def _clear(self) -> None:
        if self.live:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()
