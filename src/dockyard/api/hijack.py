"""Docker's hijacked connections (attach, exec start): 101 UPGRADED, then raw bytes.

After the 101 the HTTP connection is a plain byte pipe: we write output straight
to the transport, and what the client sends arrives, unparsed, in the request's
body stream (aiohttp treats an upgraded request's payload as raw bytes). A
client half-close (EOF on that stream) means "stdin is done".
"""

from __future__ import annotations

import asyncio

from aiohttp import web

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def parse_detach_keys(spec: str | None) -> bytes:
    """``ctrl-p,ctrl-q`` / ``a,ctrl-@`` -> the byte sequence that detaches."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        k = key.strip().lower()
        if len(k) == 1:
            out.append(ord(k))
        elif k.startswith("ctrl-") and len(k) == 6:
            c = k[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise ValueError(f"invalid detach keys: {spec}")
        else:
            raise ValueError(f"invalid detach keys: {spec}")
    return bytes(out)


class DetachScanner:
    """Sans-IO: passes stdin bytes through, holding back a possible detach prefix."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Return (bytes to forward, detach requested)."""
        if not self.keys:
            return data, False
        buf = self._held + data
        idx = buf.find(self.keys)
        if idx >= 0:
            self._held = b""
            return buf[:idx], True
        # keep the longest suffix that is a prefix of the keys
        keep = 0
        for n in range(min(len(self.keys) - 1, len(buf)), 0, -1):
            if self.keys.startswith(buf[-n:]):
                keep = n
                break
        self._held = buf[len(buf) - keep:] if keep else b""
        return buf[: len(buf) - keep], False

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held


async def upgrade(request: web.Request) -> asyncio.Transport:
    """Answer 101 UPGRADED (or 200 for clients that did not ask to upgrade)."""
    upgrading = request.headers.get("Upgrade", "").lower() == "tcp"
    resp = web.StreamResponse(status=101 if upgrading else 200, reason="UPGRADED" if upgrading else "OK")
    resp.headers["Content-Type"] = "application/vnd.docker.raw-stream"
    if upgrading:
        resp.headers["Connection"] = "Upgrade"
        resp.headers["Upgrade"] = "tcp"
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    request["hijack_response"] = resp
    transport = request.transport
    assert transport is not None
    return transport


async def relay(request: web.Request, transport: asyncio.Transport,
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                stdin: bool, detach_keys: bytes) -> bool:
    """Copy container output to the client and client input to the container.

    Returns True when the client detached with the detach keys.
    """
    detached = asyncio.Event()
    resp: web.StreamResponse = request["hijack_response"]
    raw = resp.status == 101

    async def out() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if transport.is_closing():
                return
            if raw:
                transport.write(data)
            else:
                await resp.write(data)

    async def inp() -> None:
        scanner = DetachScanner(detach_keys)
        try:
            while True:
                data = await request.content.readany()
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
        if raw:
            transport.close()
        else:
            await resp.write_eof()
    return detached.is_set()
