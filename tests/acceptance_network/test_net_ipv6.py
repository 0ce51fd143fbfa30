"""IPv6 on bridge networks (issue 15), with the real docker CLI: `network create --ipv6`,
`--ip6`, `--link-local-ip`, inspect's v6 fields, v6 traffic and AAAA answers between
containers, our own ip6tables chains, and nothing left after `network rm`."""

import json
import random
import subprocess

import pytest

from acceptance.harness import running
from acceptance_network.conftest import _close, _import_web
from acceptance_network.util import inspect, uid

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("network")]


def ula() -> str:
    """A random fdXX:XXXX:XXXX::/64 prefix ("fdxx:xxxx:xxxx:"), so parallel daemons never
    share one."""
    r = random.getrandbits(40)
    return f"fd{r >> 32:02x}:{(r >> 16) & 0xffff:x}:{r & 0xffff:x}:"


def _settings(d):
    from dockyard.daemon.config import DaemonConfig

    cfg = DaemonConfig()
    cfg.data_root = str(d.data)
    return cfg.network_settings()


def _our_v6_rules(d) -> list[str]:
    chain = _settings(d)["prefix"]
    dump = subprocess.run(["ip6tables-save", "-t", "filter"], capture_output=True,
                          text=True).stdout
    return [l for l in dump.splitlines() if chain in l]


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def test_ipv6_network_containers_dns_and_cleanup(ndaemon):
    d = ndaemon
    n, p = uid(), ula()
    nid = d.out("network", "create", "--ipv6", "--subnet", f"{p}:/64", n)
    bridge = None
    try:
        [net] = inspect(d, "network", n)
        assert net["EnableIPv6"] is True
        v6 = [c for c in net["IPAM"]["Config"] if ":" in c["Subnet"]]
        v4 = [c for c in net["IPAM"]["Config"] if ":" not in c["Subnet"]]
        # dockerd's: the user's subnet without the derived gateway, the chosen v4 one with it
        assert v6 == [{"Subnet": f"{p}:/64"}]
        assert len(v4) == 1 and v4[0]["Gateway"]
        bridge = net["Options"].get("com.docker.network.bridge.name") or \
            f"{_settings(d)['bridge_prefix']}-{nid[:15 - len(_settings(d)['bridge_prefix']) - 1]}"
        # the bridge holds the v6 gateway, with IPv6 forwarding for this bridge only
        addrs = subprocess.run(["ip", "-6", "addr", "show", "dev", bridge], capture_output=True,
                               text=True, check=True).stdout
        assert f"{p}:1/64" in addrs
        with open(f"/proc/sys/net/ipv6/conf/{bridge}/forwarding") as f:
            assert f.read().strip() == "1"

        web_c = d.out("run", "-d", "--name", f"{n}-web", "--network", n, "--ip6", f"{p}:10",
                      "busybox", "sh", "-c",
                      "mkdir -p /www && echo hello6 > /www/index.html && "
                      "exec httpd -f -p [::]:80 -h /www")
        cli = d.out("run", "-d", "--name", f"{n}-cli", "--network", n,
                    "--link-local-ip", "169.254.7.7", "--link-local-ip", "fe80::77",
                    "busybox", "sleep", "300")
        [w] = inspect(d, "container", web_c)
        ep = w["NetworkSettings"]["Networks"][n]
        assert ep["GlobalIPv6Address"] == f"{p}:10"
        assert ep["GlobalIPv6PrefixLen"] == 64
        assert ep["IPv6Gateway"] == f"{p}:1"
        assert ep["IPAMConfig"]["IPv6Address"] == f"{p}:10"
        [c] = inspect(d, "container", cli)
        cep = c["NetworkSettings"]["Networks"][n]
        assert cep["GlobalIPv6Address"] == f"{p}:2", cep   # the first free after the gateway
        assert cep["IPAMConfig"]["LinkLocalIPs"] == ["169.254.7.7", "fe80::77"]
        [net] = inspect(d, "network", n)
        assert net["Containers"][web_c]["IPv6Address"] == f"{p}:10/64"

        # inside: address, link-local addresses, default route via the v6 gateway
        a = d.out("exec", cli, "ip", "addr", "show", "eth0")
        assert f"{p}:2/64" in a and "169.254.7.7/16" in a and "fe80::77/64" in a, a
        assert f"default via {p}:1" in d.out("exec", cli, "ip", "-6", "route")
        hosts = d.out("exec", web_c, "cat", "/etc/hosts")
        assert f"{p}:10\t{web_c[:12]}" in hosts, hosts   # as dockerd: a line per address
        # traffic between them over v6, by address and by name (AAAA from the embedded DNS)
        assert d.out("exec", cli, "ping", "-6", "-c", "1", "-W", "3", f"{p}:10")
        assert "hello6" in d.out("exec", cli, "wget", "-q", "-O", "-", f"http://[{p}:10]/")
        ns = d.out("exec", cli, "nslookup", "-type=aaaa", f"{n}-web")
        assert f"{p}:10" in ns, ns
        ns4 = d.out("exec", cli, "nslookup", "-type=a", f"{n}-web")
        assert f"{p}:10" not in ns4 and w["NetworkSettings"]["Networks"][n]["IPAddress"] in ns4
        assert d.out("exec", cli, "ping", "-6", "-c", "1", "-W", "3", f"{n}-web")
        # reverse lookup of the v6 address
        ptr = d.out("exec", cli, "nslookup", f"{p}:10")
        assert f"{n}-web.{n}" in ptr, ptr

        # our ip6tables chains hold this bridge's forwarding and isolation rules
        rules = "\n".join(_our_v6_rules(d))
        assert f"-o {bridge}" in rules and "ISOLATION" in rules, rules

        # connect an IPv6 container to a second v6 network: isolation rules name both
        n2, p2 = uid(), ula()
        d.out("network", "create", "--ipv6", "--subnet", f"{p2}:/64", n2)
        try:
            d.out("network", "connect", "--ip6", f"{p2}:99", n2, cli)
            assert f"{p2}:99/64" in d.out("exec", cli, "ip", "addr")
            [c] = inspect(d, "container", cli)
            assert c["NetworkSettings"]["Networks"][n2]["GlobalIPv6Address"] == f"{p2}:99"
            d.out("network", "disconnect", n2, cli)
            assert f"{p2}:99" not in d.out("exec", cli, "ip", "addr")
        finally:
            d.docker("network", "rm", n2, check=False)

        d.docker("rm", "-f", web_c, cli)
        # the addresses are free again
        c3 = d.out("run", "--rm", "--network", n, "--ip6", f"{p}:10", "busybox",
                   "ip", "-6", "addr", "show", "eth0")
        assert f"{p}:10/64" in c3
    finally:
        ids = d.out("ps", "-aq", "--filter", f"network={n}", check=False).split()
        if ids:
            d.docker("rm", "-f", *ids, check=False)
        d.docker("network", "rm", n, check=False)
    assert bridge not in _links()
    assert _our_v6_rules(d) == []   # the last v6 network gone: no chain, no jump


def test_ipv6_bad_input(ndaemon):
    d = ndaemon
    n, p = uid(), ula()
    # --ip6 on a network without IPv6
    d.out("network", "create", n)
    try:
        r = d.docker("run", "--rm", "--network", n, "--ip6", f"{p}:5", "busybox", "true",
                     check=False)
        assert r.returncode == 125 and "user specified IP address is supported only when " \
            "connecting to networks with user configured subnets" in r.stderr, r.stderr
        # not a link-local address
        r = d.docker("run", "--rm", "--network", n, "--link-local-ip", "10.1.2.3", "busybox",
                     "true", check=False)
        assert r.returncode == 125 and "invalid link local IP address: 10.1.2.3" in r.stderr
    finally:
        d.docker("network", "rm", n, check=False)
    # a v6 subnet without --ipv6: kept and shown, but unused (dockerd 20.10)
    n0, p0 = uid(), ula()
    d.out("network", "create", "--subnet", f"{p0}:/64", n0)
    try:
        [net] = inspect(d, "network", n0)
        assert net["EnableIPv6"] is False and {"Subnet": f"{p0}:/64"} in net["IPAM"]["Config"]
        assert "inet6 fd" not in d.out("run", "--rm", "--network", n0, "busybox", "ip", "addr")
    finally:
        d.docker("network", "rm", n0, check=False)
    # overlapping v6 subnets
    d.out("network", "create", "--ipv6", "--subnet", f"{p}:/64", n)
    try:
        r = d.docker("network", "create", "--ipv6", "--subnet", f"{p}:/80", uid(), check=False)
        assert r.returncode != 0 and "overlaps" in r.stderr, r.stderr
        # a v6 address outside the subnet
        r = d.docker("run", "--rm", "--network", n, "--ip6", "fd99::5", "busybox", "true",
                     check=False)
        assert r.returncode == 125 and "Invalid address fd99::5: It does not belong to any " \
            "of this network's subnets" in r.stderr, r.stderr
    finally:
        d.docker("network", "rm", n, check=False)
    assert _our_v6_rules(d) == []


def test_default_bridge_ipv6(tmp_path):
    """dockerd's --ipv6 --fixed-cidr-v6: containers on the default bridge get a v6 address
    and route; the daemon's network cleanup leaves no v6 rule behind."""
    p = ula()
    with running(tmp_path, close=_close, network=True,
                 extra_args=("--ipv6", "--fixed-cidr-v6", f"{p}:/64")) as d:
        _import_web(d)
        [net] = inspect(d, "network", "bridge")
        assert net["EnableIPv6"] is True
        assert {"Subnet": f"{p}:/64", "Gateway": f"{p}:1"} in net["IPAM"]["Config"]
        a = d.out("run", "-d", "busybox", "sleep", "60")
        [c] = inspect(d, "container", a)
        assert c["NetworkSettings"]["GlobalIPv6Address"] == f"{p}:2"
        assert c["NetworkSettings"]["IPv6Gateway"] == f"{p}:1"
        assert c["NetworkSettings"]["GlobalIPv6PrefixLen"] == 64
        out = d.out("run", "--rm", "busybox", "sh", "-c",
                    f"ip -6 route; ping -6 -c 1 -W 3 {p}:2 >/dev/null && echo reached")
        assert f"default via {p}:1" in out and "reached" in out, out
        d.docker("rm", "-f", a)


def test_ipv6_endpoints_survive_a_daemon_kill9(tmp_path):
    """After kill -9 and a new daemon: the v6 addresses, AAAA answers and our ip6tables
    chains are re-adopted; a new container does not get a leased v6 address again."""
    p, n = ula(), uid()
    with running(tmp_path, close=_close, network=True) as d:
        d.out("network", "create", "--ipv6", "--subnet", f"{p}:/64", n)
        srv = d.out("run", "-d", "--name", f"{n}-s", "--network", n, "busybox", "sleep", "300")
        cli = d.out("run", "-d", "--name", f"{n}-c", "--network", n, "busybox", "sleep", "300")
        rules = _our_v6_rules(d)
        assert rules
        d.kill9()
        d.start()
        [s] = inspect(d, "container", srv)
        assert s["NetworkSettings"]["Networks"][n]["GlobalIPv6Address"] == f"{p}:2"
        assert f"{p}:2" in d.out("exec", cli, "nslookup", "-type=aaaa", f"{n}-s")
        assert d.out("exec", cli, "ping", "-6", "-c", "1", "-W", "3", f"{p}:2")
        assert sorted(_our_v6_rules(d)) == sorted(rules)
        third = d.out("run", "--rm", "--network", n, "busybox", "ip", "-6", "addr", "show", "eth0")
        assert f"{p}:4/64" in third, third
        d.docker("rm", "-f", srv, cli)
        d.docker("network", "rm", n)
        assert _our_v6_rules(d) == []


def test_ipv6_beside_dockerd(ndaemon, tmp_path):
    """The same commands against Debian's dockerd 20.10 (in its own netns): inspect's v6
    fields and the words of the refusals are the same."""
    from helpers.dockerd import dockerd_available, running_dockerd
    from helpers.rootfs import build_busybox_rootfs

    if not dockerd_available():
        pytest.skip("dockerd not installed")
    root = tmp_path / "bb"
    build_busybox_rootfs(root)
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                         check=True).stdout
    p, p2, n = ula(), ula(), uid()
    fmt = ("{{json .IPAMConfig}} {{.GlobalIPv6Address}} {{.GlobalIPv6PrefixLen}} "
           "{{.IPv6Gateway}} {{.IPPrefixLen}}")
    with running_dockerd(tmp_path / "dkd") as theirs:
        theirs.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)

        def run(side, *args):
            if side == "ours":
                r = ndaemon.docker(*args, check=False)
                # start's errors carry Docker 28's prefix (containers/lifecycle.py), 20.10 none
                err = r.stderr.strip().replace("failed to set up container networking: ", "")
                return r.returncode, r.stdout.strip(), err
            r = theirs.docker(*args, check=False, text=True)
            return r.returncode, r.stdout.strip(), r.stderr.strip()

        seen = {}
        for side in ("ours", "dockerd"):
            out = []
            rc, _, err = run(side, "network", "create", "--ipv6", "--subnet", "10.231.77.0/24",
                             "--subnet", f"{p}:/64", n)
            assert rc == 0, (side, err)
            try:
                out.append(run(side, "network", "inspect", "-f",
                               "{{.EnableIPv6}} {{json .IPAM.Config}}", n))
                rc, cid, err = run(side, "run", "-d", "--network", n, "--ip6", f"{p}:10",
                                   "--link-local-ip", "169.254.3.3", "busybox", "sleep", "60")
                assert rc == 0, (side, err)
                out.append(run(side, "inspect", "-f",
                               "{{range .NetworkSettings.Networks}}" + fmt + "{{end}}", cid))
                out.append(run(side, "exec", cid, "ip", "-6", "route", "show", "default"))
                out.append(run(side, "network", "inspect", "-f",
                               "{{range .Containers}}{{.IPv6Address}}{{end}}", n))
                run(side, "rm", "-f", cid)
                # refusals
                out.append(run(side, "run", "--rm", "--network", n, "--ip6", "fd99::5",
                               "busybox", "true"))
                out.append(run(side, "run", "--rm", "--network", n, "--link-local-ip",
                               "10.1.2.3", "busybox", "true"))
                out.append(run(side, "network", "create", "--ipv6", "--subnet", f"{p}:/80",
                               uid()))
                out.append(run(side, "network", "create", "--ipv6", uid()))
                rc, _, err = run(side, "network", "create", "--subnet", f"{p2}:/64", f"{n}x")
                out.append((rc, err))
                # the v4 subnet is chosen from each daemon's own pool: only its shape compared
                rc, text, err = run(side, "network", "inspect", "-f",
                                    "{{.EnableIPv6}} {{json .IPAM.Config}}", f"{n}x")
                enabled, _, cfgs = text.partition(" ")
                out.append((rc, enabled, [c if ":" in c["Subnet"] else sorted(c)
                                          for c in json.loads(cfgs)], err))
            finally:
                run(side, "network", "rm", n, f"{n}x")
            seen[side] = out
        # container and endpoint ids differ; everything shown here must not
        assert seen["ours"] == seen["dockerd"]
