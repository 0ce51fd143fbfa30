"""Bridge devices and veth endpoints, applied through netlink (pyroute2).

Every function is idempotent where it can be (ensure_*, delete_* of a missing
device is a no-op), so the manager can re-run them after a daemon restart to
re-create missing pieces without touching the ones that exist.

Netlink errors are translated into dockyard errors at this boundary.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dockyard.errors import Conflict, SystemError_
from dockyard.network.netns import run_in_netns

IFNAMSIZ = 15
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
IFA_F_NODAD = 0x02  # an address we own: no duplicate detection (it is usable at once)


class NetworkError(SystemError_):
    pass


@contextmanager
def _ipr() -> Iterator[IPRoute]:
    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _err(what: str, e: NetlinkError) -> NetworkError:
    return NetworkError(f"{what}: {os.strerror(e.code) if e.code else e}")


def new_veth_name() -> str:
    return "veth" + secrets.token_hex(4)[:7]


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(name: str) -> bool:
    with _ipr() as ipr:
        return _index(ipr, name) is not None


def list_links() -> list[str]:
    with _ipr() as ipr:
        return [l.get_attr("IFLA_IFNAME") for l in ipr.get_links()]


def link_master(name: str) -> str | None:
    """The bridge ``name`` is plugged into; None if none, or if the link (or its master)
    went away meanwhile: other engines' veths come and go while we list ours."""
    with _ipr() as ipr:
        try:
            idx = _index(ipr, name)
            if idx is None:
                return None
            master = ipr.get_links(idx)[0].get_attr("IFLA_MASTER")
            if not master:
                return None
            return ipr.get_links(master)[0].get_attr("IFLA_IFNAME")
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise


# -- bridges ---------------------------------------------------------------
def ensure_bridge(name: str, gateway: str | None, prefixlen: int, mtu: int = 1500,
                  gateway6: str | None = None, prefixlen6: int = 0) -> bool:
    """Create the bridge if missing, make sure it has the gateway address(es) and is
    up. Returns True if the device was created. ``gateway6``: an --ipv6 network's
    gateway, set with IPv6 enabled and forwarding on for this bridge only (the
    host's ``all``/``default`` settings are left alone)."""
    if len(name) > IFNAMSIZ:
        raise NetworkError(f"bridge name {name!r} is longer than {IFNAMSIZ} characters")
    created = False
    with _ipr() as ipr:
        try:
            idx = _index(ipr, name)
            if idx is None:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
                created = True
                idx = _index(ipr, name)
            else:
                link = ipr.get_links(idx)[0]
                kind = link.get_attr("IFLA_LINKINFO") and link.get_attr(
                    "IFLA_LINKINFO"
                ).get_attr("IFLA_INFO_KIND")
                if kind != "bridge":
                    raise Conflict(f"device {name} exists and is not a bridge")
            if gateway:
                have = {
                    (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                    for a in ipr.get_addr(index=idx, family=2)
                }
                if (gateway, prefixlen) not in have:
                    ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
            if gateway6:
                _sysctl6(name, "disable_ipv6", "0")
                _sysctl6(name, "forwarding", "1")
                have6 = {
                    (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                    for a in ipr.get_addr(index=idx, family=10)
                }
                if (gateway6, prefixlen6) not in have6:
                    ipr.addr("add", index=idx, address=gateway6, prefixlen=prefixlen6,
                             flags=IFA_F_NODAD)
            ipr.link("set", index=idx, state="up")
            set_route_localnet(name)
        except (NetlinkError, OSError) as e:
            if created:
                try:
                    ipr.link("del", ifname=name)
                except NetlinkError:
                    pass
            if isinstance(e, OSError) and not isinstance(e, NetlinkError):
                raise NetworkError(f"failed to set up bridge {name}: {e}") from None
            raise _err(f"failed to set up bridge {name}", e) from None
    return created


def _sysctl6(ifname: str, key: str, value: str) -> None:
    """net.ipv6.conf.<ifname>.<key> of one of our own interfaces (in the calling
    thread's network namespace)."""
    path = f"/proc/sys/net/ipv6/conf/{ifname}/{key}"
    with open(path) as f:
        if f.read().strip() == value:
            return
    with open(path, "w") as f:
        f.write(value)


def set_route_localnet(name: str) -> None:
    """Let DNATed connections from the host's 127.0.0.1 leave through this
    bridge (and their answers come back); firewall.py MASQUERADEs their
    source and drops anything else for 127/8 arriving on the bridge."""
    path = f"/proc/sys/net/ipv4/conf/{name}/route_localnet"
    with open(path) as f:
        if f.read().strip() == "1":
            return
    with open(path, "w") as f:
        f.write("1")


def delete_link(name: str) -> bool:
    """Delete a device (bridge, or a veth: deleting one side removes both)."""
    with _ipr() as ipr:
        try:
            ipr.link("del", ifname=name)
            return True
        except NetlinkError as e:
            if e.code in (errno.ENODEV, errno.ENOENT):
                return False
            raise _err(f"failed to delete {name}", e) from None
        except Exception:
            # pyroute2 raises a lookup error when the name is unknown
            if not link_exists(name):
                return False
            raise


# -- endpoints ---------------------------------------------------------------
@dataclass(frozen=True)
class V6:
    """An endpoint's IPv6 side (and its link-local addresses, either family)."""

    ip: str = ""
    prefixlen: int = 0
    gateway: str | None = None
    link_local: tuple[str, ...] = ()


def _setup_inside(
    ifname: str,
    ip: str | None,
    prefixlen: int,
    gateway: str | None,
    mac: str | None,
    mtu: int,
    v6: V6 | None = None,
) -> None:
    with _ipr() as ipr:
        lo = _index(ipr, "lo")
        if lo is not None:
            ipr.link("set", index=lo, state="up")
        if ifname is None:
            return
        idx = _index(ipr, ifname)
        if idx is None:
            raise NetworkError(f"{ifname} missing in the container's namespace")
        kw = {"mtu": mtu}
        if mac:
            kw["address"] = mac
        ipr.link("set", index=idx, **kw)
        if ip:
            ipr.addr("add", index=idx, address=ip, prefixlen=prefixlen)
        if v6 is not None and (v6.ip or any(":" in a for a in v6.link_local)):
            _sysctl6(ifname, "disable_ipv6", "0")
        if v6 is not None:
            if v6.ip:
                ipr.addr("add", index=idx, address=v6.ip, prefixlen=v6.prefixlen,
                         flags=IFA_F_NODAD)
            for a in v6.link_local:
                ipr.addr("add", index=idx, address=a, prefixlen=64 if ":" in a else 16,
                         flags=IFA_F_NODAD if ":" in a else 0)
        ipr.link("set", index=idx, state="up")
        if gateway and not _has_default_route(ipr):
            # One default route per namespace: the first network providing a
            # gateway keeps it (ensure_default_route hands it on later).
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=idx)
        if v6 is not None and v6.gateway and not _has_default_route(ipr, 10):
            ipr.route("add", dst="::/0", gateway=v6.gateway, oif=idx, family=10)


def _has_default_route(ipr: IPRoute, family: int = 2) -> bool:
    return any(r["dst_len"] == 0 for r in ipr.get_routes(family=family, table=254))


def _default_route(gateway: str, gateway6: str | None) -> None:
    with _ipr() as ipr:
        if not _has_default_route(ipr):
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
        if gateway6 and not _has_default_route(ipr, 10):
            ipr.route("add", dst="::/0", gateway=gateway6, family=10)


def ensure_default_route(netns_path: str, gateway: str, gateway6: str | None = None) -> None:
    """Add a default route via ``gateway`` (and ``gateway6``) in the namespace if it
    has none (after the network that provided it was disconnected)."""
    try:
        run_in_netns(netns_path, _default_route, gateway, gateway6)
    except NetlinkError as e:
        raise _err("failed to set the default route", e) from None


def _free_ifname() -> str:
    with _ipr() as ipr:
        names = {l.get_attr("IFLA_IFNAME") for l in ipr.get_links()}
    n = 0
    while f"eth{n}" in names:
        n += 1
    return f"eth{n}"


def loopback_up(netns_path: str) -> None:
    run_in_netns(netns_path, _setup_inside, None, None, 0, None, None, 0)


def attach(
    bridge: str,
    host_veth: str,
    netns_path: str,
    ip: str,
    prefixlen: int,
    gateway: str | None,
    mac: str,
    mtu: int = 1500,
    guess: str | None = None,
    v6: V6 | None = None,
) -> str:
    """Create a veth pair, plug the host side into ``bridge`` and move the peer
    into the namespace at ``netns_path`` as the first free ethN, addressed, up,
    with a default route via ``gateway`` (None: no default route, as for an
    --internal network). Returns the interface name inside the namespace.
    Leaves nothing behind on failure. ``guess``: the name the caller expects to be free
    (eth0 in a fresh namespace), which saves a trip into the namespace; if it is taken,
    the first free name is looked up there and used instead."""
    ifname = guess or run_in_netns(netns_path, _free_ifname)
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _ipr() as ipr:
            br = _index(ipr, bridge)
            if br is None:
                raise NetworkError(f"bridge {bridge} does not exist")
            while True:
                try:
                    ipr.link(
                        "add",
                        ifname=host_veth,
                        kind="veth",
                        mtu=mtu,
                        peer={"ifname": ifname, "net_ns_fd": fd, "mtu": mtu},
                    )
                    break
                except NetlinkError as e:
                    if e.code == errno.EEXIST and guess is not None:
                        guess = None  # the guessed name is taken inside: look it up
                        ifname = run_in_netns(netns_path, _free_ifname)
                        continue
                    if e.code == errno.EEXIST:
                        raise Conflict(f"device {host_veth} already exists") from None
                    raise _err(f"failed to create veth {host_veth}", e) from None
            try:
                idx = _index(ipr, host_veth)
                ipr.link("set", index=idx, master=br)
                ipr.link("set", index=idx, state="up")
            except NetlinkError as e:
                _quiet_del(ipr, host_veth)
                raise _err(f"failed to plug {host_veth} into {bridge}", e) from None
    finally:
        os.close(fd)
    try:
        run_in_netns(netns_path, _setup_inside, ifname, ip, prefixlen, gateway, mac, mtu, v6)
    except NetlinkError as e:
        delete_link(host_veth)
        raise _err(f"failed to configure {ifname} in the container", e) from None
    except BaseException:
        delete_link(host_veth)
        raise
    return ifname


def _quiet_del(ipr: IPRoute, name: str) -> None:
    try:
        ipr.link("del", ifname=name)
    except Exception:
        pass


def _inside_has(ip: str) -> bool:
    with _ipr() as ipr:
        return any(a.get_attr("IFA_ADDRESS") == ip for a in ipr.get_addr(family=2))


def endpoint_present(host_veth: str, netns_path: str, ip: str) -> bool:
    """True if the host side exists and the namespace still holds ``ip``."""
    if not link_exists(host_veth):
        return False
    try:
        return run_in_netns(netns_path, _inside_has, ip)
    except OSError:
        return False


def netns_alive(netns_path: str) -> bool:
    try:
        os.close(os.open(netns_path, os.O_RDONLY))
        return True
    except OSError:
        return False


# -- host facts ----------------------------------------------------------------
def host_routes(exclude_devices: set[str] = frozenset()) -> list[str]:
    """Destinations of the host's IPv4 routes (main table), except those through
    ``exclude_devices`` (our own bridges)."""
    out = []
    with _ipr() as ipr:
        names = {l["index"]: l.get_attr("IFLA_IFNAME") for l in ipr.get_links()}
        for r in ipr.get_routes(family=2, table=254):
            dst = r.get_attr("RTA_DST")
            if not dst:
                continue
            if names.get(r.get_attr("RTA_OIF")) in exclude_devices:
                continue
            out.append(str(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False)))
        # Addresses on interfaces count too (a /32 on lo, for instance).
        for a in ipr.get_addr(family=2):
            if names.get(a["index"]) in exclude_devices:
                continue
            ip = a.get_attr("IFA_ADDRESS")
            if ip and not ip.startswith("127."):
                out.append(str(ipaddress.IPv4Network(f"{ip}/{a['prefixlen']}", strict=False)))
    return sorted(set(out))


# -- forwarding ----------------------------------------------------------------
def enable_ip_forward() -> str:
    """Turn on IPv4 forwarding, needed for NAT to and from bridges. Returns the
    previous value so ``restore_ip_forward`` can undo exactly this step."""
    with open(IP_FORWARD) as f:
        prev = f.read().strip()
    if prev != "1":
        with open(IP_FORWARD, "w") as f:
            f.write("1")
    return prev


def restore_ip_forward(prev: str) -> None:
    if prev and prev != "1":
        with open(IP_FORWARD, "w") as f:
            f.write(prev)
