"""The event bus: every service reports what happened; /events readers subscribe.

Thread-safe on the emitting side (services run in executor threads); each
subscriber is an asyncio queue fed on its own loop.  The last ``capacity``
events are kept in memory so that ``since=`` can replay them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Callable

# Types whose messages also carry the pre-1.22 fields status/id/from.
_LEGACY_TYPES = {"container", "image"}


def make_event(type: str, action: str, actor_id: str, attributes: dict | None,
               scope: str, time_ns: int) -> dict:
    attrs = {str(k): str(v) for k, v in (attributes or {}).items()}
    ev: dict = {}
    if type in _LEGACY_TYPES:
        ev["status"] = action
        ev["id"] = actor_id
        if type == "container" and "image" in attrs:
            ev["from"] = attrs["image"]
    ev.update({
        "Type": type,
        "Action": action,
        "Actor": {"ID": actor_id, "Attributes": attrs},
        "scope": scope,
        "time": time_ns // 1_000_000_000,
        "timeNano": time_ns,
    })
    return ev


def _strip_tag(name: str) -> str:
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon]
    return name


def event_matches(ev: dict, filters: dict[str, list[str]]) -> bool:
    """Docker's event filter semantics (an absent key matches everything)."""
    if not filters:
        return True
    actor = ev.get("Actor", {})
    attrs = actor.get("Attributes", {}) or {}
    aid = actor.get("ID", "")

    def has(key: str, pred: Callable[[str], bool]) -> bool:
        vals = filters.get(key)
        return True if not vals else any(pred(v) for v in vals)

    if not has("type", lambda v: v == ev.get("Type")):
        return False
    if not has("event", lambda v: v == ev.get("Action") or
               v == (ev.get("Action") or "").split(":")[0]):
        return False
    if not has("scope", lambda v: v == ev.get("scope")):
        return False
    if not has("container", lambda v: v == attrs.get("name") or (
            ev.get("Type") == "container" and aid.startswith(v))):
        return False
    name_attr = "name" if ev.get("Type") == "image" else "image"
    img = attrs.get(name_attr, "")
    if not has("image", lambda v: v in (aid, img, _strip_tag(aid), _strip_tag(img))):
        return False
    for key in ("network", "volume", "plugin", "daemon", "node", "service", "secret", "config"):
        if not has(key, lambda v, key=key: ev.get("Type") == key and (
                v == aid or v == attrs.get("name") or aid.startswith(v))):
            return False

    def label(v: str) -> bool:
        k, eq, val = v.partition("=")
        if k not in attrs:
            return False
        return not eq or attrs[k] == val

    return has("label", label)


EVENT_FILTERS = {"type", "event", "scope", "container", "image", "label", "network", "volume",
                 "plugin", "daemon", "node", "service", "secret", "config"}


class Subscription:
    def __init__(self, bus: "EventBus", filters: dict[str, list[str]]):
        self._bus = bus
        self.filters = filters
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()

    def _deliver(self, ev: dict | None) -> None:
        if ev is not None and not event_matches(ev, self.filters):
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._queue.put_nowait(ev)
        else:
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, ev)
            except RuntimeError:  # loop closed
                pass

    async def get(self, timeout: float | None = None) -> dict | None:
        """Next event; None when the bus closed or ``timeout`` passed."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    def close(self) -> None:
        self._bus._unsubscribe(self)


class EventBus:
    def __init__(self, capacity: int = 4096):
        self._lock = threading.Lock()
        self._ring: deque[dict] = deque(maxlen=capacity)
        self._subs: set[Subscription] = set()
        self._last_ns = 0
        self._closed = False

    def emit(self, type: str, action: str, actor_id: str, attributes: dict | None = None,
             scope: str = "local") -> dict:
        with self._lock:
            now = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = now
            ev = make_event(type, action, actor_id, attributes, scope, now)
            self._ring.append(ev)
            subs = list(self._subs)
        for s in subs:
            s._deliver(ev)
        return ev

    def subscribe(self, filters: dict[str, list[str]] | None = None,
                  since_ns: int | None = None) -> tuple[list[dict], Subscription]:
        """Past events at or after ``since_ns`` (none if None) and a live subscription.

        Must be called on the event loop that will read the subscription.
        """
        filters = filters or {}
        sub = Subscription(self, filters)
        with self._lock:
            past = [] if since_ns is None else [
                e for e in self._ring if e["timeNano"] >= since_ns and event_matches(e, filters)]
            if self._closed:
                sub._queue.put_nowait(None)
            else:
                self._subs.add(sub)
        return past, sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._subs)

    def close(self) -> None:
        """End every subscription (daemon shutdown)."""
        with self._lock:
            self._closed = True
            subs = list(self._subs)
            self._subs.clear()
        for s in subs:
            s._deliver(None)
