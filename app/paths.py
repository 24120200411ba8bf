"""Path safety: turn the subdirectory and filename carried by a chunk into a relative path
that can never leave an output root, and build the names a file travels under.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
from pathlib import Path, PurePosixPath

__all__ = [
    "UnsafePathError",
    "file_key",
    "message_key",
    "output_relpath",
    "resolve_under",
]

_DRIVE = re.compile(r"^[A-Za-z]:")
#: Windows device names are harmless on POSIX but make the output unportable; refuse them.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
MAX_COMPONENT_BYTES = 255


class UnsafePathError(ValueError):
    """A subdirectory or filename that could escape the output root or is not a plain name."""


def _check_component(part: str, what: str) -> None:
    if part in ("", ".", ".."):
        raise UnsafePathError(f"{what} has a {part!r} component")
    if "\x00" in part or "\\" in part or "/" in part:
        raise UnsafePathError(f"{what} component {part!r} holds a NUL, slash or backslash")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in part):
        raise UnsafePathError(f"{what} component {part!r} holds a control character")
    if _DRIVE.match(part):
        raise UnsafePathError(f"{what} component {part!r} looks like a drive letter")
    if part.split(".")[0].lower() in _RESERVED:
        raise UnsafePathError(f"{what} component {part!r} is a reserved device name")
    try:
        encoded = part.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(f"{what} component {part!r} is not valid Unicode") from None
    if len(encoded) > MAX_COMPONENT_BYTES:
        raise UnsafePathError(f"{what} component is longer than {MAX_COMPONENT_BYTES} bytes")


def output_relpath(subdir: str, filename: str, filename_append: str = "") -> PurePosixPath:
    """The relative path a file is written to: ``subdir/stem+append+suffix``.

    Raises :class:`UnsafePathError` for absolute paths, ``..``, NUL, backslashes, drive letters
    and other names that are not plain relative components.
    """
    if subdir.startswith("/") or "\\" in subdir:
        raise UnsafePathError(f"subdirectory {subdir!r} is absolute or uses backslashes")
    parts = [p for p in subdir.split("/")] if subdir else []
    for part in parts:
        _check_component(part, "subdirectory")
    _check_component(filename, "filename")
    name = filename
    if filename_append:
        pure = PurePosixPath(filename)
        name = f"{pure.stem}{filename_append}{pure.suffix}"
        _check_component(name, "filename with append")
    return PurePosixPath(*parts, name)


def resolve_under(root: Path, relpath: PurePosixPath) -> Path:
    """Join a checked relative path onto ``root`` and prove the result stays inside it.

    The check resolves symlinks already present under the root, so a link planted in the
    output tree cannot redirect a write elsewhere. The root itself is resolved once per process
    (it is configuration), and a plain path with no link below the root costs one ``lstat``
    per component that exists.
    """
    root = _resolved(root)
    target = root.joinpath(*relpath.parts)
    if relpath.is_absolute() or any(part in ("", ".", "..") for part in relpath.parts) or _has_link(root, relpath):
        target = target.resolve()
    if target == root or not target.is_relative_to(root):
        raise UnsafePathError(f"{relpath} resolves outside the output root {root}")
    return target


@functools.lru_cache(maxsize=64)
def _resolved(root: Path) -> Path:
    return root.resolve()


def _has_link(root: Path, relpath: PurePosixPath) -> bool:
    probe = root
    for part in relpath.parts:
        probe = probe / part
        try:
            if stat.S_ISLNK(os.lstat(probe).st_mode):
                return True
        except (FileNotFoundError, NotADirectoryError):
            return False  # nothing exists below a missing directory (or a file), links included
    return False


def message_key(relpath: PurePosixPath | str) -> bytes:
    """Kafka key for every chunk of a file: its relative path, so one worker owns the whole file
    and all versions of one path stay in order in one partition."""
    return str(relpath).encode("utf-8")


def file_key(relpath: PurePosixPath | str, file_hash: bytes, total: int) -> str:
    """Table key of one uploaded file version: its checked output path, content hash and
    chunking. The two fixed-format suffixes keep it unambiguous whatever the path holds."""
    return f"{relpath}#{file_hash.hex()[:32]}#{total}"


def staging_name(key: str) -> str:
    """A fixed-length local file name for a file key (keys can be long or odd)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
