"""The container list the page asks for, kept between requests while nothing changes.

Listing 1,000 containers costs the engine a good part of a second on a busy machine,
and the page asks again at every container event. :class:`ContainerList` keeps the
last answer, already encoded as the page's compact JSON, and a watch of the engine's
container events: every event moves ``epoch``, and an answer is reused only if it
was fetched at the current epoch, less than ``MAX_AGE`` seconds ago (the "Up 3
minutes" texts age), and the watch is up. Otherwise one fetch is shared by the
requests that want the same epoch. So a page never gets a list older than the last
event the UI has seen, and a quiet engine is asked at most every ``MAX_AGE`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Callable

MAX_AGE = 10.0
RETRY = 2.0


class ContainerList:
    def __init__(self, engine, encode: Callable[[list], bytes], clock=time.monotonic) -> None:
        self.engine = engine
        self.encode = encode
        self.clock = clock
        self.epoch = 0                   # moves at every container event (and when the watch breaks)
        self.watching = False            # the event stream is connected
        self.body: bytes | None = None   # the last answer ...
        self.body_epoch = -1             # ... fetched at this epoch
        self.body_at = 0.0
        self._fetch: asyncio.Task | None = None
        self._fetch_epoch = -1
        self._watch: asyncio.Task | None = None
        self._watch_tried = -1e9

    def fresh(self) -> bool:
        return (self.body is not None and self.watching and self.body_epoch == self.epoch
                and self.clock() - self.body_at < MAX_AGE)

    async def get(self) -> tuple[bytes, bool]:
        """The list's JSON, and whether it is the kept one (no engine request)."""
        self._ensure_watch()
        if self.fresh():
            return self.body, True
        if self._fetch is None or self._fetch.done() or self._fetch_epoch != self.epoch:
            self._fetch_epoch = self.epoch
            self._fetch = asyncio.create_task(self._load(self.epoch))
        return await asyncio.shield(self._fetch), False

    async def _load(self, epoch: int) -> bytes:
        rows = await self.engine.get("/containers/json", all="1")
        body = self.encode(rows or [])
        if epoch >= self.body_epoch:
            self.body, self.body_epoch, self.body_at = body, epoch, self.clock()
        return body

    def changed(self) -> None:
        """Something changed (an event, or an action of the UI's own): ask the engine again."""
        self.epoch += 1

    def _ensure_watch(self) -> None:
        if self._watch is not None and not self._watch.done():
            return
        if self.clock() - self._watch_tried < RETRY:
            return
        self._watch_tried = self.clock()
        self._watch = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        filters = json.dumps({"type": ["container"]})
        try:
            it = self.engine.json_lines("GET", "/events", {"filters": filters},
                                        on_connected=self._connected)
            async for _ in it:
                self.changed()
        except Exception:   # the engine gone, the stream cut: not watching (asked again at the next get)
            pass
        finally:
            self.watching = False
            self.changed()

    def _connected(self) -> None:
        # events from now on are seen: answers fetched after this may be kept
        self.changed()
        self.watching = True

    async def close(self) -> None:
        for t in (self._watch, self._fetch):
            if t is not None:
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
