"""Bridges between aiohttp's async bodies and the services' blocking file objects.

The services run in executor threads and read/write plain file-like objects;
these adapters hop to the event loop for each buffered chunk, so a body of
any size streams through without being held in memory, with backpressure.
"""

from __future__ import annotations

import asyncio
import io
from typing import Awaitable, Callable

from aiohttp import web

CHUNK = 256 * 1024


class AsyncBodyReader(io.RawIOBase):
    """A blocking, readable file over an aiohttp request body (use from a thread)."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop):
        self._content = request.content
        self._loop = loop
        self._buf = b""
        self._eof = False
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def _fill(self, want: int) -> None:
        if self._eof:
            return
        fut = asyncio.run_coroutine_threadsafe(self._content.read(max(want, CHUNK)), self._loop)
        data = fut.result()
        if not data:
            self._eof = True
        self._buf += data

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks = [self._buf]
            self._buf = b""
            while not self._eof:
                self._fill(CHUNK)
                chunks.append(self._buf)
                self._buf = b""
            out = b"".join(chunks)
        else:
            if not self._buf:
                self._fill(n)
            out, self._buf = self._buf[:n], self._buf[n:]
        self.bytes_read += len(out)
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class AsyncResponseWriter(io.RawIOBase):
    """A blocking, writable file that streams into an aiohttp response (use from a thread).

    The response is prepared on the first write, so an error raised before
    any output still becomes a proper HTTP error status.
    """

    def __init__(self, prepare: Callable[[], Awaitable[web.StreamResponse]],
                 loop: asyncio.AbstractEventLoop):
        self._prepare = prepare
        self._loop = loop
        self._resp: web.StreamResponse | None = None
        self._buf = bytearray()
        self.bytes_written = 0

    @property
    def started(self) -> bool:
        return self._resp is not None

    def writable(self) -> bool:
        return True

    async def _send(self, data: bytes) -> None:
        if self._resp is None:
            self._resp = await self._prepare()
        if data:
            await self._resp.write(data)

    def _push(self, data: bytes) -> None:
        asyncio.run_coroutine_threadsafe(self._send(data), self._loop).result()

    def write(self, b) -> int:
        n = len(b)
        self._buf += b
        self.bytes_written += n
        if len(self._buf) >= CHUNK:
            data, self._buf = bytes(self._buf), bytearray()
            self._push(data)
        return n

    def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            self._push(data)

    async def finish(self) -> web.StreamResponse:
        """On the loop, after the service returned: send the rest and end the body."""
        data, self._buf = bytes(self._buf), bytearray()
        await self._send(data)
        assert self._resp is not None
        await self._resp.write_eof()
        return self._resp
