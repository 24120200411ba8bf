"""Message lanes: events with one key handled in order, different keys concurrently.

A Faust agent handles one event at a time, so a worker that waits on disk, hashing or S3 for
one file waits for all of them. An agent hands each event to a lane (:meth:`MessageLanes.submit`)
and goes on; each lane runs the handler on its events one by one. A key stays on one lane while
it has events queued there, so everything about one file (one key) still happens in order; a
key with nothing queued goes to the least busy lane. The agent's ack then means "queued", not
"done", so every queued event pins its partition's commit floor
(:class:`app.offsets.OffsetFloors`) until its handler returns: the commit never passes a
message that has not been handled.

During a rebalance lanes hold still (Faust's flow control), the revocation waits for the
messages being handled (:meth:`MessageLanes.wait_idle`), and messages fetched in an older
consumer generation are dropped, exactly as Faust's own streams drop them: they are fetched
again by whichever worker owns their partition now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import EventT, Message

from .offsets import OffsetFloors

__all__ = ["MessageLanes"]

log = logging.getLogger(__name__)

Handler = Callable[[EventT], Awaitable[None]]


class _Lane:
    def __init__(self, depth: int) -> None:
        self.queue: asyncio.Queue[EventT] = asyncio.Queue(depth)
        self.idle = asyncio.Event()
        self.idle.set()
        self.task: asyncio.Task[None] | None = None
        self.load = 0  #: events submitted to this lane and not yet handled or dropped


class MessageLanes:
    """Run ``handler`` on submitted events over ``lanes`` concurrent lanes, in order per key,
    with up to ``depth`` events queued per lane (memory: lanes times depth times message size).

    ``app`` is the Faust app: its flow control, consumer generation and ``crash``. A handler
    that raises crashes the worker; the message stays pinned, so it is handled again after a
    restart.
    """

    def __init__(self, app: Any, floors: OffsetFloors, handler: Handler, *, lanes: int, depth: int) -> None:
        self._app = app
        self._floors = floors
        self._handler = handler
        self._lanes = [_Lane(depth) for _ in range(lanes)]
        self._bound: dict[Any, tuple[_Lane, int]] = {}  # key -> (its lane, its events there)
        self._closed = False

    async def consume(self, stream: Any) -> None:
        """Hand every event of an agent's ``stream`` to the lanes; stop them when it ends."""
        try:
            async for event in stream.events():
                await self.submit(event)
        finally:
            await self.stop()

    async def submit(self, event: EventT) -> None:
        """Queue ``event`` on its key's lane; waits while that lane is full."""
        message = event.message
        key = message.key
        lane, count = self._bound.get(key) or (min(self._lanes, key=lambda candidate: candidate.load), 0)
        self._bound[key] = (lane, count + 1)
        lane.load += 1
        if lane.task is None:
            lane.task = asyncio.create_task(self._run(lane))
        self._floors.pin(message.tp, message.offset)
        await lane.queue.put(event)

    def _done(self, lane: _Lane, message: Message) -> None:
        self._floors.unpin(message.tp, message.offset)
        lane.load -= 1
        _, count = self._bound[message.key]
        if count > 1:
            self._bound[message.key] = (lane, count - 1)
        else:
            del self._bound[message.key]

    async def _run(self, lane: _Lane) -> None:
        app = self._app
        while True:
            event = await lane.queue.get()
            message = event.message
            await app.flow_control.acquire()  # hold still while a rebalance is in progress
            if self._closed:
                return
            if message.generation_id is not None and message.generation_id != app.consumer_generation_id:
                self._done(lane, message)
                continue
            lane.idle.clear()
            try:
                await self._handler(event)
            except Exception as exc:
                log.exception("cannot handle %s@%s; stopping the worker", message.tp, message.offset)
                await app.crash(exc)
                return
            finally:
                lane.idle.set()
            self._done(lane, message)

    async def wait_idle(self) -> None:
        """Wait until no lane is in the middle of a message (queued ones may remain)."""
        await asyncio.gather(*(lane.idle.wait() for lane in self._lanes))

    async def stop(self) -> None:
        """Finish the messages being handled and stop; queued ones stay pinned (they are handled
        again after a restart). Cancelling a handler instead could leave its blocking work
        running on the I/O pool while a new lane starts on the same file."""
        self._closed = True
        await self.wait_idle()
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
