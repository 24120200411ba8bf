"""Watching a directory: upload new and modified files once they have stopped changing.

Polling (not inotify) so it works the same on local disks, NFS and SMB shares that
instruments write to. A rewritten file is uploaded again as a new version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from mode import Service

from .uploader import FileUpload, find_files

__all__ = ["ChangeTracker", "DirectoryWatcher", "Signature"]

log = logging.getLogger(__name__)

#: (size, mtime in ns): what tells a changed file from an unchanged one.
Signature = tuple[int, int]


@dataclass
class _Entry:
    signature: Signature
    stable_since: float
    uploaded: Signature | None = None


class ChangeTracker:
    """Decides which files are ready: changed since their last upload and quiet for ``settle`` s."""

    def __init__(self, settle: float) -> None:
        self.settle = settle
        self._entries: dict[str, _Entry] = {}

    def baseline(self, snapshot: dict[str, Signature]) -> None:
        """Treat files present now as already uploaded (the default when starting to watch)."""
        for rel, sig in snapshot.items():
            self._entries[rel] = _Entry(sig, 0.0, uploaded=sig)

    def ready(self, snapshot: dict[str, Signature], now: float) -> list[str]:
        """Relative paths to upload now, given the latest scan."""
        for gone in self._entries.keys() - snapshot.keys():
            del self._entries[gone]
        out = []
        for rel, sig in snapshot.items():
            entry = self._entries.get(rel)
            if entry is None or entry.signature != sig:
                self._entries[rel] = _Entry(sig, now, entry.uploaded if entry else None)
                continue
            if entry.uploaded != sig and now - entry.stable_since >= self.settle:
                out.append(rel)
        return sorted(out)

    def mark_uploaded(self, rel: str, signature: Signature) -> None:
        entry = self._entries.get(rel)
        if entry is not None:
            entry.uploaded = signature


def scan(root: Path, include: str | None, exclude: str | None) -> dict[str, tuple[FileUpload, Signature]]:
    """Every matching file under ``root`` with its signature (files vanishing mid-scan are skipped)."""
    found = {}
    for upload in find_files([root], include, exclude):
        try:
            st = upload.path.stat()
        except FileNotFoundError:
            continue
        found[upload.relpath.as_posix()] = (upload, (st.st_size, st.st_mtime_ns))
    return found


class DirectoryWatcher(Service):
    """Polls ``root`` and hands each ready file to ``upload``, an async callable that reports
    success; a failed file is tried again on a later scan."""

    def __init__(self, root: Path, upload: Callable[[FileUpload], Awaitable[bool]], *,
                 upload_existing: bool = False, settle: float = 2.0, poll_interval: float = 1.0,
                 include: str | None = None, exclude: str | None = None, **kwargs: object) -> None:
        self.root = root
        self._upload = upload
        self.upload_existing = upload_existing
        self.poll_interval = poll_interval
        self.include = include
        self.exclude = exclude
        self.tracker = ChangeTracker(settle)
        super().__init__(**kwargs)  # type: ignore[arg-type]

    async def _scan(self) -> dict[str, tuple[FileUpload, Signature]]:
        return await asyncio.get_running_loop().run_in_executor(None, scan, self.root, self.include, self.exclude)

    async def on_start(self) -> None:
        if not self.upload_existing:
            self.tracker.baseline({rel: sig for rel, (_, sig) in (await self._scan()).items()})
        log.info("watching %s", self.root)

    @Service.task
    async def _poll(self) -> None:
        while not self.should_stop:
            found = await self._scan()
            ready = self.tracker.ready({rel: sig for rel, (_, sig) in found.items()}, time.monotonic())
            for rel in ready:
                if self.should_stop:
                    break
                upload, sig = found[rel]
                if not await self._upload(upload):
                    continue
                try:
                    st = upload.path.stat()
                except FileNotFoundError:
                    continue
                if (st.st_size, st.st_mtime_ns) == sig:
                    self.tracker.mark_uploaded(rel, sig)
                # else: it changed during the upload; the next scan sends the new version
            await self.sleep(self.poll_interval)
