"""Commit floors: the committed offset of a partition never passes the first chunk of a file
that is still being reassembled or processed.

Faust commits the run of consecutive acked offsets of each partition. The consumer below
hides acked offsets at or above a partition's floor from that computation, so acks still
flow in order as soon as an agent has handed an event to its lanes (no held acks: see Faust
#606 and the rebalance hang in ``wait_empty``), and the commit simply stops at the floor. The
floor is the lower of the providers' (unfinished files) and the pins (events handed over but
not yet handled, :mod:`app.lanes`). The hidden acks are kept and counted once the floor rises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from faust.transport.drivers.aiokafka import Consumer, Transport
from faust.types import TP

__all__ = ["FloorConsumer", "FloorTransport", "OffsetFloors", "split_acked"]

FloorProvider = Callable[[int], int | None]


class OffsetFloors:
    """Per-topic providers of the lowest offset that must be read again after a restart."""

    def __init__(self) -> None:
        self._providers: dict[str, FloorProvider] = {}
        self._pins: dict[TP, list[int]] = {}

    def register(self, topic: str, provider: FloorProvider) -> None:
        """``provider(partition)`` returns the floor for that partition, or None for none."""
        self._providers[topic] = provider

    def pin(self, tp: TP, offset: int) -> None:
        """Hold ``tp`` at ``offset`` until :meth:`unpin`: a message taken but not yet handled."""
        self._pins.setdefault(tp, []).append(offset)

    def unpin(self, tp: TP, offset: int) -> None:
        pins = self._pins.get(tp)
        if pins is not None and offset in pins:
            pins.remove(offset)  # a few entries per partition (the lane depth)
            if not pins:
                del self._pins[tp]

    def floor(self, tp: TP) -> int | None:
        provider = self._providers.get(tp.topic)
        pinned = min(self._pins.get(tp, ()), default=None)
        floors = [f for f in (provider(tp.partition) if provider else None, pinned) if f is not None]
        return min(floors, default=None)


def split_acked(acked: list[int], floor: int | None) -> tuple[list[int], list[int]]:
    """Split acked offsets into those Faust may commit (below the floor) and those held back."""
    if floor is None:
        return acked, []
    return [o for o in acked if o < floor], [o for o in acked if o >= floor]


#: Longest single poll for records. Faust polls with a 1 s timeout over the partitions that are
#: active when the poll starts; a partition resumed after its stream buffer drained (which, with
#: large chunk messages and a small buffer, is all the time) then waits out the rest of that
#: second. Measured on one 256 MiB file: 9 MB/s with 1 s polls.
MAX_POLL_SECONDS = 0.02


class FloorConsumer(Consumer):
    """aiokafka consumer whose commits respect :class:`OffsetFloors` of its app, whose polls are
    short enough that a resumed partition is fetched again at once, and which never drops
    records it has fetched.

    Faust hands its live set of active partitions to aiokafka's fetcher on another thread (where
    an empty set means "every partition") and filters the records it gets back against that set
    again when it yields them. A partition that leaves the set meanwhile (flow control, recovery)
    loses those records although aiokafka's position has moved past them: chunks that never come
    back until a restart. Both steps here use one snapshot taken when the fetch starts.
    """

    _fetched_for: set[TP] | None = None

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        snapshot = None if active_partitions is None else set(active_partitions)
        self._fetched_for = snapshot
        return await super()._getmany(snapshot, min(timeout, MAX_POLL_SECONDS))

    async def _wait_next_records(self, timeout: float) -> tuple[Any, set[TP] | None]:
        self._fetched_for = None
        records, active = await super()._wait_next_records(timeout)
        if active is None or self._fetched_for is None:
            return records, active
        # everything fetched is yielded; a changed generation still discards it (in getmany)
        return records, self._fetched_for | set(self._buffered_partitions)

    def _new_offset(self, tp: TP) -> int | None:
        floors: OffsetFloors | None = getattr(self.app, "offset_floors", None)
        if floors is None:
            return super()._new_offset(tp)
        acked = self._acked[tp]
        committable, held = split_acked(acked, floors.floor(tp))
        if not held:
            return super()._new_offset(tp)
        acked[:] = committable
        try:
            return super()._new_offset(tp)
        finally:
            # Faust trims the committed run from the same list object in place.
            self._acked[tp].extend(held)


    async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        # Every table write behind these offsets must be on the broker first (app.durability).
        pending = getattr(self.app, "pending_writes", None)
        if pending is not None:
            await pending.wait()
        return await super()._commit_offsets(offsets, start_new_transaction)


class FloorTransport(Transport):
    """The aiokafka transport with :class:`FloorConsumer`."""

    Consumer = FloorConsumer
