"""Helpers for the networking tests: own namespaces, bridges, chains, pools.

Everything is named from a random id and removed in ``finally`` blocks, so a
failing test leaves nothing on the host.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess

from dockyard.network import bridge as br
from dockyard.network.firewall import Firewall
from dockyard.network.manager import NetworkManager


def _free_block() -> ipaddress.IPv4Network:
    """A random 10.x.0.0/16 that overlaps no host route or address."""
    routes = [ipaddress.ip_network(r) for r in br.host_routes()]
    for _ in range(200):
        cand = ipaddress.ip_network(f"10.{secrets.randbelow(150) + 100}.0.0/16")
        if not any(cand.overlaps(r) for r in routes):
            return cand
    raise RuntimeError("no free 10.x.0.0/16 block")


class NetnsFactory:
    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self) -> str:
        name = f"dytest-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.names.append(name)
        return f"/run/netns/{name}"

    def delete(self, path: str) -> None:
        name = os.path.basename(path)
        subprocess.run(["ip", "netns", "del", name], check=False)
        if name in self.names:
            self.names.remove(name)

    def cleanup(self) -> None:
        for name in list(self.names):
            # kill anything left running inside (httpd, ping...)
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", name], check=False)
        self.names.clear()


def nsexec(path: str, *cmd: str, timeout: float = 20, check: bool = False) -> subprocess.CompletedProcess:
    """Run a command inside a test namespace (by its /run/netns path)."""
    return subprocess.run(
        ["ip", "netns", "exec", os.path.basename(path), *cmd],
        capture_output=True, text=True, timeout=timeout, check=check,
    )


def new_net_ids() -> dict:
    rid = secrets.token_hex(3)
    block = _free_block()
    subs = list(block.subnets(new_prefix=17))
    return {
        "prefix": f"DYT{rid.upper()}",
        "bridge_prefix": f"dyt{rid[:3]}",
        "default_pool": str(next(subs[0].subnets(new_prefix=24))),
        "user_pools": [(str(subs[1]), 24)],
    }


def make_manager(net_ids, state=None, **kw) -> NetworkManager:
    return NetworkManager(
        state,
        prefix=net_ids["prefix"],
        bridge_prefix=net_ids["bridge_prefix"],
        default_pool=net_ids["default_pool"],
        user_pools=net_ids["user_pools"],
        dns_upstreams=kw.pop("dns_upstreams", []),
        **kw,
    )


def scrub(net_ids) -> None:
    """Remove anything with our test names, whatever state the manager is in."""
    for name in br.list_links():
        if name.startswith(net_ids["bridge_prefix"]):
            br.delete_link(name)
    Firewall(net_ids["prefix"]).teardown()


def our_veths(manager) -> set[str]:
    """Host-side veths plugged into this manager's bridges."""
    from pyroute2.netlink.exceptions import NetlinkError

    bridges = {n.bridge for n in manager.networks.values() if n.driver == "bridge"}
    found = set()
    for l in br.list_links():
        if l.startswith("veth"):
            try:
                if br.link_master(l) in bridges:
                    found.add(l)
            except NetlinkError:   # another worker's veth, gone since the listing
                pass
    return found
