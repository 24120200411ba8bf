"""Commit floors (app/offsets.py): the real FloorConsumer._new_offset, run against Faust's own
Consumer._new_offset on the same state."""

from __future__ import annotations

import copy
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st
from intervaltree import IntervalTree

from app.offsets import FloorConsumer, OffsetFloors, split_acked

TOPIC = "filestream.chunks"
TP0 = TP(TOPIC, 0)
TP1 = TP(TOPIC, 1)


class Floors:
    """A floor provider the test controls, per partition."""

    def __init__(self) -> None:
        self.by_partition: dict[int, int | None] = {}
        self.calls: list[int] = []

    def __call__(self, partition: int) -> int | None:
        self.calls.append(partition)
        return self.by_partition.get(partition)


def consumer_state() -> dict[str, Any]:
    return {
        "_acked": defaultdict(list),
        "_acked_index": defaultdict(set),
        "_gap": defaultdict(IntervalTree),
        "_committed_offset": defaultdict(lambda: None),
    }


def make_consumer(floors: Floors | None = None, *, with_offset_floors: bool = True) -> FloorConsumer:
    consumer = FloorConsumer.__new__(FloorConsumer)
    for name, value in consumer_state().items():
        setattr(consumer, name, value)
    if with_offset_floors:
        offset_floors = OffsetFloors()
        if floors is not None:
            offset_floors.register(TOPIC, floors)
        consumer.app = SimpleNamespace(offset_floors=offset_floors)
    else:
        consumer.app = SimpleNamespace()
    return consumer


def reference_like(consumer: Any) -> SimpleNamespace:
    """A deep copy of the commit bookkeeping, for Faust's own _new_offset."""
    return SimpleNamespace(
        _acked=copy.deepcopy(consumer._acked),
        _acked_index=copy.deepcopy(consumer._acked_index),
        _gap=copy.deepcopy(consumer._gap),
        _committed_offset=copy.deepcopy(consumer._committed_offset),
    )


def faust_new_offset(state: Any, tp: TP) -> int | None:
    return FaustConsumer._new_offset(state, tp)


def ack(consumer: Any, tp: TP, offset: int) -> None:
    """What Faust's Consumer.ack does with the offset of an acked message."""
    committed = consumer._committed_offset[tp]
    if (committed is None or offset >= committed) and offset not in consumer._acked_index[tp]:
        consumer._acked_index[tp].add(offset)
        consumer._acked[tp].append(offset)


def commit(consumer: Any, tp: TP) -> int | None:
    """One commit round: compute the offset and record it as committed, as Faust does."""
    offset = consumer._new_offset(tp)
    committed = consumer._committed_offset[tp]
    if offset is not None and (committed is None or offset > committed):
        consumer._committed_offset[tp] = offset
    return offset


def pending(consumer: Any, tp: TP) -> list[int]:
    assert set(consumer._acked[tp]) == consumer._acked_index[tp]
    return sorted(consumer._acked[tp])


# --- split_acked --------------------------------------------------------------------------------


def test_split_acked_without_floor_commits_everything() -> None:
    acked = [3, 1, 2]
    assert split_acked(acked, None) == ([3, 1, 2], [])


def test_split_acked_floor_is_exclusive() -> None:
    assert split_acked([1, 5, 2, 7, 6], 5) == ([1, 2], [5, 7, 6])
    assert split_acked([1, 2], 0) == ([], [1, 2])
    assert split_acked([], 3) == ([], [])


@given(st.lists(st.integers(0, 1000), unique=True), st.integers(0, 1000))
def test_split_acked_partitions_at_the_floor(acked: list[int], floor: int) -> None:
    below, held = split_acked(acked, floor)
    assert all(o < floor for o in below)
    assert all(o >= floor for o in held)
    assert sorted(below + held) == sorted(acked)
    assert below == [o for o in acked if o < floor]  # order kept


# --- without a floor: exactly Faust -------------------------------------------------------------


def test_no_floor_returns_last_consecutive_acked_plus_one() -> None:
    consumer = make_consumer(Floors())
    for o in (0, 1, 2, 4, 5):
        ack(consumer, TP0, o)
    assert commit(consumer, TP0) == 3
    assert pending(consumer, TP0) == [4, 5]
    ack(consumer, TP0, 3)
    assert commit(consumer, TP0) == 6
    assert pending(consumer, TP0) == []
    assert commit(consumer, TP0) is None


@pytest.mark.parametrize("variant", ["no provider", "provider says None", "app without offset_floors"])
def test_no_floor_behaves_like_faust(variant: str) -> None:
    floors = Floors()
    if variant == "no provider":
        consumer = make_consumer(None)
    elif variant == "provider says None":
        consumer = make_consumer(floors)
    else:
        consumer = make_consumer(with_offset_floors=False)
    for o in (5, 6, 7, 9, 10):
        ack(consumer, TP0, o)
    reference = reference_like(consumer)
    assert consumer._new_offset(TP0) == faust_new_offset(reference, TP0) == 8
    assert consumer._acked[TP0] == reference._acked[TP0]
    assert consumer._acked_index[TP0] == reference._acked_index[TP0]


@given(st.lists(st.integers(0, 60), max_size=60), st.one_of(st.none(), st.integers(0, 60)))
@settings(max_examples=200)
def test_no_floor_matches_faust_for_any_acks(acked: list[int], committed: int | None) -> None:
    consumer = make_consumer(Floors())
    consumer._committed_offset[TP0] = committed
    for o in acked:
        ack(consumer, TP0, o)
    reference = reference_like(consumer)
    assert consumer._new_offset(TP0) == faust_new_offset(reference, TP0)
    assert sorted(consumer._acked[TP0]) == sorted(reference._acked[TP0])
    assert consumer._acked_index[TP0] == reference._acked_index[TP0]


# --- with a floor -------------------------------------------------------------------------------


def test_floor_caps_the_commit_and_keeps_the_held_acks() -> None:
    floors = Floors()
    consumer = make_consumer(floors)
    for o in range(10):
        ack(consumer, TP0, o)
    floors.by_partition[0] = 5
    assert commit(consumer, TP0) == 5  # offset 5 (the file's first chunk) will be read again
    assert pending(consumer, TP0) == [5, 6, 7, 8, 9]
    assert commit(consumer, TP0) is None  # nothing more while the floor stands
    assert pending(consumer, TP0) == [5, 6, 7, 8, 9]
    floors.by_partition[0] = None
    assert commit(consumer, TP0) == 10
    assert pending(consumer, TP0) == []


def test_floor_asks_the_provider_for_the_right_partition() -> None:
    floors = Floors()
    floors.by_partition = {0: 2, 1: None}
    consumer = make_consumer(floors)
    for tp in (TP0, TP1):
        for o in range(6):
            ack(consumer, tp, o)
    assert commit(consumer, TP0) == 2
    assert commit(consumer, TP1) == 6
    assert floors.calls == [0, 1]


def test_other_topics_are_not_floored() -> None:
    floors = Floors()
    floors.by_partition[0] = 1
    consumer = make_consumer(floors)
    other = TP("filestream.files", 0)
    for o in range(4):
        ack(consumer, other, o)
    assert commit(consumer, other) == 4


def test_floor_at_or_below_all_acks_commits_nothing_and_loses_nothing() -> None:
    floors = Floors()
    consumer = make_consumer(floors)
    consumer._committed_offset[TP0] = 20
    for o in (20, 21, 22):
        ack(consumer, TP0, o)
    for floor in (20, 15, 0):
        floors.by_partition[0] = floor
        assert commit(consumer, TP0) is None
        assert pending(consumer, TP0) == [20, 21, 22]
    floors.by_partition[0] = None
    assert commit(consumer, TP0) == 23


def test_a_gap_below_the_floor_still_stops_the_commit() -> None:
    floors = Floors()
    floors.by_partition[0] = 8
    consumer = make_consumer(floors)
    for o in (0, 1, 3, 4, 8, 9):
        ack(consumer, TP0, o)
    assert commit(consumer, TP0) == 2
    ack(consumer, TP0, 2)
    assert commit(consumer, TP0) == 5  # 5..7 not acked yet
    for o in (5, 6, 7):
        ack(consumer, TP0, o)
    assert commit(consumer, TP0) == 8
    floors.by_partition[0] = None
    assert commit(consumer, TP0) == 10


def test_held_acks_are_not_counted_twice_when_redelivered() -> None:
    floors = Floors()
    floors.by_partition[0] = 3
    consumer = make_consumer(floors)
    for o in range(6):
        ack(consumer, TP0, o)
    assert commit(consumer, TP0) == 3
    for o in (3, 4, 5):
        ack(consumer, TP0, o)  # redelivered: already in the acked index
    assert consumer._acked[TP0].count(4) == 1
    floors.by_partition[0] = None
    assert commit(consumer, TP0) == 6


def test_offset_gaps_from_the_broker_are_skipped_only_up_to_the_floor() -> None:
    # offsets with no message (transaction markers, compaction) are recorded in _gap
    floors = Floors()
    floors.by_partition[0] = 10
    consumer = make_consumer(floors)
    consumer._gap[TP0].addi(5, 8)  # 5, 6, 7 do not exist
    consumer._gap[TP0].addi(12, 15)  # 12, 13, 14 do not exist
    for o in (0, 1, 2, 3, 4, 8, 9, 10, 11, 15):
        ack(consumer, TP0, o)
    assert commit(consumer, TP0) == 10
    assert pending(consumer, TP0) == [10, 11, 15]
    assert consumer._gap[TP0].overlaps_range(12, 15)  # the gap above the floor is still known
    floors.by_partition[0] = None
    assert commit(consumer, TP0) == 16


def test_floor_raised_step_by_step_never_stalls() -> None:
    floors = Floors()
    consumer = make_consumer(floors)
    for o in range(100):
        ack(consumer, TP0, o)
    committed = []
    for floor in range(10, 100, 10):
        floors.by_partition[0] = floor
        assert commit(consumer, TP0) == floor
        committed.append(consumer._committed_offset[TP0])
        assert pending(consumer, TP0) == list(range(floor, 100))
    floors.by_partition[0] = None
    assert commit(consumer, TP0) == 100
    assert committed == list(range(10, 100, 10))


@st.composite
def in_order_rounds(draw: st.DrawFn) -> tuple[int, list[tuple[int, int | None]]]:
    n = draw(st.integers(1, 80))
    rounds = draw(st.lists(st.tuples(st.integers(0, 20), st.one_of(st.none(), st.integers(0, n))), max_size=20))
    return n, rounds


@given(in_order_rounds())
@settings(max_examples=300)
def test_model_in_order_acks_with_moving_floors(case: tuple[int, list[tuple[int, int | None]]]) -> None:
    """Acks arrive in offset order (one agent per partition); the floor moves arbitrarily.

    Model: the commit is min(acked prefix, floor) whenever that passes the committed offset.
    """
    n, rounds = case
    floors = Floors()
    consumer = make_consumer(floors)
    acked_upto = 0  # offsets 0 .. acked_upto-1 are acked
    committed: int | None = None
    for more, floor in rounds:
        for o in range(acked_upto, min(n, acked_upto + more)):
            ack(consumer, TP0, o)
        acked_upto = min(n, acked_upto + more)
        floors.by_partition[0] = floor
        start = committed or 0
        bound = acked_upto if floor is None else min(acked_upto, floor)
        expected = bound if bound > start else None
        assert commit(consumer, TP0) == expected
        if expected is not None:
            committed = expected
        assert consumer._committed_offset[TP0] == committed
        assert pending(consumer, TP0) == list(range(committed or 0, acked_upto))
    # lift the floor, finish acking: everything is committed, nothing was lost on the way
    floors.by_partition[0] = None
    for o in range(acked_upto, n):
        ack(consumer, TP0, o)
    assert commit(consumer, TP0) == (n if (committed or 0) < n else None)
    assert consumer._committed_offset[TP0] == n
    assert pending(consumer, TP0) == []


@st.composite
def shuffled_rounds(draw: st.DrawFn) -> tuple[int, list[int], list[tuple[int, int | None]]]:
    n = draw(st.integers(1, 60))
    order = draw(st.permutations(range(n)))
    rounds = draw(st.lists(st.tuples(st.integers(0, 15), st.one_of(st.none(), st.integers(0, n))), max_size=15))
    return n, list(order), rounds


@given(shuffled_rounds())
@settings(max_examples=300)
def test_model_out_of_order_acks_match_faust_below_the_floor(
    case: tuple[int, list[int], list[tuple[int, int | None]]],
) -> None:
    """Each round equals Faust's own computation on the acks below the floor; acks at or above
    it are kept; once the floor is lifted everything is committed."""
    n, order, rounds = case
    floors = Floors()
    consumer = make_consumer(floors)
    position = 0
    for more, floor in rounds:
        for o in order[position : position + more]:
            ack(consumer, TP0, o)
        position = min(n, position + more)
        floors.by_partition[0] = floor
        before = pending(consumer, TP0)
        held = [o for o in before if floor is not None and o >= floor]
        reference = reference_like(consumer)
        reference._acked[TP0] = [o for o in reference._acked[TP0] if floor is None or o < floor]
        expected = faust_new_offset(reference, TP0)
        previous = consumer._committed_offset[TP0]
        result = commit(consumer, TP0)
        assert result == expected
        if floor is not None and result is not None:
            assert result <= floor
        assert pending(consumer, TP0) == sorted(reference._acked[TP0] + held)
        if result is not None and previous is not None:
            assert result >= previous
    floors.by_partition[0] = None
    for o in order[position:]:
        ack(consumer, TP0, o)
    commit(consumer, TP0)
    assert consumer._committed_offset[TP0] == n
    assert pending(consumer, TP0) == []
