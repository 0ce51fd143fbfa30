"""100 containers come and go: nothing is left behind."""

from __future__ import annotations

import subprocess

import pytest

from dockyard.network import bridge as br

pytestmark = pytest.mark.xdist_group("network")


def census(manager) -> dict:
    """What could leak: veths, addresses, our rules, namespaces, leases, fds."""
    import os
    return {
        "veths": sorted(l for l in br.list_links() if l.startswith("veth")),
        "addrs": subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout.count("\n"),
        "rules": manager.firewall.our_rules(),
        "netns": sorted(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")),
        "leases": {nid: p["Leased"] for nid, p in manager.state()["ipam"].items()},
        "endpoints": manager.state()["endpoints"],
        "proxies": len(manager._proxies),
        "sandboxes": len(manager._sandboxes),
        "fds": len(os.listdir("/proc/self/fd")),
    }


@pytest.mark.slow
def test_hundred_connect_disconnect_cycles(manager, netns):
    manager.create_network("churn")
    warm = netns()  # one long-lived neighbour, so DNS tables are exercised too
    manager.connect("w" * 64, warm, "churn", name="warm")
    before = census(manager)
    for i in range(100):
        ns = netns()
        cid = f"{i:064x}"
        net = "churn" if i % 2 else "bridge"
        ports = ["127.0.0.1::80"] if i % 3 == 0 else []
        ep = manager.connect(cid, ns, net, name=f"c{i}", aliases=["a"] if net == "churn" else [], ports=ports)
        assert ep["IPAddress"]
        if i % 10 == 0:  # sometimes connected to both, released together
            manager.connect(cid, ns, "churn" if net == "bridge" else "bridge")
        if i % 4 == 0:
            manager.release_all(cid)
        else:
            for name in list(manager.container_endpoints(cid)):
                manager.disconnect(cid, name)
        netns.delete(ns)
    assert census(manager) == before
