"""Published TCP ports reach the container through the kernel (DNAT), 127.0.0.1
included; the userland proxy holds the ports and serves UDP on loopback."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from dockyard.network.firewall import Chains, BridgeFw, PortFw, plan
from dockyard.network.proxy import PortAllocated, ServiceLoop, bind_port, make_proxy

pytestmark = pytest.mark.xdist_group("network")

# answers each connection with the address it sees the peer at
PEER_ECHO = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7001)); s.listen(5)\n"
    "while True:\n"
    "    c, a = s.accept(); c.sendall(a[0].encode()); c.close()\n"
)


def _rules(tables: dict[str, list[str]]) -> dict[str, str]:
    return {t: "\n".join(lines) for t, lines in tables.items()}


def test_plan_dnats_tcp_on_loopback_and_leaves_udp_loopback_to_the_proxy():
    ch = Chains("DYTPLAN")
    b = BridgeFw("dytpl0", "10.9.0.0/24")
    ports = [PortFw("dytpl0", "10.9.0.2", 80, "tcp", "127.0.0.1", 8080),
             PortFw("dytpl0", "10.9.0.2", 81, "tcp", "0.0.0.0", 8081),
             PortFw("dytpl0", "10.9.0.2", 53, "udp", "127.0.0.1", 5353),
             PortFw("dytpl0", "10.9.0.2", 54, "udp", "", 5354)]
    r = _rules(plan(ch, [b], ports))
    assert "-d 127.0.0.1/32 ! -i dytpl0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.9.0.2:80" in r["nat"]
    assert "-A DYTPLAN ! -i dytpl0 -p tcp -m tcp --dport 8081 -j DNAT" in r["nat"]
    assert "--dport 5353" not in r["nat"]  # UDP on loopback: the proxy
    assert "-A DYTPLAN ! -d 127.0.0.0/8 ! -i dytpl0 -p udp -m udp --dport 5354 -j DNAT" in r["nat"]
    # loopback sources leaving through the bridge are masqueraded to the gateway
    assert "-A DYTPLAN-POSTROUTING -s 127.0.0.0/8 -o dytpl0 -j MASQUERADE" in r["nat"]
    # route_localnet does not open the host's loopback to the bridge or to other hosts
    assert "-A DYTPLAN-RAW -d 127.0.0.0/8 -i dytpl0 -j DROP" in r["raw"]
    assert "-A DYTPLAN-RAW -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8080 -j DROP" in r["raw"]
    assert "--dport 8081" not in r["raw"]
    # the OUTPUT jump no longer skips loopback destinations
    out = [rule for table, chain, rule in ch.jumps() if (table, chain) == ("nat", "OUTPUT")]
    assert out and "127.0.0.0/8" not in out[0]


def _peer_seen(port: int, tries: int = 100) -> str:
    for _ in range(tries):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                data = s.recv(100)
                if data:
                    return data.decode()
        except OSError:
            pass
        time.sleep(0.1)  # the server in the namespace may still be starting
    raise AssertionError(f"127.0.0.1:{port} did not answer")


def test_loopback_tcp_port_is_served_by_the_kernel(manager, netns):
    ns = netns()
    ep = manager.connect("k" * 64, ns, "bridge", ports=["127.0.0.1::7001"])
    port = int(manager.container_settings("k" * 64)["Ports"]["7001/tcp"][0]["HostPort"])
    p = subprocess.Popen(["ip", "netns", "exec", os.path.basename(ns), sys.executable, "-c", PEER_ECHO])
    try:
        bridge = manager.networks[manager._find("bridge").id].bridge
        with open(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet") as f:
            assert f.read().strip() == "1"
        # the container sees the gateway, as it would behind the proxy
        assert _peer_seen(port) == ep["Gateway"]
        # the port is still held: no one else can bind it
        with pytest.raises(PortAllocated):
            bind_port("127.0.0.1", port, "tcp").close()
        # with the proxies gone (a daemon that is down), the port still answers
        manager.close()
        assert _peer_seen(port) == ep["Gateway"]
        # and a restarted manager re-adopts it
        manager.start()
        with pytest.raises(PortAllocated):
            bind_port("127.0.0.1", port, "tcp").close()
        assert _peer_seen(port) == ep["Gateway"]
    finally:
        p.kill()
        p.wait()
    manager.release_all("k" * 64)
    rules = "\n".join(manager.firewall.our_rules())
    assert f"--dport {port}" not in rules


def test_tcp_proxy_splices_bulk_data_both_ways_with_half_close():
    """The userland proxy itself (it serves the ports the kernel path does not
    take, e.g. containers reaching the gateway address): 24 MiB in, a digest
    back after the client's half-close, twice on the same listener."""
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(5)

    def serve() -> None:
        for _ in range(2):
            c, _ = sink.accept()
            h = hashlib.sha256()
            while d := c.recv(1 << 16):
                h.update(d)
            c.sendall(h.hexdigest().encode())
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    loop = ServiceLoop()
    lsock = bind_port("127.0.0.1", 0, "tcp")
    port = lsock.getsockname()[1]
    proxy = make_proxy(lsock, "tcp", sink.getsockname())
    try:
        loop.call(proxy.start())
        payload = os.urandom(1 << 20) * 24
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                reply = b""
                while chunk := s.recv(100):
                    reply += chunk
            assert reply.decode() == hashlib.sha256(payload).hexdigest()
    finally:
        loop.call(proxy.close())
        loop.close()
        sink.close()
        t.join(5)
    with pytest.raises(OSError):  # closed with the proxy
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _raw_drop_count(manager, bridge: str) -> int:
    out = subprocess.run(["iptables", "-w", "-t", "raw", "-L", manager.firewall.chains.raw,
                          "-v", "-n", "-x"], capture_output=True, text=True, check=True).stdout
    return sum(int(ln.split()[0]) for ln in out.splitlines()
               if " DROP " in ln and bridge in ln.split() and "127.0.0.0/8" in ln)


def test_route_localnet_does_not_open_the_hosts_loopback_to_containers(manager, netns):
    """route_localnet on the bridge would let a container that routes
    127.0.0.1 via its gateway reach the host's loopback services; the raw
    DROP keeps them closed (the packets do arrive: the rule counts them)."""
    ns = netns()
    ep = manager.connect("l" * 64, ns, "bridge")
    bridge = manager.networks[manager._find("bridge").id].bridge
    from nethelpers import nsexec
    for cmd in (["ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local"],
                ["ip", "route", "del", "local", "127.0.0.1", "dev", "lo", "table", "local"],
                ["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"],
                ["ip", "route", "add", "127.0.0.1/32", "via", ep["Gateway"], "dev", "eth0"]):
        nsexec(ns, *cmd, check=True)
    assert f"via {ep['Gateway']}" in nsexec(ns, "ip", "route", "get", "127.0.0.1").stdout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.settimeout(2)
        before = _raw_drop_count(manager, bridge)
        nsexec(ns, sys.executable, "-c",
               "import socket, time\n"
               "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               "for _ in range(3):\n"
               f"    s.sendto(b'hi', ('127.0.0.1', {srv.getsockname()[1]})); time.sleep(0.1)\n",
               check=True)
        with pytest.raises(socket.timeout):
            srv.recvfrom(100)
        assert _raw_drop_count(manager, bridge) >= before + 3
