"""The daemon's log reads: a blocking generator's batches made in a worker thread."""

from __future__ import annotations

import asyncio
import threading
import time

from dockyard.containers import streams


def _slow_batches(closed: threading.Event, running: list):
    try:
        for i in range(1000):
            running.append(i)
            time.sleep(0.02)
            yield [i]
    finally:
        closed.set()


def test_batches_come_in_order_and_the_next_is_read_ahead():
    closed, running = threading.Event(), []

    async def main():
        got = []
        async for b in streams._batches_in_thread(_slow_batches(closed, running)):
            got += b
            if len(got) == 5:
                await asyncio.sleep(0.2)
                assert len(running) == 6   # one batch ahead, no more
                break
        return got

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert closed.wait(5)   # closed once the thread's read is done


def test_a_consumer_cancelled_mid_read_leaves_the_generator_closed():
    closed, running = threading.Event(), []

    async def main():
        async def consume():
            async for _ in streams._batches_in_thread(_slow_batches(closed, running)):
                pass
        t = asyncio.ensure_future(consume())
        await asyncio.sleep(0.1)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    assert closed.wait(5)
    n = len(running)
    time.sleep(0.1)
    assert len(running) == n < 1000
