"""Docker's hijacked connections (attach, exec start): 101 UPGRADED, then raw bytes.

After the 101 the HTTP connection is a plain byte pipe: we write output straight
to the transport, and what the client sends arrives, unparsed, in the request's
body stream (aiohttp treats an upgraded request's payload as raw bytes). A
client half-close (EOF on that stream) means "stdin is done".
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from dockyard.detachkeys import DEFAULT_DETACH_KEYS, DetachScanner, parse_detach_keys  # noqa: F401


class _RawProtocol(asyncio.Protocol):
    """Takes over a hijacked connection from aiohttp: client bytes go to ``reader``."""

    def __init__(self, reader: asyncio.StreamReader, http: asyncio.BaseProtocol | None = None) -> None:
        self.reader = reader
        self.http = http   # aiohttp's protocol: told when the connection ends

    def data_received(self, data: bytes) -> None:
        self.reader.feed_data(data)

    def eof_received(self) -> bool:
        # A half-close means "stdin is done", not "hang up": keep sending output.
        self.reader.feed_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.reader.feed_eof()
        # aiohttp's server keeps every connection it was not told had ended (its
        # handler, parser, buffers: ~2 KB each, one per `docker run`): tell it
        http, self.http = self.http, None
        if http is not None:
            http.connection_lost(exc)


async def upgrade(request: web.Request) -> asyncio.Transport:
    """Answer 101 UPGRADED, then take the connection away from the HTTP server.

    Afterwards ``request["hijack_input"]`` is a StreamReader of what the client
    sends, and output is written straight to the returned transport.
    """
    # Every client we know (the docker CLI, docker-py) asks to upgrade; one that
    # does not gets the 101 as well, since a raw stream cannot be chunk-framed.
    resp = web.StreamResponse(status=101, reason="UPGRADED")
    resp.headers["Content-Type"] = "application/vnd.docker.raw-stream"
    resp.headers["Connection"] = "Upgrade"
    resp.headers["Upgrade"] = "tcp"
    await resp.prepare(request)
    request["hijack_response"] = resp
    transport = request.transport
    assert transport is not None
    reader = asyncio.StreamReader(limit=2 ** 20)
    proto = request.protocol
    early = getattr(proto, "_message_tail", b"") or b""
    if early:
        reader.feed_data(early)
        proto._message_tail = b""  # type: ignore[attr-defined]
    transport.set_protocol(_RawProtocol(reader, proto))
    proto.close()  # aiohttp must not read further HTTP requests from this connection
    request["hijack_input"] = reader
    return transport


async def relay(request: web.Request, transport: asyncio.Transport,
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                stdin: bool, detach_keys: bytes) -> bool:
    """Copy container output to the client and client input to the container.

    Returns True when the client detached with the detach keys.
    """
    detached = asyncio.Event()
    client_in: asyncio.StreamReader = request["hijack_input"]

    async def out() -> None:
        while True:
            data = await reader.read(65536)
            if not data or transport.is_closing():
                return
            transport.write(data)
            while transport.get_write_buffer_size() > 4 * 1024 * 1024 and not transport.is_closing():
                await asyncio.sleep(0.01)  # a slow client: let it drain

    async def inp() -> None:
        scanner = DetachScanner(detach_keys)
        try:
            while True:
                data = await client_in.read(65536)
                if not data:
                    break
                if not stdin:
                    continue
                fwd, det = scanner.feed(data)
                if fwd:
                    writer.write(fwd)
                    await writer.drain()
                if det:
                    detached.set()
                    return
            if stdin:
                rest = scanner.flush()
                if rest:
                    writer.write(rest)
                if writer.can_write_eof():
                    writer.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        # stdin closed: keep streaming output until the task ends
        await asyncio.Event().wait()

    out_task = asyncio.ensure_future(out())
    in_task = asyncio.ensure_future(inp())
    det_task = asyncio.ensure_future(detached.wait())
    try:
        await asyncio.wait({out_task, det_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (out_task, in_task, det_task):
            t.cancel()
        writer.close()
        transport.close()
    return detached.is_set()
