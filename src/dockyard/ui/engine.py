"""The UI's client of the Engine API: aiohttp over the daemon's socket.

Any Docker-compatible daemon will do (Dockyard's, Debian's dockerd): only
unversioned, documented endpoints are used. Errors come back as
:class:`EngineError` with the daemon's status and message, which the UI's
routes pass on. The exec terminal needs the hijacked connection Docker's
``/exec/{id}/start`` answers with, which aiohttp's client does not expose, so
:meth:`Engine.hijack` speaks that one request itself over asyncio streams.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import aiohttp

DEFAULT_HOST = "unix:///run/dockyard.sock"


class EngineError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def engine_host(explicit: str | None) -> str:
    return explicit or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


class Engine:
    """One shared aiohttp session to the daemon at ``host`` (unix:// or tcp://)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._session: aiohttp.ClientSession | None = None
        self._ssl = None
        if host.startswith("unix://"):
            self._sock_path: str | None = host[len("unix://"):]
            self._base = "http://docker"
            self._addr = None
        elif host.startswith(("tcp://", "http://", "https://")):
            hostport = host.split("://", 1)[1].rstrip("/")
            h, _, p = hostport.rpartition(":")
            self._sock_path = None
            tls = host.startswith("https://") or os.environ.get("DOCKER_TLS_VERIFY") not in (None, "", "0")
            if tls:
                from dockyard.client.transport import TLSConfig

                cert_path = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
                self._ssl = TLSConfig.from_dir(cert_path, verify=True).context()
            self._base = f"{'https' if tls else 'http'}://{hostport}"
            self._addr = (h.strip("[]") or "127.0.0.1", int(p or (2376 if tls else 2375)))
        else:
            raise ValueError(f"unsupported engine host {host!r} (unix:// or tcp://)")

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._sock_path is not None:
                conn = aiohttp.UnixConnector(path=self._sock_path, limit=0)
            else:
                conn = aiohttp.TCPConnector(limit=0, ssl=self._ssl if self._ssl is not None else False)
            self._session = aiohttp.ClientSession(
                connector=conn, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                headers={"User-Agent": "Dockyard-UI/0.1.0"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def url(self, path: str, params: dict | None = None) -> str:
        q = {k: v for k, v in (params or {}).items() if v is not None}
        return self._base + path + (("?" + urlencode(q, doseq=True)) if q else "")

    @staticmethod
    async def _raise(resp: aiohttp.ClientResponse) -> None:
        if resp.status < 400:
            return
        body = await resp.read()
        try:
            msg = json.loads(body).get("message") or body.decode(errors="replace")
        except (ValueError, AttributeError):
            msg = body.decode(errors="replace").strip() or resp.reason or "error"
        raise EngineError(resp.status, msg)

    async def request(self, method: str, path: str, params: dict | None = None,
                      body: Any = None, headers: dict | None = None, timeout: float = 120) -> Any:
        """A request whose answer is read whole: JSON decoded, or None when empty."""
        data = None if body is None else json.dumps(body).encode()
        h = dict(headers or {})
        if data is not None:
            h["Content-Type"] = "application/json"
        try:
            async with self.session().request(method, self.url(path, params), data=data, headers=h,
                                              timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await self._raise(resp)
                raw = await resp.read()
        except aiohttp.ClientConnectionError as e:
            raise EngineError(502, f"cannot reach the engine at {self.host}: {e}") from e
        except asyncio.TimeoutError as e:
            raise EngineError(504, f"the engine did not answer {method} {path} in time") from e
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params)

    async def stream(self, method: str, path: str, params: dict | None = None,
                     headers: dict | None = None, data: Any = None) -> aiohttp.ClientResponse:
        """A streaming response, status already checked; the caller closes it.
        ``data`` is a request body (bytes, or an async iterable of chunks, sent chunked)."""
        try:
            resp = await self.session().request(method, self.url(path, params), headers=headers or {},
                                                data=data)
        except aiohttp.ClientConnectionError as e:
            raise EngineError(502, f"cannot reach the engine at {self.host}: {e}") from e
        try:
            await self._raise(resp)
        except BaseException:
            resp.release()
            raise
        return resp

    async def json_lines(self, method: str, path: str, params: dict | None = None,
                         headers: dict | None = None, data: Any = None,
                         on_connected=None) -> AsyncIterator[dict]:
        """Each JSON object of a streamed answer (events, stats, pull progress, build output);
        ``on_connected()`` runs once the engine has answered 200."""
        resp = await self.stream(method, path, params, headers, data)
        if on_connected is not None:
            on_connected()
        try:
            dec = json.JSONDecoder()
            buf = ""
            async for chunk in resp.content.iter_any():
                buf += chunk.decode(errors="replace")
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        obj, end = dec.raw_decode(buf)
                    except ValueError:
                        break
                    buf = buf[end:]
                    yield obj
        finally:
            resp.close()

    async def hijack(self, method: str, path: str, body: dict) -> tuple[asyncio.StreamReader,
                                                                         asyncio.StreamWriter]:
        """POST ``path`` asking for the raw stream (Docker's attach/exec upgrade);
        returns the connection's reader and writer once the daemon has answered 101/200."""
        if self._sock_path is not None:
            reader, writer = await asyncio.open_unix_connection(self._sock_path)
            host = "docker"
        else:
            reader, writer = await asyncio.open_connection(*self._addr, ssl=self._ssl)
            host = f"{self._addr[0]}:{self._addr[1]}"
        data = json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Dockyard-UI/0.1.0\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n").encode()
        writer.write(head + data)
        await writer.drain()
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError) as e:
            writer.close()
            raise EngineError(502, f"the engine closed the {path} upgrade: {e}") from e
        status_line = raw.split(b"\r\n", 1)[0].decode(errors="replace")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 502
        if status not in (101, 200):
            rest = b""
            try:
                rest = await asyncio.wait_for(reader.read(65536), 5)
            except asyncio.TimeoutError:
                pass
            writer.close()
            try:
                msg = json.loads(rest[rest.find(b"{"):]).get("message", status_line)
            except ValueError:
                msg = status_line
            raise EngineError(status, msg)
        return reader, writer
