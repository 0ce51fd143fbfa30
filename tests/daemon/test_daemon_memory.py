"""daemon/memory.py: glibc's arenas limited before threads start, trims coalesced."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

from dockyard.daemon import memory

pytestmark = pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc only")

# Eight threads allocate (objects over 512 bytes come from malloc) at the same time; a
# thread arena is a 64 MiB-aligned mapping of its own: count them in /proc/self/maps.
_THREADS = r"""
import os, sys, threading
sys.path[:0] = [%r]
from dockyard.daemon import memory
if sys.argv[1] == "limit":
    assert memory.limit_arenas(2)
barrier = threading.Barrier(8)
keep = []
def work():
    barrier.wait()
    keep.append([bytes(4096) for _ in range(2000)])
ts = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
arenas = set()
for line in open("/proc/self/maps"):
    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
    if lo %% (64 << 20) == 0 and line.split()[1] == "rw-p" and len(line.split()) == 5:
        arenas.add(lo)
print(len(arenas))
"""


def _arenas(mode: str) -> int:
    src = os.path.join(os.path.dirname(memory.__file__), "..", "..")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", _THREADS % os.path.abspath(src), mode],
                         env=env, capture_output=True, text=True, check=True).stdout
    return int(out)


def test_limit_arenas_keeps_threads_in_two_arenas():
    # without the limit, threads allocating at once get arenas of their own
    assert _arenas("default") >= 2
    assert _arenas("limit") <= 1   # the main heap (not such a mapping) and one more


def test_trims_are_coalesced_per_interval():
    async def go():
        t = memory.Trimmer(asyncio.get_running_loop(), interval=0.2)
        pokers = [threading.Thread(target=lambda: [t.poke() for _ in range(100)])
                  for _ in range(4)]
        for p in pokers:
            p.start()
        for p in pokers:
            p.join()
        t.poke()
        await asyncio.sleep(0.6)
        assert t.trims == 1
        t.poke()
        await asyncio.sleep(0.4)
        assert t.trims == 2

    asyncio.run(go())
