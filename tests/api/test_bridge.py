"""The blocking<->async stream adapters with a real event loop: no failure may block it."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

from dockyard.api.bridge import AsyncResponseWriter, StreamAborted


class _Loop:
    """An event loop running on a thread of its own (a stuck loop cannot hang the test)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 5):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def loop():
    lp = _Loop()
    yield lp
    if lp.loop.is_running():
        lp.stop()


def _never_prepared():
    raise AssertionError("nothing may be sent")


def test_writer_collected_on_the_loop_with_data_buffered_does_not_block_it(loop):
    box = {}

    async def make():
        box["w"] = AsyncResponseWriter(_never_prepared, asyncio.get_running_loop())

    loop.run(make())
    w = box["w"]
    t = threading.Thread(target=w.write, args=(b"x" * 100,))   # buffered, not sent
    t.start()
    t.join(5)
    w._cycle = w            # collected by the cyclic collector, as a traceback's frames are
    del w, box["w"]

    async def collect():
        gc.collect()
        return "alive"

    assert loop.run(collect()) == "alive"

    async def close_on_loop():
        w2 = AsyncResponseWriter(_never_prepared, asyncio.get_running_loop())
        w2.write(b"y" * 10)
        w2.close()          # a handler's cleanup: drops, never waits for itself
        return "closed"

    assert loop.run(close_on_loop()) == "closed"


def test_a_thread_waiting_on_a_stopped_loop_is_released(loop):
    started = threading.Event()

    async def prepare():
        started.set()
        await asyncio.sleep(3600)      # a client that never drains

    async def make():
        return AsyncResponseWriter(prepare, asyncio.get_running_loop())

    w = loop.run(make())
    result = {}

    def produce():
        try:
            w.write(b"z" * (1 << 20))   # over a chunk: waits for the loop
        except StreamAborted as e:
            result["err"] = e

    t = threading.Thread(target=produce)
    t.start()
    assert started.wait(5)
    loop.stop()                          # the daemon stops meanwhile
    t0 = time.monotonic()
    t.join(10)
    assert not t.is_alive() and isinstance(result.get("err"), StreamAborted)
    assert time.monotonic() - t0 < 5
    with pytest.raises(StreamAborted):   # and fails at once afterwards
        w.write(b"z" * (1 << 20))


def test_abort_releases_a_waiting_thread_and_fails_later_writes(loop):
    async def prepare():
        await asyncio.sleep(3600)

    async def make():
        return AsyncResponseWriter(prepare, asyncio.get_running_loop())

    w = loop.run(make())
    result = {}

    def produce():
        try:
            w.write(b"z" * (1 << 20))
        except StreamAborted as e:
            result["err"] = e

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(0.2)

    async def abort():
        w.abort("client gone")

    loop.run(abort())
    t.join(5)
    assert not t.is_alive() and "client gone" in str(result.get("err"))
    assert not isinstance(result["err"], OSError)   # producers that skip OSErrors still stop
