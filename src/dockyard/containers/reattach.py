"""An attach stream to the supervisor that outlives the supervisor.

The daemon's end of an attach (``docker attach``, ``run -a``, ``start -a``) or of an
attached exec: read like a StreamReader, written like a StreamWriter (what
api/hijack.relay uses). When the supervisor's end closes while the task still runs
by the daemon's state (the supervisor was killed or reloaded: its holder starts a
new one, which adopts the task), the stream is opened again with the same streams,
retrying for up to REATTACH_TIMEOUT, and the client's connection carries on. The new
supervisor holds an adopted task's output back until that attach arrives (up to a
second, supervisor/adoption.ADOPT_GRACE), so what was written in between reaches the
client too. Input the client sends while no supervisor is connected is kept (up to
GAP_INPUT_MAX) and sent after the re-attach; what went into the old connection
unread when the supervisor died is lost.

An end of the stream is also how a task's exit shows, so each end is checked with the
supervisor: a re-attach answered ``exited`` (or refused: the task is gone, or another
run of it) ends the client's stream, the exit code handed to ``exited`` (an exec's).
"""

from __future__ import annotations

import asyncio
from typing import Callable

from dockyard import errors

REATTACH_TIMEOUT = 30.0
RETRY_EVERY = 0.05
GAP_INPUT_MAX = 1 << 20


class ReattachingStream:
    def __init__(self, sup, task_id: str, streams: dict, reply: dict,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 running: Callable[[], bool], closing: asyncio.Event,
                 exited: Callable[[dict], None] | None = None) -> None:
        self._sup = sup
        self._task_id = task_id
        self._streams = streams          # stdin/stdout/stderr, as first asked
        self._pid = reply.get("pid") or 0   # this run of the task (another is not re-attached)
        self._reader, self._writer = reader, writer
        self._running = running          # the daemon's state: the task still runs
        self._closing = closing          # the daemon shuts down
        self._exited = exited
        self._eof = False                # the client's stdin ended
        self._gap: bytearray | None = None   # input while re-attaching
        self._closed = asyncio.Event()

    # ---- reading (the task's output) ---------------------------------------------------
    async def read(self, n: int = -1) -> bytes:
        while True:
            try:
                data = await self._reader.read(n)
            except OSError:   # the supervisor died with our input unread: a reset
                data = b""
            if data or self._closed.is_set():
                return data
            if not await self._reattach():
                return b""

    async def _reattach(self) -> bool:
        self._writer.close()
        if self._gap is None:
            self._gap = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REATTACH_TIMEOUT
        first = True
        while not self._closed.is_set() and not self._closing.is_set() and self._running():
            left = deadline - loop.time()
            if left <= 0:
                return False
            if not first:
                await asyncio.sleep(RETRY_EVERY)
            first = False
            attempt = asyncio.ensure_future(self._sup.open_stream(
                "attach", id=self._task_id, pid=self._pid, **self._streams))
            closed = asyncio.ensure_future(self._closed.wait())
            try:
                await asyncio.wait({attempt, closed}, timeout=left,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                if not attempt.done():   # closed (the daemon stops), or a supervisor that
                    attempt.cancel()     # does not answer: it closes its connection
            if not attempt.done() or attempt.cancelled():
                continue
            try:
                reply, reader, writer = attempt.result()
            except (errors.Unavailable, OSError, ValueError):
                continue   # no supervisor (yet): its holder is starting one
            except errors.DockyardError:
                return False   # the task is gone
            if self._closed.is_set():
                writer.close()
                return False
            if reply.get("status") == "exited":
                writer.close()
                if self._exited is not None:
                    self._exited(reply)
                return False
            self._reader, self._writer = reader, writer
            gap, self._gap = self._gap, None
            if gap:
                writer.write(bytes(gap))
            if self._eof and writer.can_write_eof():
                writer.write_eof()
            return True
        return False

    # ---- writing (the client's input) --------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._gap is not None:
            if len(self._gap) + len(data) <= GAP_INPUT_MAX:
                self._gap += data
            return
        if not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except OSError:
            pass   # the supervisor is gone: the reader re-attaches

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._eof = True
        if self._gap is None and not self._writer.is_closing() and self._writer.can_write_eof():
            try:
                self._writer.write_eof()
            except OSError:
                pass

    # ---- the end -----------------------------------------------------------------------
    def is_closing(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()
        self._writer.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()
