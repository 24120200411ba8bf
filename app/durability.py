"""Table writes that are durable before any offset commit.

Faust sends changelog records through a buffer whose flush gives up after 0.1 s without
progress (``ProducerBuffer.flush_atmost``), so under load an offset can be committed while the
table writes of the events before it are still unsent. :class:`DurableTable` records every
changelog write it issues, and the consumer awaits them all (:meth:`PendingWrites.wait`)
before it commits.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust

__all__ = ["DurableTable", "PendingWrites"]


class PendingWrites:
    """Changelog writes issued but not yet acknowledged by the broker."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[Any]] = set()

    def track(self, fut: asyncio.Future[Any]) -> None:
        if not fut.done():
            self._pending.add(fut)
            fut.add_done_callback(self._pending.discard)

    def __len__(self) -> int:
        return len(self._pending)

    async def wait(self) -> None:
        """Wait for every write issued so far; a failed write raises (the commit must not happen)."""
        if self._pending:
            await asyncio.gather(*list(self._pending))


class DurableTable(faust.Table):
    """A Faust table whose changelog writes are tracked by the app's :class:`PendingWrites`.

    :meth:`put` and :meth:`remove` name the changelog partition explicitly; ``table[key] = v``
    takes it from the current event, which lanes and timers do not have.
    """

    def put(self, partition: int, key: Any, value: Any) -> Any:
        """Set ``key`` and write it to changelog ``partition``; returns the write's future."""
        self.data[key] = value
        return self.send_changelog(partition, key, value)

    def remove(self, partition: int, key: Any) -> Any:
        """Delete ``key`` and write its tombstone to changelog ``partition``; returns the future."""
        self.data.pop(key, None)
        return self.send_changelog(partition, key, None, value_serializer="raw")

    def send_changelog(self, partition: int | None, key: Any, value: Any,
                       key_serializer: Any = None, value_serializer: Any = None) -> Any:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        pending: PendingWrites | None = getattr(self.app, "pending_writes", None)
        if pending is not None:
            pending.track(fut)
        return fut
