"""The daemon's heap under churn: fewer glibc arenas, free pages given back after removals.

Python allocates objects of up to 512 bytes from its own arenas; everything larger
(records' JSON, request bodies, buffers, SQLite's pages) comes from glibc's malloc, which
gives each thread that allocates at the same time as another an arena of its own (up to 8
per core). The service threads of the daemon each fill one, and free pages in the middle
of an arena stay resident: under a `run --rm` churn the daemon's RSS crept up although no
object was kept (issue 16, bench/churn_bench.py). So:

- ``limit_arenas()``, before any thread starts: at most ``ARENAS`` arenas (the GIL lets
  one thread run Python at a time: more arenas buy little but fragments);
- ``Trimmer``: after containers are removed, ``malloc_trim(0)`` (glibc returns every free
  page of every arena, not only the top of the main heap) at most once per ``interval``.

Both do nothing where the C library is not glibc; ``MALLOC_ARENA_MAX`` in the environment
is left to glibc.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import time

log = logging.getLogger("dockyard.daemon")

ARENAS = 2
M_ARENA_MAX = -8   # glibc's malloc.h


def _glibc():
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        return ctypes.CDLL(None, use_errno=True)
    except (ValueError, OSError, AttributeError):
        return None


def limit_arenas(n: int = ARENAS) -> bool:
    """``mallopt(M_ARENA_MAX, n)``: call before the process starts threads (threads that
    have an arena keep it). True if set."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False   # the operator's choice, applied by glibc itself
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, n))


def trim() -> float:
    """``malloc_trim(0)``; the seconds it took (0 where there is no glibc)."""
    libc = _glibc()
    if libc is None:
        return 0.0
    t = time.monotonic()
    libc.malloc_trim(0)
    return time.monotonic() - t


class Trimmer:
    """``poke()`` (from any thread) after something big went (a container); the heap is
    trimmed on the loop at most once per ``interval`` seconds, ``interval`` after the first
    poke since the last trim (a churn trims once per interval, not once per container)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 5.0) -> None:
        self._loop = loop
        self.interval = interval
        self._pending = False
        self._libc = _glibc()
        self.trims = 0

    def poke(self) -> None:
        if self._libc is None or self._pending:
            return
        self._pending = True
        try:
            self._loop.call_soon_threadsafe(self._arm)
        except RuntimeError:   # the loop is closed: the daemon is stopping
            self._pending = False

    def _arm(self) -> None:
        self._loop.call_later(self.interval, self._trim)

    def _trim(self) -> None:
        self._pending = False
        took = trim()
        self.trims += 1
        log.debug("malloc_trim: %.1f ms", took * 1000)
