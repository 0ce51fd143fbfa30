"""Embedded DNS at 127.0.0.11 inside the containers' namespaces."""

from __future__ import annotations

import socket
import threading

import pytest

from nethelpers import nsexec
from dockyard.network import dnsmsg as m

pytestmark = pytest.mark.xdist_group("network")


def nslookup(ns: str, name: str) -> str:
    p = nsexec(ns, "busybox", "nslookup", name, "127.0.0.11")
    return p.stdout + p.stderr


@pytest.fixture
def fake_upstream():
    """A DNS server on host loopback answering every A query with 192.0.2.123."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                data, addr = s.recvfrom(4096)
            except socket.timeout:
                continue
            q = m.parse_query(data)
            ans = [(m.TYPE_A, m.a_rdata("192.0.2.123"))] if q.question.qtype == m.TYPE_A else []
            s.sendto(m.build_response(q, ans, ttl=5), addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{s.getsockname()[1]}"
    finally:
        stop.set()
        t.join()
        s.close()


def test_containers_resolve_each_other(manager, netns):
    manager.create_network("dnsnet")
    a, b = netns(), netns()
    ea = manager.connect("a" * 64, a, "dnsnet", name="/alpha", aliases=["web", "www"])
    eb = manager.connect("b" * 64, b, "dnsnet", name="/beta")
    assert ea["DNSNames"] == ["alpha", "web", "www", "a" * 12]
    assert ea["Aliases"] == ["web", "www"]

    out = nslookup(b, "alpha")
    assert ea["IPAddress"] in out, out
    assert ea["IPAddress"] in nslookup(b, "web")
    assert ea["IPAddress"] in nslookup(b, "WWW")  # names are case-insensitive
    assert eb["IPAddress"] in nslookup(a, "beta")
    assert eb["IPAddress"] in nslookup(a, "b" * 12)
    # and by name, over the wire, through the DNAT to our port
    assert nsexec(b, "busybox", "ping", "-c", "1", "-W", "2", ea["IPAddress"]).returncode == 0

    # the redirect rules live inside the container's namespace
    rules = nsexec(a, "iptables-save", "-t", "nat").stdout
    assert "-d 127.0.0.11/32 -p udp" in rules and "--dport 53" in rules
    # port 53 itself stays free for the container's own use
    assert ":53 " not in nsexec(a, "busybox", "netstat", "-lnu").stdout

    # a name that is not ours, with no upstream configured -> SERVFAIL, quickly
    assert "SERVFAIL" in nslookup(a, "nothere.invalid")

    # after a disconnect the name is gone, and the disconnected side loses its resolver
    manager.disconnect("a" * 64, "dnsnet")
    assert ea["IPAddress"] not in nslookup(b, "alpha")
    assert "127.0.0.11" not in nsexec(a, "iptables-save", "-t", "nat").stdout


def test_default_bridge_and_other_networks_are_not_visible(manager, netns):
    manager.create_network("one")
    manager.create_network("two")
    a, b, c = netns(), netns(), netns()
    manager.connect("a" * 64, a, "one", name="alpha")
    eb = manager.connect("b" * 64, b, "two", name="beta")
    manager.connect("c" * 64, c, "bridge", name="gamma")
    assert eb["IPAddress"] not in nslookup(a, "beta")
    # a container on the default bridge gets no embedded DNS
    assert "127.0.0.11" not in nsexec(c, "iptables-save", "-t", "nat").stdout


def test_forwarding_to_upstream(net_ids, netns, fake_upstream):
    from nethelpers import make_manager, scrub

    mgr = make_manager(net_ids, dns_upstreams=[fake_upstream])
    try:
        mgr.start()
        mgr.create_network("fwd")
        a = netns()
        mgr.connect("a" * 64, a, "fwd", name="alpha")
        assert "192.0.2.123" in nslookup(a, "example.test")
        # our names are still answered locally
        assert "192.0.2.123" not in nslookup(a, "alpha")
    finally:
        try:
            mgr.teardown()
        finally:
            scrub(net_ids)


TCP_AND_PTR = r"""
import socket, struct, sys
from dockyard.network import dnsmsg as m
name, ip = sys.argv[1], sys.argv[2]
s = socket.create_connection(("127.0.0.11", 53), timeout=5)
q = m.build_query(name)
s.sendall(struct.pack("!H", len(q)) + q)
n = struct.unpack("!H", s.recv(2))[0]
data = b""
while len(data) < n:
    data += s.recv(n - len(data))
print("tcp", [socket.inet_ntoa(a[1]) for a in m.parse_answers(data)[1]])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
u.sendto(m.build_query(rev, m.TYPE_PTR), ("127.0.0.11", 53))
d, _ = u.recvfrom(4096)
print("ptr", m.parse_answers(d)[1])
"""


def test_tcp_queries_and_reverse_lookups(manager, netns):
    import os
    import sys

    import dockyard

    manager.create_network("tcpnet")
    a, b = netns(), netns()
    ea = manager.connect("a" * 64, a, "tcpnet", name="alpha")
    manager.connect("b" * 64, b, "tcpnet", name="beta")
    src = os.path.dirname(os.path.dirname(dockyard.__file__))
    p = nsexec(b, "env", f"PYTHONPATH={src}", sys.executable, "-c", TCP_AND_PTR, "alpha", ea["IPAddress"])
    assert p.returncode == 0, p.stderr
    assert f"tcp ['{ea['IPAddress']}']" in p.stdout
    assert r"\x05alpha\x06tcpnet\x00" in p.stdout


def test_internal_network_does_not_forward(net_ids, netns, fake_upstream):
    from nethelpers import make_manager, scrub

    mgr = make_manager(net_ids, dns_upstreams=[fake_upstream])
    try:
        mgr.start()
        mgr.create_network("sealed", internal=True)
        a, b = netns(), netns()
        ea = mgr.connect("a" * 64, a, "sealed", name="alpha")
        mgr.connect("b" * 64, b, "sealed", name="beta")
        assert ea["IPAddress"] in nslookup(b, "alpha")  # names still resolve
        out = nslookup(a, "example.test")
        assert "192.0.2.123" not in out and "SERVFAIL" in out
    finally:
        try:
            mgr.teardown()
        finally:
            scrub(net_ids)
