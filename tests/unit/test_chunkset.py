"""Chunk index sets as sorted, disjoint, non-adjacent half-open ranges (tables/chunkset.py),
checked against a plain Python set."""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tables.chunkset import add_index, contains, count

PROJECT = Path(__file__).resolve().parents[2]

indices = st.lists(st.integers(0, 120), max_size=150)


def assert_canonical(ranges: list[list[int]]) -> None:
    for start, end in ranges:
        assert start < end  # half-open and non-empty
    for (_, end), (next_start, _) in itertools.pairwise(ranges):
        assert end < next_start  # sorted, disjoint and not adjacent (adjacent ones are merged)


def as_set(ranges: list[list[int]]) -> set[int]:
    return {i for start, end in ranges for i in range(start, end)}


@given(indices)
@settings(max_examples=300)
def test_ranges_agree_with_a_set_after_every_add(sequence: list[int]) -> None:
    ranges: list[list[int]] = []
    model: set[int] = set()
    for index in sequence:
        ranges = add_index(ranges, index)
        model.add(index)
        assert_canonical(ranges)
        assert count(ranges) == len(model)
        assert as_set(ranges) == model
    for probe in range(-3, 125):
        assert contains(ranges, probe) == (probe in model)


@given(st.sets(st.integers(0, 200)), st.randoms(use_true_random=False))
@settings(max_examples=200)
def test_result_does_not_depend_on_arrival_order(values: set[int], rnd) -> None:  # type: ignore[no-untyped-def]
    ordered = sorted(values)
    shuffled = list(values)
    rnd.shuffle(shuffled)
    a: list[list[int]] = []
    b: list[list[int]] = []
    for i in ordered:
        a = add_index(a, i)
    for i in shuffled:
        b = add_index(b, i)
    assert a == b


@given(indices, st.integers(0, 120))
@settings(max_examples=300)
def test_add_index_does_not_mutate_its_input(sequence: list[int], index: int) -> None:
    ranges: list[list[int]] = []
    for i in sequence:
        ranges = add_index(ranges, i)
    before = copy.deepcopy(ranges)
    inner_ids = [id(r) for r in ranges]
    result = add_index(ranges, index)
    assert ranges == before
    assert [id(r) for r in ranges] == inner_ids
    assert all(r is not s for r in result for s in ranges)  # no inner list shared with the input
    assert contains(result, index)


def test_in_order_arrival_is_one_range() -> None:
    ranges: list[list[int]] = []
    for i in range(1, 10_001):
        ranges = add_index(ranges, i)
    assert ranges == [[1, 10_001]]
    assert count(ranges) == 10_000


def test_merges_both_neighbours() -> None:
    ranges = add_index(add_index([], 1), 3)
    assert ranges == [[1, 2], [3, 4]]
    assert add_index(ranges, 2) == [[1, 4]]
    assert add_index(ranges, 0) == [[0, 2], [3, 4]]
    assert add_index(ranges, 4) == [[1, 2], [3, 5]]
    assert add_index(ranges, 3) == ranges


def test_empty() -> None:
    assert count([]) == 0
    assert not contains([], 0)
    assert not contains([], -1)


def test_accepts_tuples_as_read_back_from_storage() -> None:
    ranges = ((1, 3), (4, 6))
    assert contains(ranges, 2)
    assert not contains(ranges, 3)
    assert count(ranges) == 4
    assert add_index(ranges, 3) == [[1, 6]]


def test_tables_can_be_imported_before_app() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import tables.chunkset"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
