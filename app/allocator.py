"""Allocator tuning for processes that move chunk-sized buffers all day.

Every chunk passes through several buffers of its own size (read, msgpack, Kafka batch and
request). glibc serves blocks above its mmap threshold with a fresh ``mmap`` and unmaps them
when freed, so each one is page-faulted in again: half of the uploader's system time. Serving
them from the heap, and keeping some freed heap, reuses pages that are already mapped.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_buffers_warm"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (glibc's own ceiling for its dynamic threshold).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free heap kept mapped before it is given back to the system.
TRIM_THRESHOLD = 64 * 1024 * 1024


def keep_buffers_warm() -> bool:
    """Apply the tuning; False where the C library is not glibc (nothing changes there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
