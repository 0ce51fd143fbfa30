"""`docker network` commands and user networks, with the real docker CLI."""

import json
import time

import pytest

from acceptance_network.util import inspect, subnet24, uid, web

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("network")]


def test_create_inspect_ls_rm(ndaemon):
    d = ndaemon
    n, p = uid(), subnet24()
    nid = d.out("network", "create", "--subnet", f"{p}.0/24", "--gateway", f"{p}.254",
                "--ip-range", f"{p}.128/25", "--label", "team=a", "--label", "x", n)
    assert len(nid) == 64
    try:
        [net] = inspect(d, "network", n)
        assert net["Name"] == n and net["Id"] == nid and net["Driver"] == "bridge"
        assert net["Scope"] == "local" and net["Internal"] is False
        assert net["IPAM"]["Config"] == [{"Subnet": f"{p}.0/24", "Gateway": f"{p}.254",
                                          "IPRange": f"{p}.128/25"}]
        assert net["Labels"] == {"team": "a", "x": ""}
        assert net["Containers"] == {}
        # ls, with filters
        names = d.out("network", "ls", "--format", "{{.Name}}").split()
        assert {"bridge", "host", "none", n} <= set(names)
        assert d.out("network", "ls", "-q", "--filter", "label=team=a") == nid[:12]
        assert d.out("network", "ls", "--filter", f"name={n}", "--format", "{{.Name}} {{.Driver}}") \
            == f"{n} bridge"
        assert n not in d.out("network", "ls", "--filter", "type=builtin")
        assert n in d.out("network", "ls", "--filter", "type=custom")
        # a container started on it gets an address from the ip range
        c = d.out("run", "-d", "--network", n, "busybox", "sleep", "60")
        [net] = inspect(d, "network", n)
        [(cid, ep)] = net["Containers"].items()
        assert cid == c
        ip = ep["IPv4Address"].split("/")
        assert ip[1] == "24" and int(ip[0].split(".")[3]) >= 128, ep
        assert ep["MacAddress"] and ep["Name"]
        route = d.out("exec", c, "ip", "route")
        assert f"default via {p}.254" in route
        d.docker("rm", "-f", c)
        assert inspect(d, "network", n)[0]["Containers"] == {}
    finally:
        d.docker("network", "rm", n, check=False)
    r = d.docker("network", "inspect", n, check=False)
    assert r.returncode == 1 and "not found" in r.stderr.lower()


def test_prune_keeps_used(ndaemon):
    d = ndaemon
    a, b = uid(), uid()
    d.out("network", "create", a)
    d.out("network", "create", b)
    c = d.out("run", "-d", "--network", b, "busybox", "sleep", "60")
    try:
        out = d.out("network", "prune", "-f")
        assert a in out and b not in out
        names = d.out("network", "ls", "--format", "{{.Name}}").split()
        assert a not in names and b in names and "bridge" in names
    finally:
        d.docker("rm", "-f", c, check=False)
        d.docker("network", "rm", a, b, check=False)


def test_two_containers_by_name_and_alias(ndaemon):
    d = ndaemon
    n, s, cl = uid(), uid("srv"), uid("cli")
    d.out("network", "create", n)
    try:
        web(d, s, "--network", n, "--network-alias", "webalias", text="byname")
        d.out("run", "-d", "--name", cl, "--network", n, "busybox", "sleep", "120")
        d.out("exec", cl, "ping", "-c", "1", "-W", "5", s)
        d.out("exec", cl, "ping", "-c", "1", "-W", "5", "webalias")
        assert d.out("exec", cl, "wget", "-qO-", f"http://{s}/") == "byname"
        assert d.out("exec", cl, "wget", "-qO-", "http://webalias/") == "byname"
        # TCP with nc both ways
        d.out("exec", "-d", cl, "sh", "-c", "sleep 60 | nc -l -p 9000 > /tmp/got")
        deadline = time.monotonic() + 20
        while ":9000 " not in d.out("exec", cl, "netstat", "-ltn") and time.monotonic() < deadline:
            time.sleep(0.05)   # the listener is up before anything is sent
        d.out("exec", s, "sh", "-c", f"echo ping-nc | nc -w 2 {cl} 9000")
        while d.out("exec", cl, "cat", "/tmp/got") != "ping-nc" and time.monotonic() < deadline:
            time.sleep(0.05)   # and has written what it received
        assert d.out("exec", cl, "cat", "/tmp/got") == "ping-nc"
        # the DNS server is Docker's address, and it answers for names
        assert "nameserver 127.0.0.11" in d.out("exec", cl, "cat", "/etc/resolv.conf")
        look = d.out("exec", cl, "nslookup", s)
        srv_ip = inspect(d, "container", s)[0]["NetworkSettings"]["Networks"][n]["IPAddress"]
        assert srv_ip in look
    finally:
        d.docker("rm", "-f", s, cl, check=False)
        d.docker("network", "rm", n, check=False)


def test_isolation_between_networks(ndaemon):
    d = ndaemon
    n1, n2, a, b, p = uid(), uid(), uid("a"), uid("b"), subnet24()
    d.out("network", "create", "--subnet", f"{p}.0/24", n1)
    d.out("network", "create", n2)
    try:
        web(d, a, "--network", n1)
        d.out("run", "-d", "--name", b, "--network", n2, "busybox", "sleep", "120")
        a_ip = inspect(d, "container", a)[0]["NetworkSettings"]["Networks"][n1]["IPAddress"]
        # not by name (no DNS across networks) and not by address
        r = d.docker("exec", b, "nslookup", a, check=False)
        assert r.returncode != 0
        r = d.docker("exec", b, "ping", "-c", "1", "-W", "1", a_ip, check=False)
        assert r.returncode != 0
        r = d.docker("exec", b, "nc", "-w", "2", a_ip, "80", check=False, input="")
        assert r.returncode != 0
        # connect b to n1: now it reaches a by name, with an alias and a fixed address
        fixed = f"{p}.200"
        d.out("network", "connect", "--ip", fixed, "--alias", "bee", n1, b)
        info = inspect(d, "container", b)[0]["NetworkSettings"]["Networks"]
        assert set(info) == {n1, n2}
        assert info[n1]["IPAddress"] == fixed
        assert "bee" in (info[n1]["Aliases"] or [])
        assert fixed in d.out("exec", b, "ip", "-4", "addr")
        assert d.out("exec", b, "wget", "-qO-", f"http://{a}/") == "hello"
        d.out("exec", a, "ping", "-c", "1", "-W", "5", "bee")
        # disconnect: address gone from the container and the network
        d.out("network", "disconnect", n1, b)
        assert fixed not in d.out("exec", b, "ip", "-4", "addr")
        assert set(inspect(d, "container", b)[0]["NetworkSettings"]["Networks"]) == {n2}
        assert b not in json.dumps(inspect(d, "network", n1)[0]["Containers"])
        r = d.docker("exec", b, "ping", "-c", "1", "-W", "1", a_ip, check=False)
        assert r.returncode != 0
    finally:
        d.docker("rm", "-f", a, b, check=False)
        d.docker("network", "rm", n1, n2, check=False)


def test_run_with_fixed_ip(ndaemon):
    d = ndaemon
    n, c, p = uid(), uid(), subnet24()
    d.out("network", "create", "--subnet", f"{p}.0/24", n)
    try:
        d.out("run", "-d", "--name", c, "--network", n, "--ip", f"{p}.77", "busybox", "sleep", "60")
        assert f"{p}.77/24" in d.out("exec", c, "ip", "-4", "addr", "show", "eth0")
        s = inspect(d, "container", c)[0]["NetworkSettings"]["Networks"][n]
        assert s["IPAddress"] == f"{p}.77" and s["Gateway"] == f"{p}.1"
        assert s["IPAMConfig"] == {"IPv4Address": f"{p}.77"}
    finally:
        d.docker("rm", "-f", c, check=False)
        d.docker("network", "rm", n, check=False)
