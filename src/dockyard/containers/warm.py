"""The warm pool: containers made ahead of time for the next identical `run --rm`.

When `run --rm` containers come in a series (an identical one was created before), the
daemon makes the next one ahead of time (same image, Config and HostConfig, a new random
id) up to the point where the runtime's init waits to be started: rootfs mounted,
namespaces and cgroups made, the supervisor holding its stdio. A `create` whose
container would be identical takes it instead of making one (the id was random anyway);
its `start` then only releases the init. An entry nobody takes is torn down after
``ttl`` seconds; a pool that is full gives the oldest entry's place to a new series.

This module keeps the policy (keys, limits, expiry); the container service does the
making and the tearing down. Entries are invisible to every API: no record in the
daemon's view, no events; their rows in the store (named "/ warm <id>") exist only so
that a daemon that died tears them down when it starts again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
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
    SEEN_KEYS = 64

    def __init__(self, size: int, ttl: float = 60.0) -> None:
        self.size = size
        self.ttl = ttl
        self.ready: dict[str, Entry] = {}      # by key: one entry per key
        self.making: dict[str, "asyncio.Future"] = {}   # keys being made now: done when made
        self.taken: dict[str, Entry] = {}      # by container id: created, not started yet
        self.seen: OrderedDict[str, int] = OrderedDict()   # creates per key, recent last

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def note(self, k: str) -> None:
        """A `run --rm` container with this key was created."""
        self.seen[k] = self.seen.pop(k, 0) + 1
        while len(self.seen) > self.SEEN_KEYS:
            self.seen.popitem(last=False)

    def admit(self, k: str) -> tuple[bool, list[Entry]]:
        """Should an entry for this key be made now, and which ready entries must make
        room for it? Only for a series: a key created at least twice (one-off runs
        never pay for a container made in vain). The least recently made entry of
        another key gives way when the pool is full."""
        if not self.enabled or k in self.ready or k in self.making or self.seen.get(k, 0) < 2:
            return False, []
        evicted = []
        while len(self.ready) + len(self.making) >= self.size and self.ready:
            oldest = min(self.ready.values(), key=lambda e: e.made)
            del self.ready[oldest.key]
            evicted.append(oldest)
        if len(self.ready) + len(self.making) >= self.size:
            return False, evicted
        return True, evicted

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
