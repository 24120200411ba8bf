"""The directory processor: each completed file appears at ``<output_dir>/<relpath>``,
atomically (temporary name, fsync, rename), so no partial file is ever visible under its
final name. Writing the same version again is harmless; of several uploads of one path, the
one that started last wins (:class:`tables.PlacedVersion`)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
import uuid
from pathlib import Path, PurePosixPath

from app.application import app
from app.paths import resolve_under
from app.topics import CompletedFile
from tables import PlacedVersion, placed_versions

from .processing import file_processor

__all__ = ["place_file", "write_to_directory"]

log = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once at import, while single-threaded: os.umask is process-wide
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES}


def place_file(staged: Path, root: Path, relpath: PurePosixPath, mtime: float = 0.0) -> Path:
    """Put ``staged`` at ``root/relpath`` atomically and durably; return the final path.

    A hard link is used when the staging area shares the output's filesystem (no bytes are
    copied): a new path is linked directly, an existing one replaced by renaming a link made
    under a temporary name. Otherwise the file is copied to a temporary name and renamed. The
    target is checked to stay under ``root``.
    """
    target = resolve_under(root, relpath)
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        target = resolve_under(root, relpath)  # again: the directories now exist and could be links
    # The staged file is ours alone: its mode and mtime travel with the link. Its bytes are made
    # durable before any name under the root shows them (staging may not have: sync=False).
    os.chmod(staged, 0o666 & ~_UMASK)
    if mtime > 0:
        os.utime(staged, (mtime, mtime))
    _fsync(staged)
    try:
        os.link(staged, target)
    except FileExistsError:
        _replace(staged, target, mtime, link=True)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        _replace(staged, target, mtime, link=False)
    _fsync(target.parent)
    return target


def _replace(staged: Path, target: Path, mtime: float, *, link: bool) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.filestream-tmp")
    try:
        if link:
            os.link(staged, tmp)
        else:
            with open(staged, "rb") as src, open(tmp, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)
            if mtime > 0:
                os.utime(tmp, (mtime, mtime))
        os.replace(tmp, target)
        # rename(2) does nothing when both names are links to one file (the same staged file
        # placed twice), leaving the temporary name behind.
        tmp.unlink(missing_ok=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@file_processor("directory")
async def write_to_directory(file: CompletedFile, staged: Path) -> None:
    """Write each completed file under the configured output directory, unless a version of the
    same path that was uploaded later is there already."""
    placed = placed_versions.get(file.relpath)
    if placed is not None and placed.first_offset > file.first_offset:
        log.info("not placing %s: superseded by a later upload", file.relpath)
        app.stats.count("versions_superseded")
        return
    await app.run_blocking(place_file, staged, app.settings.output_dir, PurePosixPath(file.relpath), file.mtime)
    placed_versions.put(file.partition, file.relpath,
                        PlacedVersion(file_hash=file.file_hash, first_offset=file.first_offset, placed_at=time.time()))
