"""The warm pool: containers made ahead of time for the next identical `run --rm`.

After a `run --rm` container exits, the daemon makes one more container like it (same
image, same Config and HostConfig, a new random id) up to the point where the runtime's
init waits to be started: rootfs mounted, namespaces and cgroups made, the supervisor
holding its stdio. A `create` whose container would be identical takes that container
instead of making one (the id was random anyway); its `start` then only releases the
init. An entry nobody takes is torn down after ``ttl`` seconds.

This module keeps the policy (keys, limits, expiry); the container service does the
making and the tearing down. Entries are invisible to every API: no record in the
daemon's view, no events; their rows in the store (status "warm") exist only so that
a daemon that died is able to tear them down when it starts again.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

MARKER = "warm"      # a file in the container's directory while it is in the pool


def key(c: dict) -> str:
    """What makes two containers interchangeable before their first start: everything
    the runtime spec is made from, with a defaulted hostname (the id's first 12
    characters) seen as unset."""
    cfg = dict(c["Config"])
    if cfg.get("Hostname") == c["Id"][:12]:
        cfg["Hostname"] = ""
    return json.dumps([c["Image"], cfg, c["HostConfig"], c.get("NetworkingConfig") or {}],
                      sort_keys=True)


@dataclass
class Entry:
    key: str
    record: dict
    pid: int
    made: float = field(default_factory=time.monotonic)


class Pool:
    def __init__(self, size: int, ttl: float = 60.0) -> None:
        self.size = size
        self.ttl = ttl
        self.ready: dict[str, Entry] = {}      # by key: one entry per key
        self.making: dict[str, "asyncio.Future"] = {}   # keys being made now: done when made
        self.taken: dict[str, Entry] = {}      # by container id: created, not started yet

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def wanted(self, k: str) -> bool:
        """Should an entry for this key be made now?"""
        if not self.enabled or k in self.ready or k in self.making:
            return False
        return len(self.ready) + len(self.making) < self.size

    def take(self, k: str) -> Entry | None:
        return self.ready.pop(k, None)

    def expired(self, now: float | None = None) -> list[Entry]:
        now = time.monotonic() if now is None else now
        old = [e for e in self.ready.values() if now - e.made >= self.ttl]
        for e in old:
            del self.ready[e.key]
        return old

    def drain(self) -> list[Entry]:
        out = list(self.ready.values())
        self.ready.clear()
        return out
