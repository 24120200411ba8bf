"""Message lanes (app/lanes.py): order per key, concurrency across keys, commit pins, rebalances."""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from mode.utils.queues import FlowControlEvent

from app.lanes import MessageLanes
from app.offsets import OffsetFloors

TP0 = TP("chunks", 0)
TP1 = TP("chunks", 1)
WAIT = 5.0


def in_loop(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 4 * WAIT))
    return run


class FakeApp:
    def __init__(self) -> None:
        self.flow_control = FlowControlEvent(initially_suspended=False)
        self.consumer_generation_id = 1
        self.crashed: list[BaseException] = []

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


def event(key: bytes, offset: int, tp: TP = TP0, generation: int = 1) -> Any:
    return SimpleNamespace(message=SimpleNamespace(key=key, offset=offset, tp=tp, generation_id=generation))


class Recorder:
    """A handler that records what it handles and, for gated keys, waits until released."""

    def __init__(self) -> None:
        self.handled: list[tuple[bytes, int]] = []
        self.started: dict[bytes, asyncio.Event] = defaultdict(asyncio.Event)
        self.gates: dict[bytes, asyncio.Event] = {}
        self.fail: set[bytes] = set()

    def gate(self, key: bytes) -> asyncio.Event:
        self.gates[key] = asyncio.Event()
        return self.gates[key]

    async def __call__(self, ev: Any) -> None:
        key = ev.message.key
        self.started[key].set()
        if key in self.gates:
            await self.gates[key].wait()
        if key in self.fail:
            raise RuntimeError(f"cannot handle {key!r}")
        self.handled.append((key, ev.message.offset))


async def until(predicate: Any, what: str) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.001)
    try:
        await asyncio.wait_for(poll(), WAIT)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def make(lanes: int = 4, depth: int = 2) -> tuple[MessageLanes, Recorder, OffsetFloors, FakeApp]:
    app, floors, handler = FakeApp(), OffsetFloors(), Recorder()
    return MessageLanes(app, floors, handler, lanes=lanes, depth=depth), handler, floors, app


@in_loop
async def test_one_key_in_order_other_keys_meanwhile() -> None:
    lanes, handler, floors, _ = make()
    gate = handler.gate(b"slow")
    await lanes.submit(event(b"slow", 0))
    await lanes.submit(event(b"slow", 1))
    await lanes.submit(event(b"fast", 2))
    await until(lambda: (b"fast", 2) in handler.handled, "the other key to be handled while the first waits")
    assert (b"slow", 0) not in handler.handled
    assert floors.floor(TP0) == 0  # the commit may not pass the unhandled offsets 0 and 1
    gate.set()
    await until(lambda: len(handler.handled) == 3, "every event")
    assert [o for k, o in handler.handled if k == b"slow"] == [0, 1]
    assert floors.floor(TP0) is None
    await lanes.stop()


@in_loop
async def test_pins_follow_each_partition() -> None:
    lanes, handler, floors, _ = make()
    gate = handler.gate(b"a")
    await lanes.submit(event(b"a", 7, TP1))
    await lanes.submit(event(b"b", 3, TP0))
    await until(lambda: (b"b", 3) in handler.handled, "the event of partition 0")
    assert floors.floor(TP0) is None
    assert floors.floor(TP1) == 7
    gate.set()
    await until(lambda: floors.floor(TP1) is None, "partition 1 to be unpinned")
    await lanes.stop()


@in_loop
async def test_a_key_sticks_to_its_lane_only_while_it_has_events() -> None:
    lanes, handler, _, _ = make(lanes=2, depth=4)
    gate_a = handler.gate(b"a")
    await lanes.submit(event(b"a", 0))
    await handler.started[b"a"].wait()
    gate_b = handler.gate(b"b")
    await lanes.submit(event(b"b", 1))  # the idle lane
    await handler.started[b"b"].wait()
    await lanes.submit(event(b"a", 2))  # behind a's first event, not on b's lane
    gate_a.set()
    await until(lambda: (b"a", 2) in handler.handled, "a's second event")
    assert (b"b", 1) not in handler.handled
    gate_b.set()
    await until(lambda: len(handler.handled) == 3, "every event")
    await lanes.stop()


@in_loop
async def test_events_of_an_older_generation_are_dropped_and_unpinned() -> None:
    lanes, handler, floors, app = make()
    app.flow_control.suspend()  # a rebalance: lanes hold still
    await lanes.submit(event(b"a", 5, generation=1))
    app.consumer_generation_id = 2
    app.flow_control.resume()
    await lanes.submit(event(b"a", 6, generation=2))
    await until(lambda: handler.handled == [(b"a", 6)], "the current generation's event")
    assert floors.floor(TP0) is None
    await lanes.stop()


@in_loop
async def test_a_failing_handler_crashes_the_app_and_keeps_the_pin() -> None:
    lanes, handler, floors, app = make()
    handler.fail.add(b"bad")
    await lanes.submit(event(b"bad", 4))
    await until(lambda: app.crashed, "the crash")
    assert isinstance(app.crashed[0], RuntimeError)
    assert floors.floor(TP0) == 4  # handled again after a restart
    await lanes.stop()


@in_loop
async def test_stop_finishes_the_event_in_hand_and_leaves_queued_ones_pinned() -> None:
    lanes, handler, floors, _ = make(lanes=1)
    gate = handler.gate(b"a")
    await lanes.submit(event(b"a", 0))
    await lanes.submit(event(b"a", 1))
    await handler.started[b"a"].wait()
    stopping = asyncio.create_task(lanes.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # waits for the event in hand
    gate.set()
    await asyncio.wait_for(stopping, WAIT)
    assert handler.handled == [(b"a", 0)]
    assert floors.floor(TP0) == 1


@in_loop
async def test_wait_idle_waits_for_events_in_hand() -> None:
    lanes, handler, _, _ = make()
    gate = handler.gate(b"a")
    await lanes.submit(event(b"a", 0))
    await handler.started[b"a"].wait()
    idle = asyncio.create_task(lanes.wait_idle())
    await asyncio.sleep(0)
    assert not idle.done()
    gate.set()
    await asyncio.wait_for(idle, WAIT)
    assert handler.handled == [(b"a", 0)]
    await lanes.stop()


@pytest.mark.parametrize("lanes_n", [1, 3])
@in_loop
async def test_many_keys_each_in_order(lanes_n: int) -> None:
    lanes, handler, floors, _ = make(lanes=lanes_n, depth=1)
    sent = [(bytes([k]), o) for o in range(20) for k in range(5)]
    for n, (key, _) in enumerate(sent):
        await lanes.submit(event(key, n))
    await until(lambda: len(handler.handled) == len(sent), "every event")
    for k in range(5):
        offsets = [o for key, o in handler.handled if key == bytes([k])]
        assert offsets == sorted(offsets)
    assert floors.floor(TP0) is None
    await lanes.stop()


@in_loop
async def test_consume_hands_over_a_whole_stream_then_stops() -> None:
    lanes, handler, floors, _ = make(lanes=2, depth=1)
    sent = [event(bytes([n % 3]), n) for n in range(12)]

    class Stream:
        async def events(self) -> Any:
            for ev in sent:
                yield ev

    await lanes.consume(Stream())  # returns once the stream ends and the lanes have stopped
    handled = {o for _, o in handler.handled}
    assert handled  # the lanes ran while the stream was handed over
    unhandled = set(range(len(sent))) - handled
    assert floors.floor(TP0) == min(unhandled, default=None)  # what was left queued stays pinned
    for k in range(3):
        offsets = [o for key, o in handler.handled if key == bytes([k])]
        assert offsets == sorted(offsets)
