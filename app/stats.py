"""Counters of one worker process, shown by the web views (durable state lives in tables)."""

from __future__ import annotations

import time
from collections import Counter

__all__ = ["WorkerStats"]


class WorkerStats:
    """Monotonic counters since this worker started."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self._counts: Counter[str] = Counter()

    def count(self, name: str, amount: int = 1) -> None:
        self._counts[name] += amount

    def snapshot(self) -> dict[str, float]:
        return {"uptime_s": round(time.time() - self.started_at, 1), **self._counts}
