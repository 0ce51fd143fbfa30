"""A test hook: ``DOCKYARD_TEST_CRASH_AT=<point>[,<point>...]`` makes the process kill
itself with SIGKILL when it reaches a named point (fault-injection tests of crash
recovery). Read once at import; unset, ``at()`` is one dict lookup on an empty set.

Points are named ``<op>.<step>``: ``create.dirs``, ``start.mounted``, ``remove.files``...
(see the calls of ``crashpoints.at``). ``DOCKYARD_TEST_CRASH_SKIP=<n>`` lets the first
``n`` passes through a point go by (to crash in the middle of a workload).
"""

from __future__ import annotations

import os

_POINTS = frozenset(p for p in os.environ.get("DOCKYARD_TEST_CRASH_AT", "").split(",") if p)
_skip = int(os.environ.get("DOCKYARD_TEST_CRASH_SKIP", "0") or 0) if _POINTS else 0


def at(point: str) -> None:
    global _skip
    if point in _POINTS:
        if _skip > 0:
            _skip -= 1
            return
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
