"""The filestream Faust app: settings, commit floors and the pool for blocking work."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import faust
from faust.types import TransportT

from .admin import prepare_topics
from .allocator import keep_buffers_warm
from .durability import DurableTable, PendingWrites
from .lanes import Handler, MessageLanes
from .offsets import FloorTransport, OffsetFloors
from .security import faust_credentials
from .settings import Settings
from .staging import StagingArea
from .stats import WorkerStats

__all__ = ["FilestreamApp", "app"]

T = TypeVar("T")
#: Exit status of a worker whose shutdown outlasted ``shutdown_timeout`` (EX_TEMPFAIL).
EXIT_SHUTDOWN_TIMEOUT = 75


class FilestreamApp(faust.App):
    """A Faust app configured from :class:`Settings`.

    Adds :attr:`offset_floors` (see :mod:`app.offsets`), :attr:`pending_writes` (see
    :mod:`app.durability`) and :meth:`run_blocking`, which runs
    disk, hashing and S3 work on a bounded thread pool so the event loop keeps serving
    heartbeats and web views.
    """

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        credentials = faust_credentials(settings)
        options: dict[str, Any] = dict(
            broker=settings.broker_urls,
            datadir=str(settings.datadir),
            web_bind=settings.web_host,
            web_host=settings.web_host,
            web_port=settings.web_port,
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            stream_buffer_maxsize=settings.stream_buffer,
            consumer_max_fetch_size=settings.max_fetch_bytes,
            producer_max_request_size=settings.max_fetch_bytes,
            # Table writes and announcements are small: batch them instead of one request each
            # (nothing waits on their delivery but the next commit).
            producer_linger=settings.producer_linger,
            # A full batch makes the next send wait for a produce round trip: with Faust's 16 KiB
            # batches, announcements and table writes of small files stalled every lane.
            producer_max_batch_size=1 << 20,
            consumer_auto_offset_reset="earliest",
            broker_check_crcs=False,  # every chunk carries its own SHA-512
            broker_session_timeout=settings.session_timeout,
            broker_heartbeat_interval=settings.heartbeat_interval,
            broker_rebalance_timeout=settings.session_timeout,
            broker_commit_interval=settings.commit_interval,
            store="memory://",
            Table=DurableTable,
            # Agents and views register when the worker discovers them, so importing `tables` or
            # `agents` before `app` is not circular.
            origin="app",
            autodiscover=["agents"],
        )
        if credentials is not None:
            options["broker_credentials"] = credentials
        options.update(overrides)
        super().__init__(settings.app_id, **options)
        self.settings = settings
        self.offset_floors = OffsetFloors()
        self.pending_writes = PendingWrites()
        self.stats = WorkerStats()
        self._pool: ThreadPoolExecutor | None = None
        self._staging: StagingArea | None = None
        self._lanes: weakref.WeakSet[MessageLanes] = weakref.WeakSet()
        self.on_partitions_revoked.connect(self._finish_lanes, weak=False)

    def _new_transport(self) -> TransportT:
        return FloorTransport(self.conf.broker_consumer, self)

    @property
    def datadir_path(self) -> Path:
        """The worker's data directory (``--datadir`` on the command line wins over settings)."""
        return Path(self.conf.datadir)

    @property
    def staging(self) -> StagingArea:
        """The local staging area under the data directory, created on first use."""
        if self._staging is None:
            self._staging = StagingArea(self.datadir_path / "staging")
        return self._staging

    def lanes(self, handler: Handler, *, lanes: int, depth: int) -> MessageLanes:
        """Lanes for an agent's events (see :mod:`app.lanes`), waited for by every rebalance."""
        created = MessageLanes(self, self.offset_floors, handler, lanes=lanes, depth=depth)
        self._lanes.add(created)
        return created

    async def _finish_lanes(self, sender: Any, revoked: Any, **kwargs: Any) -> None:
        # A rebalance waits for the events lanes are handling, as Faust waits for its streams'.
        await asyncio.gather(*(lanes.wait_idle() for lanes in list(self._lanes)))

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the bounded I/O pool and await its result."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.settings.io_threads, thread_name_prefix="filestream-io")
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def on_first_start(self) -> None:
        await super().on_first_start()
        await prepare_topics(self.settings)

    async def on_stop(self) -> None:
        # Bound the whole shutdown: cutting it short is safe (uncommitted work is redone after a
        # restart), hanging on a stuck broker or processor is not.
        timeout = self.settings.shutdown_timeout
        watchdog = threading.Timer(timeout, _exit_after_timeout, (timeout,))
        watchdog.daemon = True
        watchdog.start()
        await super().on_stop()

    async def on_shutdown(self) -> None:
        # After agents and streams have stopped, so no job is still on its way in.
        await super().on_shutdown()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _exit_after_timeout(timeout: float) -> None:
    logging.getLogger(__name__).error("shutdown took longer than %.0f s: exiting now", timeout)
    os._exit(EXIT_SHUTDOWN_TIMEOUT)


keep_buffers_warm()
app = FilestreamApp(Settings.from_env())
