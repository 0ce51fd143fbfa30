"""Processes a test started, found by an argument of theirs (e.g. its own data root)."""

from __future__ import annotations

import os


def processes_with_arg(arg: str) -> list[int]:
    """Pids of the processes that have ``arg`` as one of their arguments."""
    want = arg.encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if want in args:
            found.append(int(name))
    return found
