"""Bridges between aiohttp's async bodies and the services' blocking file objects.

The services run in executor threads and read/write plain file-like objects;
these adapters hop to the event loop for each buffered chunk, so a body of
any size streams through without being held in memory, with backpressure.

A failure must end only its own request, never the daemon:

* nothing here ever waits on the event loop *from* the event loop's thread (a
  writer garbage-collected with buffered data there would otherwise flush and
  wait for itself: the whole daemon hangs, SIGTERM included), so closing or
  collecting a writer on the loop drops what it still buffers;
* a thread's wait for the loop is bounded by the request's life: once the
  response is aborted (an error, a client gone, the daemon stopping) or the
  loop has stopped, every read and write raises :class:`StreamAborted` at once;
* :func:`stream_response` is the one way to run a producer into a response: an
  error before the first byte becomes the usual HTTP error status, one after it
  cuts the connection (a tar cannot carry an error in-band), so the client sees
  a truncated body and the daemon goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
from typing import Any, Awaitable, Callable, Coroutine

from aiohttp import web

from dockyard.errors import DockyardError

CHUNK = 256 * 1024
_POLL = 0.5   # how often a waiting thread checks that its request is still alive

log = logging.getLogger("dockyard.api")


class StreamAborted(Exception):
    """The response or request body this thread streams through has ended (error,
    client gone, daemon stopping). Deliberately not an OSError, so producers that
    skip files on OSError do not mistake it for one and go on writing."""


class _LoopCaller:
    """Runs coroutines on ``loop`` for a worker thread and waits, boundedly, for them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dead: str | None = None

    def on_loop(self) -> bool:
        """Is the caller the loop's own thread (where waiting for the loop deadlocks)?"""
        return asyncio._get_running_loop() is self._loop

    def abort(self, why: str = "the response was aborted") -> None:
        if self._dead is None:
            self._dead = why

    @property
    def aborted(self) -> bool:
        return self._dead is not None

    def _call(self, coro: Coroutine) -> Any:
        if self.on_loop():
            coro.close()
            raise RuntimeError("a blocking stream adapter was used on the event loop's thread")
        if self._dead is not None:
            coro.close()
            raise StreamAborted(self._dead)
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:   # the loop is closed
            coro.close()
            self.abort("the daemon is shutting down")
            raise StreamAborted(self._dead) from None
        while True:
            try:
                return fut.result(_POLL)
            except concurrent.futures.TimeoutError:
                if self._dead is None and (self._loop.is_closed() or not self._loop.is_running()):
                    self.abort("the daemon is shutting down")
                if self._dead is not None:
                    fut.cancel()
                    raise StreamAborted(self._dead) from None
            except concurrent.futures.CancelledError:
                self.abort("the request was cancelled")
                raise StreamAborted(self._dead) from None
            except ConnectionError as e:   # aiohttp: "Cannot write to closing transport"
                self.abort(f"the client went away ({e})")
                raise StreamAborted(self._dead) from None


class AsyncBodyReader(io.RawIOBase):
    """A blocking, readable file over an aiohttp request body (use from a thread)."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop):
        self._content = request.content
        self._caller = _LoopCaller(loop)
        self._buf = b""
        self._eof = False
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def abort(self, why: str = "the request was aborted") -> None:
        """On the loop: every later read raises :class:`StreamAborted`."""
        self._caller.abort(why)

    def _fill(self, want: int) -> None:
        if self._eof:
            return
        data = self._caller._call(self._content.read(max(want, CHUNK)))
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

    The response is prepared on the first chunk sent, so an error raised before
    any output still becomes a proper HTTP error status. Made on the loop (by a
    handler); written from a worker thread; ended on the loop by :meth:`finish`
    or :meth:`abort` (:func:`stream_response` does both).
    """

    def __init__(self, prepare: Callable[[], Awaitable[web.StreamResponse]],
                 loop: asyncio.AbstractEventLoop):
        self._prepare = prepare
        self._caller = _LoopCaller(loop)
        self._resp: web.StreamResponse | None = None
        self._buf = bytearray()
        self.bytes_written = 0

    @property
    def started(self) -> bool:
        return self._resp is not None

    @property
    def response(self) -> web.StreamResponse | None:
        return self._resp

    def writable(self) -> bool:
        return True

    async def _send(self, data: bytes) -> None:
        if self._resp is None:
            self._resp = await self._prepare()
        if data:
            await self._resp.write(data)

    def write(self, b) -> int:
        if self._caller.aborted:
            if self._caller.on_loop():
                return len(b)   # a finalizer's last words (tarfile's _Stream.__del__): dropped
            raise StreamAborted(self._caller._dead)
        n = len(b)
        self._buf += b
        self.bytes_written += n
        if len(self._buf) >= CHUNK:
            data, self._buf = bytes(self._buf), bytearray()
            self._caller._call(self._send(data))
        return n

    def flush(self) -> None:
        if self._buf and not self._caller.aborted:
            data, self._buf = bytes(self._buf), bytearray()
            self._caller._call(self._send(data))

    def close(self) -> None:
        # On the loop's thread (a handler's cleanup, the garbage collector) there is
        # no one to hand the rest to: only finish() sends it. Elsewhere, as a file.
        if self._caller.on_loop():
            self._buf = bytearray()
        super().close()

    def __del__(self) -> None:
        self._buf = bytearray()   # never flush from a finalizer
        try:
            super().close()
        except Exception:  # noqa: BLE001 - a finalizer must not raise
            pass

    def abort(self, why: str = "the response was aborted") -> None:
        """On the loop: drop what is buffered; later writes raise :class:`StreamAborted`."""
        self._buf = bytearray()
        self._caller.abort(why)

    async def finish(self) -> web.StreamResponse:
        """On the loop, after the service returned: send the rest and end the body."""
        if self._caller.aborted:
            raise StreamAborted(self._caller._dead)
        data, self._buf = bytes(self._buf), bytearray()
        await self._send(data)
        assert self._resp is not None
        await self._resp.write_eof()
        return self._resp


async def stream_response(request: web.Request,
                          headers: Callable[[], dict[str, str]],
                          produce: Callable[[AsyncResponseWriter], Awaitable[None]]
                          ) -> web.StreamResponse:
    """Run ``produce(writer)`` (which hands the writer to a blocking service call in a
    thread) into a 200 response with ``headers()``, made when the first chunk is sent.

    Whatever happens, only this request ends: an error before any byte went out
    propagates (the error middleware answers its status); after that the error is
    logged and the connection closed mid-body; a client that went away just ends
    the request. In every case the producer's later writes fail at once."""
    async def prepare() -> web.StreamResponse:
        resp = web.StreamResponse(headers=headers())
        await resp.prepare(request)
        return resp

    writer = AsyncResponseWriter(prepare, asyncio.get_running_loop())
    try:
        await produce(writer)
        return await writer.finish()
    except BaseException as e:
        writer.abort(f"the response failed: {type(e).__name__}")
        resp = writer.response
        if resp is None or isinstance(e, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(e, (StreamAborted, ConnectionError)):
            log.info("%s %s: the client went away mid-stream", request.method, request.path)
        else:
            log.error("%s %s failed after the response started: %s: %s", request.method,
                      request.path, type(e).__name__, e,
                      exc_info=not isinstance(e, DockyardError))
        if request.transport is not None:
            request.transport.close()   # no clean end of the body: the client sees it cut
        return resp


def client_gone(request: web.Request) -> bool:
    tr = request.transport
    return tr is None or tr.is_closing()


async def while_connected(request: web.Request, items, poll: float = _POLL):
    """The items of the async iterator ``items`` until it ends or the client goes away.

    A follow stream (logs -f, events) may wait for its next item for hours; without
    this, a client that hung up is noticed only at the next write, and its handler,
    subscription and files live on until then."""
    it = items.__aiter__()
    try:
        while True:
            nxt = asyncio.ensure_future(it.__anext__())
            while not nxt.done():
                await asyncio.wait({nxt}, timeout=poll)
                if not nxt.done() and client_gone(request):
                    nxt.cancel()
                    try:
                        await nxt
                    except BaseException:  # noqa: BLE001 - the generator is being closed
                        pass
                    return
            try:
                item = nxt.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()
