"""Published ports, NetworkSettings, files Docker writes, network modes."""

import json
import re

import pytest

from acceptance_network.util import free_port, http_get, inspect, subnet24, uid, web

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("network")]


def test_publish_loopback_port(ndaemon):
    d, c, hp = ndaemon, uid(), free_port()
    web(d, c, "-p", f"127.0.0.1:{hp}:80", text="published")
    try:
        assert http_get(f"http://127.0.0.1:{hp}/").strip() == "published"
        assert d.out("port", c) == f"80/tcp -> 127.0.0.1:{hp}"
        assert d.out("port", c, "80") == f"127.0.0.1:{hp}"
        assert d.out("ps", "--filter", f"name={c}", "--format", "{{.Ports}}") \
            == f"127.0.0.1:{hp}->80/tcp"
        [info] = inspect(d, "container", c)
        ns = info["NetworkSettings"]
        assert ns["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(hp)}]}
        assert info["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                                  "HostPort": str(hp)}]}
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ns["IPAddress"])
        assert ns["IPPrefixLen"] > 0 and ns["Gateway"]
        assert re.fullmatch(r"02:42(:[0-9a-f]{2}){4}", ns["MacAddress"]), ns["MacAddress"]
        br = ns["Networks"]["bridge"]
        assert br["IPAddress"] == ns["IPAddress"] and br["Gateway"] == ns["Gateway"]
        assert br["MacAddress"] == ns["MacAddress"] and len(br["NetworkID"]) == 64
        assert br["EndpointID"]
        # the address is the container's own
        assert f"inet {ns['IPAddress']}/{ns['IPPrefixLen']}" in d.out("exec", c, "ip", "addr")
        assert f"default via {ns['Gateway']}" in d.out("exec", c, "ip", "route")
        # bound to 127.0.0.1 only: not on the gateway's address (from another container)
        other = d.docker("run", "--rm", "busybox", "wget", "-qO-",
                         f"http://{ns['Gateway']}:{hp}/", check=False)
        assert other.returncode != 0 and "published" not in other.stdout
    finally:
        d.docker("rm", "-f", c, check=False)
    # the port is free again
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # our client's TIME_WAIT
        s.bind(("127.0.0.1", hp))


def test_publish_random_and_all(ndaemon):
    d, a, b = ndaemon, uid(), uid()
    web(d, a, "-p", "80", text="rand")
    web(d, b, "-P", image="bbweb", text="all")
    try:
        for name, text in ((a, "rand"), (b, "all")):
            ports = inspect(d, "container", name)[0]["NetworkSettings"]["Ports"]
            bindings = ports["80/tcp"]
            assert bindings and all(int(x["HostPort"]) > 0 for x in bindings), ports
            hp = bindings[0]["HostPort"]
            assert http_get(f"http://127.0.0.1:{hp}/").strip() == text
            assert f"0.0.0.0:{hp}" in d.out("port", name, "80/tcp")
            assert f"0.0.0.0:{hp}->80/tcp" in d.out("ps", "--filter", f"name={name}",
                                                    "--format", "{{.Ports}}")
            # and from another container, through the host's port on its gateway
            gw = inspect(d, "container", name)[0]["NetworkSettings"]["Gateway"]
            assert d.out("run", "--rm", "busybox", "wget", "-qO-", f"http://{gw}:{hp}/") == text
        cfg = inspect(d, "container", b)[0]["Config"]
        assert cfg["ExposedPorts"] == {"80/tcp": {}}
    finally:
        d.docker("rm", "-f", a, b, check=False)


def test_files_docker_writes(ndaemon):
    d, c, n = ndaemon, uid(), uid()
    d.out("network", "create", n)
    try:
        out = d.out("run", "--rm", "--name", c, "--hostname", "myhost", "--network", n,
                    "--add-host", "extra.example:10.9.8.7", "busybox", "sh", "-c",
                    "cat /etc/hostname; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf;"
                    " echo ---; hostname; ip -4 -o addr show eth0")
        hostname, hosts, resolv, rest = out.split("---")
        assert hostname.strip() == "myhost"
        assert "127.0.0.1\tlocalhost" in hosts
        assert "::1\tlocalhost ip6-localhost ip6-loopback" in hosts
        assert "10.9.8.7\textra.example" in hosts
        ip = rest.split()[4].split("/")[0]
        assert f"{ip}\tmyhost" in hosts
        assert "nameserver 127.0.0.11" in resolv
        assert rest.split()[0] == "myhost"
        # --dns on the default bridge goes straight into resolv.conf
        r = d.out("run", "--rm", "--dns", "10.1.2.3", "--dns-search", "example.org", "busybox",
                  "cat", "/etc/resolv.conf")
        assert "nameserver 10.1.2.3" in r and "search example.org" in r
        # default bridge: the container's hostname is its short id
        r = d.out("run", "-d", "busybox", "sleep", "30")
        try:
            assert d.out("exec", r, "cat", "/etc/hostname") == r[:12]
            assert "127.0.0.11" not in d.out("exec", r, "cat", "/etc/resolv.conf")
            hp = inspect(d, "container", r)[0]["HostsPath"]
            assert hp.endswith("/hosts")
        finally:
            d.docker("rm", "-f", r, check=False)
    finally:
        d.docker("network", "rm", n, check=False)


def test_internal_network(ndaemon):
    d, n, c = ndaemon, uid(), uid()
    p = subnet24()
    d.out("network", "create", "--internal", "--subnet", f"{p}.0/24", n)
    try:
        [net] = inspect(d, "network", n)
        assert net["Internal"] is True
        d.out("run", "-d", "--name", c, "--network", n, "busybox", "sleep", "60")
        assert "default" not in d.out("exec", c, "ip", "route")
        # the default bridge's gateway (another bridge of ours on this host) is out of reach
        gw = inspect(d, "network", "bridge")[0]["IPAM"]["Config"][0]["Gateway"]
        r = d.docker("exec", c, "ping", "-c", "1", "-W", "1", gw, check=False)
        assert r.returncode != 0
        r = d.docker("exec", c, "nc", "-w", "2", gw, "80", check=False, input="")
        assert r.returncode != 0
        # but containers on it still talk
        d.out("run", "--rm", "--network", n, "busybox", "ping", "-c", "1", "-W", "5", c)
    finally:
        d.docker("rm", "-f", c, check=False)
        d.docker("network", "rm", n, check=False)


def test_network_none_host_container(ndaemon):
    d = ndaemon
    out = d.out("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert [ln.split(":")[1].strip() for ln in out.splitlines()] == ["lo"]
    assert inspect(d, "network", "none")[0]["Driver"] == "null"
    # host: the host's interfaces
    def host_links() -> set[str]:
        return {ln.split(":")[1].strip().split("@")[0] for ln in
                __import__("subprocess").run(["ip", "-o", "link"], capture_output=True,
                                             text=True).stdout.splitlines()}

    before = host_links()  # (other tests add and remove veths meanwhile: before | after)
    out = d.out("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
    seen = {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()}
    after = host_links()
    assert len(seen) > 1 and (before & after) <= seen
    # container:NAME shares the namespace
    a = uid()
    d.out("run", "-d", "--name", a, "busybox", "sleep", "60")
    try:
        mine = d.out("exec", a, "ip", "-o", "-4", "addr", "show", "eth0")
        theirs = d.out("run", "--rm", "--network", f"container:{a}", "busybox", "ip", "-o", "-4",
                       "addr", "show", "eth0")
        assert mine.split()[3] == theirs.split()[3]
        nsp = inspect(d, "container", a)[0]["State"]["Pid"]
        import os

        d.out("exec", "-d", a, "sh", "-c", "sleep 60 | nc -l -p 7000 > /tmp/x")   # stdin that never ends: nc -l must not stop at its EOF
        # (exec -d returns once the shell runs; nc may listen a moment later, and
        # much later on a loaded machine: the sender retries for up to ~10 s)
        d.out("run", "--rm", "--network", f"container:{a}", "busybox", "sh", "-c",
              "i=0; while [ $i -lt 50 ]; do echo shared | nc 127.0.0.1 7000 && break;"
              " i=$((i+1)); sleep 0.2; done")
        assert os.readlink(f"/proc/{nsp}/ns/net")
        # the listener writes what it received a moment after the sender is done
        got = ""
        for _ in range(50):
            got = d.out("exec", a, "cat", "/tmp/x")
            if got:
                break
            __import__("time").sleep(0.1)
        assert got == "shared"
    finally:
        d.docker("rm", "-f", a, check=False)


def test_inspect_user_network_settings(ndaemon):
    d, n, c = ndaemon, uid(), uid()
    d.out("network", "create", n)
    try:
        d.out("run", "-d", "--name", c, "--network", n, "--network-alias", "al", "busybox",
              "sleep", "60")
        [info] = inspect(d, "container", c)
        ns = info["NetworkSettings"]
        assert list(ns["Networks"]) == [n]
        ep = ns["Networks"][n]
        assert "al" in ep["Aliases"]
        assert ep["IPAddress"] and ep["Gateway"] and ep["IPPrefixLen"] > 0
        assert ns["IPAddress"] == ""  # Docker fills the top-level ones for the default bridge only
        assert info["HostConfig"]["NetworkMode"] == n
        [net] = inspect(d, "network", n)
        assert net["Containers"][info["Id"]]["Name"] == c
        assert net["Containers"][info["Id"]]["IPv4Address"] == f"{ep['IPAddress']}/{ep['IPPrefixLen']}"
        json.dumps(net)
    finally:
        d.docker("rm", "-f", c, check=False)
        d.docker("network", "rm", n, check=False)
