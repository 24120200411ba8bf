"""Which chunk indices of a file have arrived, as sorted disjoint half-open ranges.

Chunks mostly arrive in order, so a file of any size is usually one range: the record that
carries it through a changelog stays a few bytes long however large the file.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

__all__ = ["Ranges", "add_index", "contains", "count"]

#: ``[[start, end], ...]`` sorted, disjoint, non-adjacent; lists so they round-trip through JSON.
Ranges = list[list[int]]


def contains(ranges: Sequence[Sequence[int]], index: int) -> bool:
    """True if ``index`` is in one of the ranges."""
    pos = bisect_right([r[0] for r in ranges], index) - 1
    return pos >= 0 and index < ranges[pos][1]


def add_index(ranges: Sequence[Sequence[int]], index: int) -> Ranges:
    """A new range list that also holds ``index``, merging neighbours."""
    merged = [list(r) for r in ranges]
    if contains(merged, index):
        return merged
    pos = bisect_right([r[0] for r in merged], index)
    joins_left = pos > 0 and merged[pos - 1][1] == index
    joins_right = pos < len(merged) and merged[pos][0] == index + 1
    if joins_left and joins_right:
        merged[pos - 1][1] = merged[pos][1]
        del merged[pos]
    elif joins_left:
        merged[pos - 1][1] = index + 1
    elif joins_right:
        merged[pos][0] = index
    else:
        merged.insert(pos, [index, index + 1])
    return merged


def count(ranges: Sequence[Sequence[int]]) -> int:
    """How many indices the ranges hold."""
    return sum(end - start for start, end in ranges)
