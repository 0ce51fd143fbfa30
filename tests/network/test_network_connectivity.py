"""Bridges, veths and isolation with real namespaces."""

from __future__ import annotations

import pytest

from nethelpers import nsexec, our_veths

pytestmark = pytest.mark.xdist_group("network")


def ping(ns: str, ip: str) -> bool:
    return nsexec(ns, "busybox", "ping", "-c", "1", "-W", "1", ip).returncode == 0


def test_two_containers_on_default_bridge(manager, netns):
    a, b = netns(), netns()
    ea = manager.connect("a" * 64, a, "bridge", name="/alpha")
    eb = manager.connect("b" * 64, b, "bridge", name="/beta")
    net = manager.inspect_network("bridge")
    gw = net["IPAM"]["Config"][0]["Gateway"]
    assert ea["IPAddress"] != eb["IPAddress"]
    assert ea["Gateway"] == gw and ea["IPPrefixLen"] == 24
    assert ea["MacAddress"] == "02:42:" + ":".join(f"{int(x):02x}" for x in ea["IPAddress"].split("."))
    assert ea["DNSNames"] is None  # no embedded DNS on the default bridge
    assert set(net["Containers"]) == {"a" * 64, "b" * 64}
    assert net["Containers"]["a" * 64]["Name"] == "alpha"

    addrs = nsexec(a, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert f"{ea['IPAddress']}/24" in addrs
    assert f"link/ether {ea['MacAddress']}" in nsexec(a, "ip", "link", "show", "eth0").stdout
    assert nsexec(a, "ip", "route", "show", "default").stdout.split()[:3] == ["default", "via", gw]
    assert ping(a, eb["IPAddress"]) and ping(b, ea["IPAddress"]) and ping(a, gw)

    manager.disconnect("b" * 64, "bridge")
    assert not ping(a, eb["IPAddress"])
    assert len(nsexec(b, "ip", "-o", "link").stdout.strip().splitlines()) == 1  # only lo is left
    assert len(our_veths(manager)) == 1


def test_none_network_has_only_loopback(manager, netns):
    ns = netns()
    ep = manager.connect("c" * 64, ns, "none")
    assert ep["IPAddress"] == "" and ep["Gateway"] == ""
    links = nsexec(ns, "ip", "-o", "link").stdout.strip().splitlines()
    assert len(links) == 1 and ": lo:" in links[0] and "UP" in links[0]
    assert nsexec(ns, "ip", "-4", "route").stdout.strip() == ""
    assert ping(ns, "127.0.0.1")
    with pytest.raises(Exception, match="private \\(none\\) mode"):
        manager.connect("c" * 64, ns, "bridge")


def test_isolation_internal_and_masquerade(manager, netns):
    manager.create_network("n1")
    manager.create_network("n2")
    manager.create_network("inside", internal=True)
    n1, n2, inside = (manager.inspect_network(n) for n in ("n1", "n2", "inside"))
    a, b, c = netns(), netns(), netns()
    ea = manager.connect("a" * 64, a, "n1")
    eb = manager.connect("b" * 64, b, "n2")
    ec = manager.connect("c" * 64, c, "inside")
    gw1 = n1["IPAM"]["Config"][0]["Gateway"]
    gw_in = inside["IPAM"]["Config"][0]["Gateway"]

    # own gateway answers on every network
    assert ping(a, gw1) and ping(c, gw_in)
    # two user networks are isolated from each other (forwarding dropped)
    assert not ping(a, eb["IPAddress"])
    assert not ping(b, ea["IPAddress"])
    # the internal network has no way out: no default route, other bridges unreachable
    assert nsexec(c, "ip", "route", "show", "default").stdout.strip() == ""
    assert not ping(c, n1["IPAM"]["Config"][0]["Gateway"])
    assert not ping(c, ea["IPAddress"])
    assert not ping(a, ec["IPAddress"])

    pre = manager.firewall.chains.prefix
    rules = manager.firewall.our_rules()

    def masq(info):
        bridge = manager.networks[info["Id"]].bridge
        return (f'nat: -A {pre}-POSTROUTING -s {info["IPAM"]["Config"][0]["Subnet"]} ! -o {bridge} '
                f'-m comment --comment "dockyard:{pre}" -j MASQUERADE')

    assert masq(n1) in rules and masq(n2) in rules
    assert masq(inside) not in rules
    assert any(f"! -s {inside['IPAM']['Config'][0]['Subnet']}" in r and "-j DROP" in r for r in rules)


def test_second_network_and_default_route_handoff(manager, netns):
    manager.create_network("first")
    manager.create_network("second")
    ns = netns()
    e1 = manager.connect("a" * 64, ns, "first")
    e2 = manager.connect("a" * 64, ns, "second")
    links = nsexec(ns, "ip", "-o", "link").stdout
    assert " eth0@" in links and " eth1@" in links
    assert nsexec(ns, "ip", "route", "show", "default").stdout.split()[2] == e1["Gateway"]
    manager.disconnect("a" * 64, "first")
    assert nsexec(ns, "ip", "route", "show", "default").stdout.split()[2] == e2["Gateway"]
    assert ping(ns, e2["Gateway"])


def test_bridge_driver_options(manager, netns):
    manager.create_network("opts", options={
        "com.docker.network.bridge.enable_icc": "false",
        "com.docker.network.bridge.enable_ip_masquerade": "false",
        "com.docker.network.driver.mtu": "1400",
    })
    info = manager.inspect_network("opts")
    assert info["Options"]["com.docker.network.driver.mtu"] == "1400"
    a, b = netns(), netns()
    ea = manager.connect("a" * 64, a, "opts")
    eb = manager.connect("b" * 64, b, "opts")
    assert "mtu 1400" in nsexec(a, "ip", "link", "show", "eth0").stdout
    assert ping(a, ea["Gateway"])
    assert not ping(a, eb["IPAddress"])  # no inter-container communication
    subnet = info["IPAM"]["Config"][0]["Subnet"]
    assert not any(f"-s {subnet} ! -o" in r for r in manager.firewall.our_rules())
    from dockyard.errors import InvalidParameter
    with pytest.raises(InvalidParameter, match="invalid MTU"):
        manager.create_network("badmtu", options={"com.docker.network.driver.mtu": "9"})
