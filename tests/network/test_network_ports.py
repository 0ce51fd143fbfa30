"""Published ports: userland proxy on loopback, DNAT on the gateway address."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from dockyard.errors import DockyardError
from nethelpers import our_veths

pytestmark = pytest.mark.xdist_group("network")

UDP_ECHO = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 9999))\n"
    "while True:\n"
    "    d, a = s.recvfrom(65535)\n"
    "    s.sendto(b'echo:' + d, a)\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for p in started:
            p.kill()
            p.wait()


def start_httpd(ns: str, docroot, procs) -> None:
    docroot.mkdir()
    (docroot / "index.html").write_text("hello from the container\n")
    import os
    procs.append(subprocess.Popen(
        ["ip", "netns", "exec", os.path.basename(ns), "busybox", "httpd", "-f", "-p", "80", "-h", str(docroot)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ))


def get(url: str, tries: int = 50) -> str:
    last = None
    for _ in range(tries):  # the server in the namespace may still be starting
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"{url}: {last}")


def test_publish_on_loopback_and_gateway(manager, netns, tmp_path, procs):
    ns = netns()
    port = free_port()
    ep = manager.connect("a" * 64, ns, "bridge", ports=[f"127.0.0.1:{port}:80"])
    start_httpd(ns, tmp_path / "www", procs)
    assert get(f"http://127.0.0.1:{port}/") == "hello from the container\n"
    settings = manager.container_settings("a" * 64)
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert settings["IPAddress"] == ep["IPAddress"]

    # a second binding on all addresses: the gateway address goes through DNAT
    manager.disconnect("a" * 64, "bridge")
    port2 = free_port()
    manager.connect("a" * 64, ns, "bridge", ports=[f"{port2}:80"])
    gw = manager.inspect_network("bridge")["IPAM"]["Config"][0]["Gateway"]
    assert get(f"http://{gw}:{port2}/") == "hello from the container\n"
    assert get(f"http://127.0.0.1:{port2}/") == "hello from the container\n"
    rules = "\n".join(manager.firewall.our_rules())
    assert f"--dport {port2}" in rules and "-j DNAT" in rules

    manager.release_all("a" * 64)
    assert f"--dport {port2}" not in "\n".join(manager.firewall.our_rules())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port2), timeout=2).close()


def test_random_host_port_and_udp(manager, netns, tmp_path, procs):
    ns = netns()
    manager.connect("b" * 64, ns, "bridge", ports=["80", "127.0.0.1::9999/udp"])
    start_httpd(ns, tmp_path / "www", procs)
    import os
    procs.append(subprocess.Popen(["ip", "netns", "exec", os.path.basename(ns), sys.executable, "-c", UDP_ECHO]))
    ports = manager.container_settings("b" * 64)["Ports"]
    lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    tcp = int(ports["80/tcp"][0]["HostPort"])
    udp = int(ports["9999/udp"][0]["HostPort"])
    assert ports["80/tcp"][0]["HostIp"] == "0.0.0.0"
    assert lo <= tcp <= hi and lo <= udp <= hi
    assert get(f"http://127.0.0.1:{tcp}/") == "hello from the container\n"

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        for _ in range(40):
            s.sendto(b"ping", ("127.0.0.1", udp))
            try:
                data, _ = s.recvfrom(100)
                break
            except socket.timeout:
                continue
        else:
            raise AssertionError("no UDP echo through the proxy")
    assert data == b"echo:ping"


def test_port_already_taken(manager, netns):
    ns1, ns2 = netns(), netns()
    port = free_port()
    manager.connect("a" * 64, ns1, "bridge", ports=[f"{port}:80"])
    before_rules = manager.firewall.our_rules()
    before_veths = our_veths(manager)
    before_state = manager.state()
    prefix = r"^driver failed programming external connectivity on endpoint web2 \([0-9a-f]{64}\): "
    with pytest.raises(DockyardError) as e:
        manager.connect("b" * 64, ns2, "bridge", ports=[f"127.0.0.1:{port + 0}:80", f"{port}:81"],
                        name="/web2")
    assert re.match(prefix + f"Bind for 127.0.0.1:{port} failed: port is already allocated$",
                    str(e.value)), str(e.value)
    with pytest.raises(DockyardError, match=prefix + f"Bind for 0.0.0.0:{port} failed: port is already allocated$"):
        manager.connect("b" * 64, ns2, "bridge", ports=[f"{port}:80"], name="web2")
    # a port a host process holds: the bind fails, in Docker 28's words
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        hp = held.getsockname()[1]
        with pytest.raises(DockyardError) as e:
            manager.connect("b" * 64, ns2, "bridge", ports=[f"127.0.0.1:{hp}:80/tcp"], name="web2")
        assert re.match(prefix + rf"failed to bind host port for 127\.0\.0\.1:{hp}:[0-9.]+:80/tcp: "
                        "address already in use$", str(e.value)), str(e.value)
    # two bindings of the same request on one port: the second is "already allocated"
    p2 = free_port()
    with pytest.raises(DockyardError, match=f"Bind for 0.0.0.0:{p2} failed: port is already allocated$"):
        manager.connect("b" * 64, ns2, "bridge", ports=[f"127.0.0.1:{p2}:80", f"{p2}:81"])
    # nothing half-configured: no rule, veth, lease or interface was left
    assert manager.firewall.our_rules() == before_rules
    assert our_veths(manager) == before_veths
    assert manager.state() == before_state
    from nethelpers import nsexec
    assert len(nsexec(ns2, "ip", "-o", "link").stdout.strip().splitlines()) == 1
    # and the port is usable by the next container once freed
    manager.release_all("a" * 64)
    manager.connect("b" * 64, ns2, "bridge", ports=[f"{port}:80"])


def test_container_netns_from_proc_pid(manager, netns, tmp_path, procs):
    """As the runtime hands it over: /proc/<pid>/ns/net of the container's
    init. Other containers reach the published port through the host's
    gateway address, the container reaches its own (hairpin), and a
    container that died is released cleanly."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("pid netns\n")
    p = subprocess.Popen(["unshare", "--net", "busybox", "httpd", "-f", "-p", "80", "-h", str(www)])
    procs.append(p)
    path = f"/proc/{p.pid}/ns/net"
    port = free_port()
    manager.create_network("pidnet")
    ep = manager.connect("d" * 64, path, "pidnet", ports=[f"{port}:80"], name="web")
    gw_default = manager.inspect_network("bridge")["IPAM"]["Config"][0]["Gateway"]
    assert get(f"http://127.0.0.1:{port}/") == "pid netns\n"

    from nethelpers import nsexec
    other = netns()
    manager.connect("e" * 64, other, "bridge")

    def wget(ns, url):  # (busybox 1.35's wget -T crashes: rely on nsexec's timeout)
        return nsexec(ns, "busybox", "wget", "-q", "-O", "-", url).stdout

    # another container, on another network, through the host's address
    assert wget(other, f"http://{gw_default}:{port}/") == "pid netns\n"
    # hairpin: the container reaches its own published port via its gateway
    hair = subprocess.run(["nsenter", f"--net={path}", "busybox", "wget", "-q", "-O", "-",
                           f"http://{ep['Gateway']}:{port}/"], capture_output=True, text=True, timeout=20)
    assert hair.stdout == "pid netns\n"
    # and, by name, through the embedded DNS
    look = subprocess.run(["nsenter", f"--net={path}", "busybox", "nslookup", "web", "127.0.0.11"],
                          capture_output=True, text=True, timeout=20).stdout
    assert ep["IPAddress"] in look

    p.kill()
    p.wait()
    manager.release_all("d" * 64)
    assert our_veths(manager) == {e.host_veth for e in manager.endpoints.values()}
    assert f"--dport {port}" not in "\n".join(manager.firewall.our_rules())
    assert "d" * 64 not in manager.inspect_network("pidnet")["Containers"]
    manager.remove_network("pidnet")


SHA_SINK = (
    "import hashlib, socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7000)); s.listen(5)\n"
    "while True:\n"
    "    c, _ = s.accept(); h = hashlib.sha256()\n"
    "    while True:\n"
    "        d = c.recv(1 << 16)\n"
    "        if not d: break\n"
    "        h.update(d)\n"
    "    c.sendall(h.hexdigest().encode()); c.close()\n"
)


def test_proxy_moves_bulk_data_intact_with_half_close(manager, netns, procs):
    import hashlib
    import os
    ns = netns()
    manager.connect("f" * 64, ns, "bridge", ports=["127.0.0.1::7000"])
    procs.append(subprocess.Popen(["ip", "netns", "exec", os.path.basename(ns), sys.executable, "-c", SHA_SINK]))
    port = int(manager.container_settings("f" * 64)["Ports"]["7000/tcp"][0]["HostPort"])
    payload = os.urandom(1 << 20) * 24
    for _ in range(2):  # two connections in a row through the same proxy
        for attempt in range(50):
            try:  # DNAT: refused until the sink listens
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
            except ConnectionRefusedError:
                time.sleep(0.1)
                continue
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)  # the reply comes after our half-close
                reply = b""
                while chunk := s.recv(100):
                    reply += chunk
            except OSError:
                reply = b""
            finally:
                s.close()
            if reply:
                break
            time.sleep(0.1)  # the sink may still be starting
        assert reply.decode() == hashlib.sha256(payload).hexdigest()
