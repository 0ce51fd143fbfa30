"""Bad network input: clear errors, docker's exit codes, nothing half-configured."""

import json
import re
import socket

import pytest

from acceptance_network.util import free_port, inspect, subnet24, uid, web

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("network")]


def _fails(d, *args, words: str, code: int = 1, daemon: bool = True):
    r = d.docker(*args, check=False)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    if daemon:
        assert r.stderr.startswith("Error response from daemon: "), r.stderr
    assert words in r.stderr, r.stderr
    return r


def test_overlapping_subnet(ndaemon):
    d, a, b, p = ndaemon, uid(), uid(), subnet24()
    d.out("network", "create", "--subnet", f"{p}.0/24", a)
    try:
        before = d.out("network", "ls", "-q")
        _fails(d, "network", "create", "--subnet", f"{p}.128/25", b,
               words="Pool overlaps with other one on this address space")
        assert d.out("network", "ls", "-q") == before
        _fails(d, "network", "create", "--subnet", f"{p}.0/24", "--gateway", "192.0.2.1", b,
               words="no matching subnet for gateway 192.0.2.1", daemon=False)  # the CLI's check
        r = d.docker("network", "create", "-o", "x=y", "--subnet", f"{p}.0/33", b, check=False)
        assert r.returncode == 1 and "33" in r.stderr, r.stderr
        _fails(d, "network", "create", a, words=f"network with name {a} already exists")
        assert d.out("network", "ls", "-q") == before
    finally:
        d.docker("network", "rm", a, check=False)


def test_address_outside_subnet(ndaemon):
    d, n, c, p = ndaemon, uid(), uid(), subnet24()
    d.out("network", "create", "--subnet", f"{p}.0/24", n)
    try:
        r = d.docker("run", "-d", "--name", c, "--network", n, "--ip", "192.0.2.9", "busybox",
                     "sleep", "30", check=False)
        assert r.returncode == 125 and "no available IPv4 address" not in r.stderr
        assert "192.0.2.9" in r.stderr, r.stderr
        st = inspect(d, "container", c)[0]["State"]
        assert st["Running"] is False and st["Pid"] == 0
        assert inspect(d, "network", n)[0]["Containers"] == {}
        d.docker("rm", "-f", c)
        # connect with an address outside, and one already taken
        x = d.out("run", "-d", "--network", n, "--ip", f"{p}.5", "busybox", "sleep", "60")
        y = d.out("run", "-d", "busybox", "sleep", "60")
        try:
            _fails(d, "network", "connect", "--ip", "192.0.2.9", n, y, words="192.0.2.9")
            _fails(d, "network", "connect", "--ip", f"{p}.5", n, y,
                   words="Address already in use")
            _fails(d, "network", "connect", "no-such-net-" + uid(), y, words="not found")
            assert list(inspect(d, "container", y)[0]["NetworkSettings"]["Networks"]) == ["bridge"]
            assert len(inspect(d, "network", n)[0]["Containers"]) == 1
            # the default bridge does not take --ip
            _fails(d, "network", "connect", "--ip", f"{p}.6", "bridge", x,
                   words="user specified IP address is supported on user defined networks only")
            m = uid()
            d.out("network", "create", m)  # no --subnet given
            try:
                _fails(d, "network", "connect", "--ip", f"{p}.6", m, x,
                       words="user specified IP address is supported only when connecting to "
                             "networks with user configured subnets")
            finally:
                d.docker("network", "rm", m, check=False)
        finally:
            d.docker("rm", "-f", x, y, check=False)
        _fails(d, "network", "connect", n, "no-such-container-" + uid(), words="No such container")
    finally:
        d.docker("network", "rm", n, check=False)


def test_port_already_allocated(ndaemon):
    d, a, b, hp = ndaemon, uid(), uid(), free_port()
    web(d, a, "-p", f"127.0.0.1:{hp}:80")
    try:
        r = d.docker("run", "-d", "--name", b, "-p", f"127.0.0.1:{hp}:80", "busybox", "sleep", "30",
                     check=False)
        assert r.returncode == 125, r
        assert re.search(r"failed to set up container networking: "
                         r"driver failed programming external connectivity on endpoint "
                         rf"{b} \([0-9a-f]{{64}}\): Bind for 127\.0\.0\.1:{hp} failed: "
                         "port is already allocated$", r.stderr, re.M), r.stderr
        [info] = inspect(d, "container", b)
        assert info["State"]["Running"] is False and info["State"]["Pid"] == 0
        assert not info["NetworkSettings"]["Networks"] or all(
            not ep["IPAddress"] for ep in info["NetworkSettings"]["Networks"].values()), \
            info["NetworkSettings"]
        assert b not in json.dumps(inspect(d, "network", "bridge")[0]["Containers"])
        assert d.out("port", b) == ""
        # the first one still answers; the second can start once the port is free
        from acceptance_network.util import http_get

        assert http_get(f"http://127.0.0.1:{hp}/").strip() == "hello"
        d.docker("rm", "-f", a)
        d.out("start", b)
        assert d.out("port", b, "80") == f"127.0.0.1:{hp}"
        # a port held by something else on the host
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            taken = s.getsockname()[1]
            r = d.docker("run", "--rm", "-p", f"127.0.0.1:{taken}:80", "busybox", "true",
                         check=False)
            assert r.returncode == 125, r.stderr
            # Docker 28: the bind fails (a host process, not one of its containers, holds it)
            assert re.search(rf"failed to bind host port for 127\.0\.0\.1:{taken}:[0-9.]+:80/tcp: "
                             "address already in use$", r.stderr, re.M), r.stderr
        r = d.docker("run", "--rm", "-p", "127.0.0.1:70000:80", "busybox", "true", check=False)
        assert r.returncode == 125 and "70000" in r.stderr
    finally:
        d.docker("rm", "-f", a, b, check=False)


def test_remove_network_in_use(ndaemon):
    d, n, c = ndaemon, uid(), uid()
    d.out("network", "create", n)
    d.out("run", "-d", "--name", c, "--network", n, "busybox", "sleep", "60")
    try:
        _fails(d, "network", "rm", n, words="has active endpoints")
        assert n in d.out("network", "ls", "--format", "{{.Name}}").split()
        _fails(d, "network", "rm", "bridge", words="bridge is a pre-defined network and cannot be removed")
        r = d.docker("network", "rm", "nonexist-" + n, check=False)
        assert r.returncode == 1 and "not found" in r.stderr
        d.docker("rm", "-f", c)
        d.out("network", "rm", n)
    finally:
        d.docker("rm", "-f", c, check=False)
        d.docker("network", "rm", n, check=False)
