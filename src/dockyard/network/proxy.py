"""Userland proxy for published ports (what docker-proxy does), in asyncio.

Docker serves a published port twice: iptables DNAT, and a userland proxy
listening on the host address itself, which holds the port so no one else
takes it and answers what DNAT does not take. With its proxy on, Docker leaves
127.0.0.1 to the proxy; we DNAT TCP to 127.0.0.1 as well (as Docker does with
``--userland-proxy=false``, see firewall.py: no copy through a process, and
ports keep answering while the daemon restarts), so here the proxy answers UDP
on loopback and containers reaching a port through their gateway address.

The listening socket is bound *first*, synchronously, by ``bind_port`` (this
is the port allocator: the kernel refuses a taken port, and port 0 picks one
from the ephemeral range), and only then are firewall rules added; so a taken
port fails cleanly with Docker's message and leaves nothing behind.

The proxies run on an asyncio loop (``ServiceLoop`` runs one in a thread when
the caller has none).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
import threading
from typing import Any, Callable, Coroutine

from dockyard.errors import SystemError_

UDP_IDLE_TIMEOUT = 90.0  # seconds, as docker-proxy's UDP conntrack
UDP_BUFSIZE = 65535
F_SETPIPE_SZ = 1031
SPLICE_F_MOVE = getattr(os, "SPLICE_F_MOVE", 1)
SPLICE_F_MORE = getattr(os, "SPLICE_F_MORE", 4)


class PortAllocated(SystemError_):
    """A host port that cannot be bound; ``errno`` says why (EADDRINUSE,
    EADDRNOTAVAIL). The manager words it as Docker does for the case."""

    def __init__(self, message: str, errno_: int = 0) -> None:
        super().__init__(message)
        self.errno = errno_


def bind_port(host_ip: str, host_port: int, proto: str) -> socket.socket:
    """Bind (and for TCP, listen on) host_ip:host_port. ``host_port`` 0 picks a
    free port from the ephemeral range. Raises PortAllocated."""
    ip = host_ip or "0.0.0.0"
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, host_port))
        if proto == "tcp":
            s.listen(1024)
        s.setblocking(False)
        return s
    except OSError as e:
        s.close()
        if e.errno == errno.EADDRINUSE:
            raise PortAllocated(
                f"Bind for {ip}:{host_port} failed: port is already allocated", e.errno
            ) from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise PortAllocated(
                f"failed to bind host port for {ip}:{host_port}: cannot assign requested address",
                e.errno,
            ) from None
        raise


# -- TCP ----------------------------------------------------------------------
class _Side(asyncio.Protocol):
    """One connection of a proxied pair; writes what it reads to the other."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Side | None = None
        self.pending: list[bytes] = []
        self.got_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def link(self, other: "_Side") -> None:
        self.other, other.other = other, self
        for side in (self, other):
            if side.pending:
                side.other.transport.write(b"".join(side.pending))
                side.pending.clear()
            if side.got_eof:
                side.other.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        if self.other is not None:
            self.other.transport.write(data)
        else:
            self.pending.append(data)

    def eof_received(self) -> bool:
        self.got_eof = True
        if self.other is not None and self.other.transport is not None:
            if self.other.got_eof:
                self.transport.close()
                self.other.transport.close()
            elif self.other.transport.can_write_eof():
                self.other.transport.write_eof()
        return True  # half-close: keep the other direction flowing

    def connection_lost(self, exc: Exception | None) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()

    # flow control: when our write buffer is full, stop reading the other side
    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()


class TCPProxy:
    """TCP: accept on the loop, then move bytes with splice(2) (zero-copy,
    socket -> pipe -> socket, as Go's io.Copy does for docker-proxy) in two
    pump threads per connection; os.splice releases the GIL. Falls back to
    the asyncio protocol pair (_Side) where splice is unavailable."""

    SPLICE_CHUNK = 1 << 20

    def __init__(self, sock: socket.socket, target: tuple[str, int]) -> None:
        self.sock = sock
        self.target = target
        self.server: asyncio.base_events.Server | None = None
        self.conns: set[_Side] = set()
        self.spliced: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._accepting: asyncio.Task | None = None
        self._closed = False

    async def start(self) -> None:
        if hasattr(os, "splice"):
            self._accepting = asyncio.get_running_loop().create_task(self._accept_loop())
        else:  # pragma: no cover - Python < 3.10 or non-Linux
            self.server = await asyncio.get_running_loop().create_server(
                self._accept, sock=self.sock
            )

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                client, _ = await loop.sock_accept(self.sock)
            except (asyncio.CancelledError, OSError):
                return
            loop.create_task(self._splice_conn(client))

    async def _splice_conn(self, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        backend = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        backend.setblocking(False)
        try:
            await loop.sock_connect(backend, self.target)
        except OSError:
            backend.close()
            client.close()
            return
        for s in (client, backend):
            s.setblocking(True)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._closed:
                client.close()
                backend.close()
                return
            self.spliced.update((client, backend))
        pair = _SplicePair(client, backend, self._forget)
        pair.start()

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for s in socks:
                self.spliced.discard(s)

    def _accept(self) -> _Side:
        side = _Side()
        loop = asyncio.get_running_loop()
        orig = side.connection_made

        def made(transport: asyncio.BaseTransport) -> None:
            orig(transport)
            self.conns.add(side)
            loop.create_task(self._connect(side))

        side.connection_made = made  # type: ignore[method-assign]
        return side

    async def _connect(self, client: _Side) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, backend = await loop.create_connection(_Side, *self.target)
        except OSError:
            client.transport.close()
            self.conns.discard(client)
            return
        client.link(backend)

    async def close(self) -> None:
        self._closed = True
        if self._accepting is not None:
            self._accepting.cancel()
            try:
                await self._accepting
            except asyncio.CancelledError:
                pass
            self.sock.close()
        if self.server is not None:
            self.server.close()
        for c in list(self.conns):
            for side in (c, c.other):
                if side is not None and side.transport is not None:
                    side.transport.abort()
        self.conns.clear()
        with self._lock:
            socks = list(self.spliced)
        for s in socks:  # wakes the pump threads, which then close them
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.server is not None:
            await self.server.wait_closed()


class _SplicePair:
    def __init__(self, a: socket.socket, b: socket.socket, done: Callable[..., None]) -> None:
        self.a, self.b, self.done = a, b, done
        self.left = 2
        self.lock = threading.Lock()

    def start(self) -> None:
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True,
                             name="dockyard-proxy").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        r, w = os.pipe()
        try:
            try:
                fcntl.fcntl(w, F_SETPIPE_SZ, TCPProxy.SPLICE_CHUNK)
            except OSError:
                pass
            sfd, dfd = src.fileno(), dst.fileno()
            while True:
                n = os.splice(sfd, w, TCPProxy.SPLICE_CHUNK, flags=SPLICE_F_MOVE | SPLICE_F_MORE)
                if n == 0:
                    break
                while n:
                    n -= os.splice(r, dfd, n, flags=SPLICE_F_MOVE | SPLICE_F_MORE)
            dst.shutdown(socket.SHUT_WR)  # half-close, as the peer did
        except OSError:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        finally:
            os.close(r)
            os.close(w)
            with self.lock:
                self.left -= 1
                last = self.left == 0
            if last:
                self.done(self.a, self.b)
                self.a.close()
                self.b.close()


# -- UDP ----------------------------------------------------------------------
class _UDPBackend(asyncio.DatagramProtocol):
    def __init__(self, proxy: "UDPProxy", client: tuple[str, int]) -> None:
        self.proxy, self.client = proxy, client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.proxy.touch(self.client)
        if self.proxy.transport is not None:
            self.proxy.transport.sendto(data, self.client)


class UDPProxy(asyncio.DatagramProtocol):
    def __init__(self, sock: socket.socket, target: tuple[str, int]) -> None:
        self.sock = sock
        self.target = target
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple[str, int], tuple[_UDPBackend, asyncio.TimerHandle | None]] = {}
        self.connecting: dict[tuple[str, int], list[bytes]] = {}

    async def start(self) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, sock=self.sock)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        flow = self.flows.get(addr)
        if flow is not None:
            self.touch(addr)
            flow[0].transport.sendto(data)
        elif addr in self.connecting:
            self.connecting[addr].append(data)
        else:
            self.connecting[addr] = [data]
            asyncio.get_running_loop().create_task(self._open(addr))

    async def _open(self, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, backend = await loop.create_datagram_endpoint(
                lambda: _UDPBackend(self, addr), remote_addr=self.target
            )
        except OSError:
            self.connecting.pop(addr, None)
            return
        self.flows[addr] = (backend, None)
        self.touch(addr)
        for d in self.connecting.pop(addr, []):
            backend.transport.sendto(d)

    def touch(self, addr: tuple[str, int]) -> None:
        flow = self.flows.get(addr)
        if flow is None:
            return
        if flow[1] is not None:
            flow[1].cancel()
        timer = asyncio.get_running_loop().call_later(UDP_IDLE_TIMEOUT, self._expire, addr)
        self.flows[addr] = (flow[0], timer)

    def _expire(self, addr: tuple[str, int]) -> None:
        flow = self.flows.pop(addr, None)
        if flow is not None:
            flow[0].transport.close()

    async def close(self) -> None:
        for backend, timer in self.flows.values():
            if timer is not None:
                timer.cancel()
            backend.transport.close()
        self.flows.clear()
        if self.transport is not None:
            self.transport.close()
        else:
            self.sock.close()


def make_proxy(sock: socket.socket, proto: str, target: tuple[str, int]) -> TCPProxy | UDPProxy:
    return TCPProxy(sock, target) if proto == "tcp" else UDPProxy(sock, target)


# -- the loop the proxies and the DNS server run on -----------------------------
class ServiceLoop:
    """An asyncio loop for network services. Either adopt the caller's running
    loop (the daemon's; then call the manager from another thread, e.g. with
    ``asyncio.to_thread``) or run a private one in a daemon thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._thread: threading.Thread | None = None
        if loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            self._thread = threading.Thread(target=run, name="dockyard-net", daemon=True)
            self._thread.start()
            ready.wait()
        self.loop = loop

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError(
                "NetworkManager methods block: call them from a worker thread "
                "(asyncio.to_thread), not from the event loop they use"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()
            self._thread = None
