"""filestream's own subcommands of the Faust umbrella command: ``local``, ``upload``, ``settings``.

They run without starting a worker: each parses its options and runs to completion, exiting
non-zero with a one-line message on failure.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import click
from faust.cli import Command, argument, option

from .application import app
from .progress import UploadProgress
from .uploader import DEFAULT_EXCLUDE, FileUpload, Uploader, find_files
from .watcher import DirectoryWatcher

__all__ = ["local", "settings", "upload"]


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


class local(Command):  # noqa: N801 - the class name is the command name
    """Run a single-node Apache Kafka on 127.0.0.1 for development and tests."""

    abstract: ClassVar[bool] = False  # registers the class as a subcommand

    options = [
        argument("action", type=click.Choice(["up", "down", "status"])),
        option("--port", type=int, default=None, help="Broker port (default: the port in FILESTREAM_BROKER)."),
    ]

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        from .local_broker import BrokerSetupError, LocalBroker  # also runnable as python -m app.local_broker

        action = self.kwargs["action"]
        port = self.kwargs["port"] or _default_port()
        broker = LocalBroker(port)
        try:
            if action == "up":
                status = broker.up()
            elif action == "down":
                stopped = broker.down()
                what = "stopped broker" if stopped else "no broker of ours"
                click.echo(f"{what} on {broker.bootstrap}")
                raise SystemExit(0)
            else:
                status = broker.status()
        except BrokerSetupError as exc:
            _fail(str(exc))
        state = f"running, pid {status.pid}" if status.running else "stopped"
        click.echo(f"broker:  {status.bootstrap} ({state})")
        click.echo(f"log:     {status.log_path}")
        click.echo(f"state:   {status.state_dir}")
        raise SystemExit(0 if status.running or action == "status" else 1)


def _default_port() -> int:
    host = app.settings.bootstrap_servers[0]
    return int(host.rsplit(":", 1)[1]) if ":" in host else 9092


class upload(Command):  # noqa: N801
    """Upload files and directory trees to the chunk topic (or keep watching a directory)."""

    abstract: ClassVar[bool] = False

    options = [
        argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)),
        option("--topic", default=None, help="Chunk topic (default: FILESTREAM_CHUNK_TOPIC)."),
        option("--chunk-size", type=int, default=None, help="Bytes per chunk (default: FILESTREAM_CHUNK_SIZE)."),
        option("--watch", is_flag=True, help="Keep running and upload new and modified files of one directory."),
        option("--upload-existing", is_flag=True, help="With --watch: upload files already present first."),
        option("--settle", type=float, default=2.0, show_default=True,
               help="With --watch: seconds a file must stay unchanged before it is uploaded."),
        option("--include", default=None, help="Regex on the relative path: upload only matching files."),
        option("--exclude", default=DEFAULT_EXCLUDE, show_default=True,
               help="Regex on the relative path: skip matching files."),
        option("--parallel", type=int, default=8, show_default=True, help="Files uploaded concurrently."),
    ]

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        opts = self.kwargs
        if opts["watch"] and (len(opts["paths"]) != 1 or not opts["paths"][0].is_dir()):
            _fail("--watch takes exactly one directory")
        try:
            failed = asyncio.run(self._run(**opts))
        except (OSError, ValueError) as exc:
            _fail(str(exc))
        raise SystemExit(1 if failed else 0)

    async def _run(self, paths: tuple[Path, ...], topic: str | None, chunk_size: int | None, watch: bool,
                   upload_existing: bool, settle: float, include: str | None, exclude: str | None,
                   parallel: int) -> int:
        progress = UploadProgress()
        uploader = Uploader(app.settings, topic=topic, chunk_size=chunk_size,
                            on_bytes=lambda _upload, n: progress.add_bytes(n))

        async def send(item: FileUpload) -> bool:
            try:
                size = await uploader.upload(item)
            except Exception as exc:  # report and go on with the other files
                progress.file_failed(item.relpath.as_posix(), f"{type(exc).__name__}: {exc}")
                return False
            progress.file_done(item.relpath.as_posix(), size)
            return True

        try:
            await asyncio.wait_for(uploader.start(), timeout=60)
        except Exception as exc:
            _fail(f"cannot reach Kafka at {app.settings.broker}: {type(exc).__name__}: {exc}")
        try:
            if watch:
                await _watch(DirectoryWatcher(paths[0], send, upload_existing=upload_existing, settle=settle,
                                              include=include, exclude=exclude))
            else:
                items = find_files(paths, include, exclude)
                progress.files_total = len(items)
                await _run_bounded(items, send, parallel)
        finally:
            await uploader.stop()
            progress.finish()
        return progress.files_failed


async def _run_bounded(items: list[FileUpload], send: Callable[[FileUpload], Awaitable[bool]], parallel: int) -> None:
    queue: asyncio.Queue[FileUpload] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            await send(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(max(1, parallel))))


async def _watch(watcher: DirectoryWatcher) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await watcher.start()
    click.echo(f"watching {watcher.root} (Ctrl-C to stop)", err=True)
    try:
        await stop.wait()
    finally:
        await watcher.stop()


class settings(Command):  # noqa: N801
    """Show every setting, its environment variable and its current value."""

    abstract: ClassVar[bool] = False

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        for env, value, doc in app.settings.describe():
            click.echo(f"{env}={value}\n    {doc}")
        sys.stdout.flush()
        raise SystemExit(0)
