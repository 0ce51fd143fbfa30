"""Ending a short-lived command's process without the interpreter's teardown.

A command (`dockyard ps`, `dockyard-runc start`) is done once its output is flushed;
the interpreter's module and thread cleanup after that costs ~10 ms and does nothing
this project needs.
"""

from __future__ import annotations

import posix
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:   # importing typing costs ~10 ms: the runtime's start path never does
    from typing import Callable, NoReturn


def run_and_exit(fn: Callable[[], int | None]) -> NoReturn:
    """Run ``fn`` and end the process with its status, as ``sys.exit(fn())`` would
    (SystemExit included), after flushing stdout and stderr."""
    try:
        code = fn() or 0
    except SystemExit as e:        # as the interpreter would treat it
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    posix._exit(int(code) & 0xFF)
