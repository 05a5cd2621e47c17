"""The garbage collector of a running node: off while calls flow, run when the heap
has grown.

CPython frees an object the moment its last reference goes; the cyclic collector is
only for objects that keep each other alive, and it stops the whole process while it
walks every tracked object of the generations it collects. At 300 calls/s a node keeps
tens of thousands of objects alive (calls, SIP transactions that RFC 3261 keeps for up
to 32 s), and with CPython's default thresholds it paused for up to 30 ms (young
collections) and 300 ms (full ones) every few seconds. Every call that arrives during
a pause waits for it, and for the backlog after it. Measured with ``bench/cps.py`` at
300 calls/s for 20 s, post-dial delay p50/p99: 1-5 / 25-45 ms with the default
thresholds, 1-1.5 / 7-15 ms with the best thresholds tried (20000, 20, 100), and
0.8-2.1 / 2.6-13 ms with automatic collection off (several runs each; the spread is
the shared machine's). Calls leave almost no cyclic garbage (a full collection after
3,000 calls with collection off found 106 objects to free), so that is how a node
runs:

- ``settle()``, once the node has started: a full collection, then ``gc.freeze()``
  (what is alive at that point, modules, classes, the app, is never walked again), then
  automatic collection off.
- ``keep()`` instead: every ``check_interval_s`` it reads how many memory blocks
  Python has allocated (``sys.getallocatedblocks``, ~0.1 ms; counting the tracked
  objects took 100 ms at 300 calls/s), and when they have grown to ``growth`` times
  the count after the last collection, it collects once. Garbage cycles from rarer
  paths (errors, API requests) are so freed with the heap bounded to a multiple of
  what is alive, at the price of one pause when it happens, not one every few
  seconds. Each collection is logged and counted in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 10.0
# A node's blocks after startup are about 1.3 million; 300 calls/s add about a third.
GROWTH = 4.0

COLLECTIONS = Counter(
    "callmask_gc_collections_total", "Full collections run because the heap had grown"
)
COLLECTED = Counter("callmask_gc_collected_objects_total", "Objects freed by those collections")
PAUSE_SECONDS = Counter("callmask_gc_pause_seconds_total", "Time the node spent in them")
BLOCKS = Gauge("callmask_heap_blocks", "Memory blocks Python has allocated, at the last check")


def settle() -> None:
    """Collect what startup left, freeze the rest, and turn automatic collection off
    (see the module's docstring). Call once, in the node's process, after startup."""
    gc.collect()
    gc.freeze()
    gc.disable()


async def keep(*, check_interval_s: float = CHECK_INTERVAL_S, growth: float = GROWTH) -> None:
    """Collect whenever the allocated blocks have grown past ``growth`` times their
    count after the last collection (or after ``settle``); runs until cancelled."""
    baseline = sys.getallocatedblocks()
    BLOCKS.set(baseline)
    while True:
        await asyncio.sleep(check_interval_s)
        blocks = sys.getallocatedblocks()
        BLOCKS.set(blocks)
        log.debug("heap: %d memory blocks (collection at %d)", blocks, baseline * growth)
        if blocks < baseline * growth:
            continue
        started = time.perf_counter()
        freed = gc.collect()
        pause_s = time.perf_counter() - started
        baseline = sys.getallocatedblocks()
        BLOCKS.set(baseline)
        COLLECTIONS.inc()
        COLLECTED.inc(freed)
        PAUSE_SECONDS.inc(pause_s)
        log.info(
            "garbage collection: %d memory blocks before, %d after, %d objects freed, %.1f ms",
            blocks,
            baseline,
            freed,
            pause_s * 1000,
        )
