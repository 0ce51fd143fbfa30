"""The embedded DNS server containers on user networks see at 127.0.0.11.

Wiring (as Docker's, one resolver per container "sandbox"):

1. ``open_sockets(netns_path)`` enters the container's network namespace from
   a helper thread (netns.run_in_netns) and creates a UDP and a listening TCP
   socket bound to 127.0.0.11 on kernel-chosen ports. The sockets stay in that
   namespace after the thread exits; they are served by the daemon's asyncio
   loop like any other socket (``Listener``).
2. ``install_redirect(netns_path, udp_port, tcp_port)`` adds, inside the
   container's namespace, nat OUTPUT rules (in chains of our own) that DNAT
   127.0.0.11:53 to those ports. Conntrack rewrites the replies' source back
   to :53. Port 53 stays free for the container's own use.
3. Names the container's networks know (``name`` or ``name.network``, link aliases
   first; the manager's ``_lookup`` has dockerd's rules) are answered from the
   manager's tables for A, AAAA and MX (empty) and PTR; everything else, TXT/SRV/ANY
   of our names included, is forwarded, as raw bytes, to the upstream
   servers (the container's --dns, else the host's resolv.conf). Forwarding
   sockets are opened by the loop in the daemon's own (host) namespace, so even
   a host resolver on loopback (127.0.0.53) works.

The rules live in the container's namespace and vanish with it; on
disconnect from its last user network they are removed explicitly. After a
daemon restart new sockets are opened and the rules are rewritten (the chain
is flushed and refilled in one iptables-restore transaction).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
from typing import Callable

from dockyard.network import dnsmsg as m
from dockyard.network.netns import run_in_netns

DNS_IP = "127.0.0.11"
FORWARD_TIMEOUT = 2.0

# (name as asked: case kept, no trailing dot; TYPE_A or TYPE_AAAA) -> the addresses of
# that family, [] for a name that is ours without one (an empty NOERROR), None when the
# name is not ours (forwarded)
Lookup = Callable[[str, int], "list[str] | None"]
# IPv4 or IPv6 address -> names, or None
Reverse = Callable[[str], "list[str] | None"]


class Resolver:
    def __init__(
        self,
        lookup: Lookup,
        reverse: Reverse,
        upstreams: Callable[[], list[tuple[str, int]]],
        ttl: int = 600,
    ) -> None:
        self.lookup = lookup
        self.reverse = reverse
        self.upstreams = upstreams
        self.ttl = ttl

    def answer_local(self, data: bytes) -> bytes | None:
        """The reply if the query is about one of our names (sans-IO);
        None if it must be forwarded."""
        try:
            q = m.parse_query(data)
        except m.FormatError:
            return m.error_response(data, m.RCODE_FORMERR)
        if q.is_response or q.opcode != 0:
            return m.build_response(q, rcode=m.RCODE_REFUSED)
        qs = q.question
        if qs.qtype == m.TYPE_PTR:
            ip = m.ptr_to_ip(qs.name)
            names = self.reverse(ip) if ip else None
            if not names:
                return None
            return m.build_response(q, [(m.TYPE_PTR, m.ptr_rdata(n)) for n in names], ttl=self.ttl)
        if qs.qtype not in (m.TYPE_A, m.TYPE_AAAA, m.TYPE_MX):
            return None   # TXT, SRV, ANY...: forwarded even for our names, as dockerd's
        qtype = qs.qtype if qs.qtype == m.TYPE_AAAA else m.TYPE_A
        ips = self.lookup(qs.asked, qtype)
        if ips is None:
            return None
        if qs.qtype == m.TYPE_A:
            return m.build_response(q, [(m.TYPE_A, m.a_rdata(ip)) for ip in ips], ttl=self.ttl)
        if qs.qtype == m.TYPE_AAAA:
            return m.build_response(q, [(m.TYPE_AAAA, m.aaaa_rdata(ip)) for ip in ips],
                                    ttl=self.ttl)
        # MX of one of our names, or AAAA of one without an IPv6 address: an empty
        # NOERROR (so clients do not go on to search other domains), as dockerd's.
        return m.build_response(q, [], ttl=self.ttl)

    async def resolve(self, data: bytes, tcp: bool = False) -> bytes | None:
        local = self.answer_local(data)
        if local is not None:
            if not tcp and len(local) > m.UDP_MAX:
                return m.truncated(local)
            return local
        for server in self.upstreams():
            try:
                if tcp:
                    return await asyncio.wait_for(_forward_tcp(data, server), FORWARD_TIMEOUT)
                return await asyncio.wait_for(_forward_udp(data, server), FORWARD_TIMEOUT)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                continue
        return m.error_response(data, m.RCODE_SERVFAIL)


class _OneShot(asyncio.DatagramProtocol):
    def __init__(self, qid: bytes) -> None:
        self.qid = qid
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if data[:2] == self.qid and not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def _forward_udp(data: bytes, server: tuple[str, int]) -> bytes:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _OneShot(data[:2]), remote_addr=server
    )
    try:
        transport.sendto(data)
        return await proto.done
    finally:
        transport.close()


async def _forward_tcp(data: bytes, server: tuple[str, int]) -> bytes:
    reader, writer = await asyncio.open_connection(*server)
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        (n,) = struct.unpack("!H", await reader.readexactly(2))
        return await reader.readexactly(n)
    finally:
        writer.close()


class _UDPServer(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        asyncio.get_running_loop().create_task(self._reply(data, addr))

    async def _reply(self, data: bytes, addr) -> None:
        out = await self.resolver.resolve(data)
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)


class Listener:
    """Serves one resolver on a UDP and a TCP socket (already bound)."""

    def __init__(self, resolver: Resolver, udp: socket.socket, tcp: socket.socket) -> None:
        self.resolver = resolver
        self.udp_sock, self.tcp_sock = udp, tcp
        self.udp_port = udp.getsockname()[1]
        self.tcp_port = tcp.getsockname()[1]
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UDPServer(self.resolver), sock=self.udp_sock
        )
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=self.tcp_sock)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(n)
                out = await self.resolver.resolve(data, tcp=True)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        else:
            self.udp_sock.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        else:
            self.tcp_sock.close()


# -- namespace plumbing ---------------------------------------------------------
def _bind_pair() -> tuple[socket.socket, socket.socket]:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        u.bind((DNS_IP, 0))
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((DNS_IP, 0))
        t.listen(128)
        u.setblocking(False)
        t.setblocking(False)
    except BaseException:
        u.close()
        t.close()
        raise
    return u, t


def open_sockets(netns_path: str) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on 127.0.0.11:<random> inside the namespace."""
    return run_in_netns(netns_path, _bind_pair)


def _chains(prefix: str) -> tuple[str, str]:
    return f"{prefix}_DNS", f"dockyard:{prefix}:dns"


def _iptables_in(netns_path: str, args: list[str], input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nsenter", f"--net={netns_path}", *args], input=input, capture_output=True, text=True
    )


def install_redirect(netns_path: str, udp_port: int, tcp_port: int, prefix: str = "DOCKYARD",
                     fresh: bool = False) -> None:
    """DNAT 127.0.0.11:53 (udp, tcp) to our ports, inside the namespace.

    ``fresh``: the namespace has no rules of ours yet (first connect, or after
    remove_redirect), so the jump goes in the same single transaction;
    otherwise (restore) the jump is checked for and added only if missing."""
    chain, marker = _chains(prefix)
    c = f'-m comment --comment "{marker}"'
    text = (
        "*nat\n"
        f":{chain} - [0:0]\n"
        f"-A {chain} -d {DNS_IP}/32 -p udp -m udp --dport 53 -j DNAT --to-destination {DNS_IP}:{udp_port} {c}\n"
        f"-A {chain} -d {DNS_IP}/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination {DNS_IP}:{tcp_port} {c}\n"
        + (f"-A OUTPUT -d {DNS_IP}/32 -j {chain} {c}\n" if fresh else "")
        + "COMMIT\n"
    )
    p = _iptables_in(netns_path, ["iptables-restore", "-w", "--noflush"], input=text)
    if p.returncode != 0:
        raise OSError(f"DNS redirect in {netns_path}: {p.stderr.strip()}")
    if fresh:
        return
    jump = ["OUTPUT", "-d", f"{DNS_IP}/32", "-j", chain, "-m", "comment", "--comment", marker]
    if _iptables_in(netns_path, ["iptables", "-w", "-t", "nat", "-C", *jump]).returncode != 0:
        p = _iptables_in(netns_path, ["iptables", "-w", "-t", "nat", "-A", *jump])
        if p.returncode != 0:
            raise OSError(f"DNS redirect in {netns_path}: {p.stderr.strip()}")


def remove_redirect(netns_path: str, prefix: str = "DOCKYARD") -> None:
    chain, marker = _chains(prefix)
    jump = ["OUTPUT", "-d", f"{DNS_IP}/32", "-j", chain, "-m", "comment", "--comment", marker]
    for _ in range(8):
        if _iptables_in(netns_path, ["iptables", "-w", "-t", "nat", "-D", *jump]).returncode != 0:
            break
    _iptables_in(netns_path, ["iptables", "-w", "-t", "nat", "-F", chain])
    _iptables_in(netns_path, ["iptables", "-w", "-t", "nat", "-X", chain])
