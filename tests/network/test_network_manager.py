"""NetworkManager: Docker's network API semantics, bad input, restart."""

from __future__ import annotations

import json

import pytest

from nethelpers import make_manager, nsexec, our_veths, scrub
from dockyard.errors import Conflict, Forbidden, InvalidParameter, NotFound
from dockyard.network import bridge as br

pytestmark = pytest.mark.xdist_group("network")


def snapshot(manager) -> dict:
    return {
        "links": sorted(l for l in br.list_links() if l.startswith(manager.bridge_prefix)),
        "veths": sorted(our_veths(manager)),
        "rules": manager.firewall.our_rules(),
        "state": manager.state(),
    }


def test_predefined_networks_shape(manager):
    names = {n["Name"]: n for n in manager.list_networks()}
    assert set(names) == {"bridge", "host", "none"}
    b = names["bridge"]
    assert b["Driver"] == "bridge" and b["Scope"] == "local" and len(b["Id"]) == 64
    assert b["Options"]["com.docker.network.bridge.name"] == manager.default_bridge
    assert b["IPAM"]["Config"][0]["Subnet"].endswith("/24")
    assert names["host"]["IPAM"]["Config"] == [] and names["none"]["Driver"] == "null"
    assert br.link_exists(manager.default_bridge)
    with pytest.raises(Forbidden, match="^bridge is a pre-defined network and cannot be removed$"):
        manager.remove_network("bridge")
    with pytest.raises(Forbidden, match='only one instance of "host" network is allowed'):
        manager.create_network("h2", driver="host")
    manager.create_network("mine")
    assert sorted(n["Name"] for n in manager.list_networks({"type": ["builtin"]})) == ["bridge", "host", "none"]
    assert [n["Name"] for n in manager.list_networks({"type": ["custom"]})] == ["mine"]


def test_create_inspect_list_remove_prune(manager):
    nid = manager.create_network("web", subnet="10.99.7.0/24", gateway="10.99.7.254",
                                 ip_range="10.99.7.128/25", labels={"tier": "front"})["Id"]
    info = manager.inspect_network("web")
    assert info["Id"] == nid and manager.inspect_network(nid[:10])["Name"] == "web"
    assert info["IPAM"]["Config"] == [{"Subnet": "10.99.7.0/24", "Gateway": "10.99.7.254",
                                       "IPRange": "10.99.7.128/25"}]
    assert info["Labels"] == {"tier": "front"} and info["Internal"] is False
    dev = manager.networks[nid].bridge
    assert dev.startswith(manager.bridge_prefix + "-") and len(dev) <= 15
    assert "10.99.7.254/24" in nsexec_host_addr(dev)
    manager.create_network("other", labels={"tier": "back"})
    assert [n["Name"] for n in manager.list_networks({"label": ["tier=front"]})] == ["web"]
    assert {n["Name"] for n in manager.list_networks({"name": ["we", "oth"]})} == {"web", "other"}
    with pytest.raises(Conflict, match="network with name web already exists"):
        manager.create_network("web")
    with pytest.raises(NotFound, match="network nope not found"):
        manager.inspect_network("nope")
    assert manager.prune_networks({"label": ["tier=back"]}) == ["other"]
    manager.remove_network("web")
    assert not br.link_exists(dev)
    assert manager.prune_networks() == []


def nsexec_host_addr(dev: str) -> str:
    import subprocess
    return subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", dev], capture_output=True, text=True).stdout


def test_bad_input_leaves_nothing(manager, netns):
    manager.create_network("taken", subnet="10.98.0.0/16")
    before = snapshot(manager)
    with pytest.raises(Forbidden, match="^Pool overlaps with other one on this address space$"):
        manager.create_network("clash", subnet="10.98.5.0/24")
    with pytest.raises(InvalidParameter, match="no matching subnet for gateway"):
        manager.create_network("badgw", subnet="10.97.0.0/24", gateway="10.96.0.1")
    with pytest.raises(InvalidParameter, match="invalid network name"):
        manager.create_network("bad/name")   # spaces are fine (dockerd takes them)
    assert snapshot(manager) == before

    ns = netns()
    with pytest.raises(InvalidParameter, match="^no configured subnet or ip-range contain the IP address 10.1.2.3$"):
        manager.connect("a" * 64, ns, "taken", ip="10.1.2.3")
    with pytest.raises(InvalidParameter, match="user defined networks only"):
        manager.connect("a" * 64, ns, "bridge", ip="10.1.2.3")
    with pytest.raises(InvalidParameter, match="alias is supported only for containers in user defined"):
        manager.connect("a" * 64, ns, "bridge", aliases=["x"])
    manager.create_network("auto")
    with pytest.raises(InvalidParameter, match="only when connecting to networks with user configured subnets"):
        manager.connect("a" * 64, ns, "auto", ip="10.1.2.3")
    manager.remove_network("auto")
    with pytest.raises(InvalidParameter, match="does not exist"):
        manager.connect("a" * 64, "/proc/999999999/ns/net", "taken")
    assert snapshot(manager) == before
    assert len(nsexec(ns, "ip", "-o", "link").stdout.strip().splitlines()) == 1

    ep = manager.connect("a" * 64, ns, "taken", ip="10.98.1.1")
    assert ep["IPAddress"] == "10.98.1.1" and ep["IPAMConfig"] == {"IPv4Address": "10.98.1.1"}
    with pytest.raises(Forbidden, match="^Address already in use$"):
        manager.connect("b" * 64, netns(), "taken", ip="10.98.1.1")
    with pytest.raises(Forbidden, match="already exists in network taken"):
        manager.connect("a" * 64, ns, "taken")
    nid = manager.inspect_network("taken")["Id"]
    with pytest.raises(Conflict) as e:
        manager.remove_network("taken")
    assert str(e.value) == f"error while removing network: network taken id {nid} has active endpoints"
    assert br.link_exists(manager.networks[nid].bridge)
    manager.disconnect("a" * 64, "taken")
    manager.remove_network("taken")


def test_state_roundtrip_and_restore(net_ids, netns, tmp_path):
    """A daemon restart: state goes to JSON, a new manager re-adopts the
    existing devices (same veth, same address), re-creates what went missing
    and re-publishes ports."""
    statefile = tmp_path / "network.json"

    def save(state):
        statefile.write_text(json.dumps(state))

    m1 = make_manager(net_ids, on_change=save)
    m2 = None
    try:
        m1.start()
        m1.create_network("keep")
        a, b = netns(), netns()
        ea = m1.connect("a" * 64, a, "keep", name="alpha")
        eb = m1.connect("b" * 64, b, "bridge", name="beta", ports=["127.0.0.1::80"])
        veths = our_veths(m1)
        rules = m1.firewall.our_rules()
        port = int(m1.container_settings("b" * 64)["Ports"]["80/tcp"][0]["HostPort"])
        m1.close()  # daemon stops: kernel state stays
        assert our_veths(m1) == veths

        # while it was down, one veth vanished
        ep_b = next(e for e in m1.endpoints.values() if e.container_id == "b" * 64)
        br.delete_link(ep_b.host_veth)

        m2 = make_manager(net_ids, on_change=save)
        m2.restore(json.loads(statefile.read_text()))
        assert m2.container_endpoints("a" * 64)["keep"]["IPAddress"] == ea["IPAddress"]
        assert m2.container_endpoints("b" * 64)["bridge"]["IPAddress"] == eb["IPAddress"]
        assert our_veths(m2) == veths  # re-adopted one, re-created the other under its name
        assert m2.firewall.our_rules() == rules
        assert f"{eb['IPAddress']}/24" in nsexec(b, "ip", "-o", "addr").stdout
        # the published port is held again by the new proxy
        import socket
        with pytest.raises(OSError):
            socket.socket().bind(("127.0.0.1", port))
        # DNS works again
        c = netns()
        m2.connect("c" * 64, c, "keep")
        assert ea["IPAddress"] in nsexec(c, "busybox", "nslookup", "alpha", "127.0.0.11").stdout

        # a container that died while the daemon was down is released on restore
        m2.close()
        netns.delete(c)
        m3 = make_manager(net_ids)
        m3.restore(json.loads(statefile.read_text()))
        assert "c" * 64 not in {e.container_id for e in m3.endpoints.values()}
        m2 = m3
    finally:
        try:
            (m2 or m1).teardown()
        finally:
            scrub(net_ids)
    assert not any(l.startswith(net_ids["bridge_prefix"]) for l in br.list_links())


def test_container_files_follow_the_networks(manager, netns):
    manager.create_network("files")
    a, b = netns(), netns()
    ea = manager.connect("a" * 64, a, "files", name="alpha")
    f = manager.container_files("a" * 64, "a" * 12, extra_hosts=["db:10.0.0.5"], dns=["9.9.9.9"])
    assert f["hostname"] == "a" * 12 + "\n"
    assert f["hosts"].endswith(f"10.0.0.5\tdb\n{ea['IPAddress']}\t{'a' * 12}\n")
    assert "nameserver 127.0.0.11" in f["resolv.conf"]
    eb = manager.connect("b" * 64, b, "bridge")
    fb = manager.container_files("b" * 64, "bee", dns=["9.9.9.9"])
    assert "nameserver 9.9.9.9" in fb["resolv.conf"] and "127.0.0.11" not in fb["resolv.conf"]
    assert fb["hosts"].endswith(f"{eb['IPAddress']}\tbee\n")


def test_start_sweeps_orphans_of_a_crash(net_ids, netns):
    """A crash between creating a veth and saving the state leaves a veth on
    our bridge; the next start removes it (and only ours)."""
    m1 = make_manager(net_ids)
    m2 = None
    try:
        m1.start()
        ns = netns()
        m1.connect("a" * 64, ns, "bridge")
        state = m1.state()
        stray = br.new_veth_name()
        br.attach(m1.default_bridge, stray, netns(), "10.0.0.99", 24, None, "02:42:0a:00:00:63")
        orphan_bridge = f"{net_ids['bridge_prefix']}-deadbeef"
        br.ensure_bridge(orphan_bridge, None, 0)
        m1.close()
        m2 = make_manager(net_ids)
        m2.restore(state)
        assert not br.link_exists(stray) and not br.link_exists(orphan_bridge)
        assert len(our_veths(m2)) == 1
    finally:
        try:
            (m2 or m1).teardown()
        finally:
            scrub(net_ids)


def test_daemon_style_on_the_callers_loop(net_ids, netns):
    """The daemon hands in its own loop and calls from worker threads; DNS and
    proxies are served by that loop."""
    import asyncio

    ns = netns()

    async def main():
        m = make_manager(net_ids, loop=asyncio.get_running_loop())
        try:
            await asyncio.to_thread(m.start)
            await asyncio.to_thread(m.create_network, "dloop")
            ep = await asyncio.to_thread(m.connect, "a" * 64, ns, "dloop", name="alpha")
            out = await asyncio.to_thread(nsexec, ns, "busybox", "nslookup", "alpha", "127.0.0.11")
            assert ep["IPAddress"] in out.stdout
            with pytest.raises(RuntimeError, match="worker thread"):
                m.release_all("a" * 64)  # from the loop itself: refused, not deadlocked
            await asyncio.to_thread(m.release_all, "a" * 64)
        finally:
            await asyncio.to_thread(m.teardown)

    try:
        asyncio.run(main())
    finally:
        scrub(net_ids)
