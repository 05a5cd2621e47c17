"""The node's garbage collection: settled once it has started, and a collection only
when the heap has grown (callmask.heap)."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import weakref

from callmask import heap


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_settled_node_has_frozen_its_startup_heap_and_collects_no_more_by_itself() -> None:
    # In a process of its own: settle() turns automatic collection off for the process.
    script = (
        "import gc\n"
        "from callmask import heap\n"
        "heap.settle()\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 1000)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "True"]


async def test_a_heap_that_has_grown_is_collected_once_and_its_garbage_freed() -> None:
    gc.disable()  # as in a settled node, so only keep() collects
    try:
        collections_before = heap.COLLECTIONS._value.get()
        keeper = asyncio.create_task(heap.keep(check_interval_s=0.01, growth=1.05))
        await asyncio.sleep(0.05)
        garbage = [Cycle() for _ in range(100_000)]  # grows the heap by more than 5 %
        canary = weakref.ref(garbage[0])
        del garbage  # a cycle each: only a collection frees them
        assert canary() is not None
        for _ in range(200):
            await asyncio.sleep(0.01)
            if canary() is None:
                break
        keeper.cancel()
    finally:
        gc.enable()
    assert canary() is None, "the grown heap was not collected"
    assert heap.COLLECTIONS._value.get() >= collections_before + 1
    assert heap.BLOCKS._value.get() > 0


async def test_a_heap_that_does_not_grow_is_left_alone() -> None:
    collections_before = heap.COLLECTIONS._value.get()
    keeper = asyncio.create_task(heap.keep(check_interval_s=0.01, growth=4.0))
    await asyncio.sleep(0.2)
    keeper.cancel()
    assert heap.COLLECTIONS._value.get() == collections_before
