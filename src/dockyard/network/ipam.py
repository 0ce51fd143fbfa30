"""Address management for bridge networks: pools, subnets, leases.

Pure: no kernel access. The caller passes in the host's routes (so automatic
subnets never shadow a route the host already has) and persists the state
returned by ``to_dict()`` wherever it likes (the daemon keeps it in SQLite).

Error wording follows Docker's so the CLI prints what users expect:

* an explicit subnet overlapping one already in use ->
  ``Pool overlaps with other one on this address space`` (403, as in moby)
* a requested address outside the subnet/ip-range ->
  ``no configured subnet or ip-range contain the IP address X``
* a requested address already leased -> ``Address already in use`` (403)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from dockyard.errors import Forbidden, InvalidParameter, Unavailable

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address

DEFAULT_BRIDGE_POOL = "172.30.0.0/16"
DEFAULT_USER_POOLS: tuple[tuple[str, int], ...] = (("172.31.0.0/16", 24),)


class PoolOverlap(Forbidden):
    def __init__(self) -> None:
        super().__init__("Pool overlaps with other one on this address space")


class AddressInUse(Forbidden):
    def __init__(self) -> None:
        super().__init__("Address already in use")


class NoAvailableAddress(Unavailable):
    pass


def parse_subnet(text: str, v6: bool = False) -> IPv4Network:
    """A subnet in CIDR form; host bits must be zero (Docker rejects them too).
    ``v6``: an IPv6 subnet is wanted (else IPv4)."""
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise InvalidParameter(f"invalid CIDR address: {text}") from None
    if iface.version != (6 if v6 else 4):
        raise InvalidParameter(f"invalid IPv{6 if v6 else 4} subnet: {text}")
    if "/" not in text:
        raise InvalidParameter(f"invalid CIDR address: {text}")
    net = iface.network
    if iface.ip != net.network_address:
        raise InvalidParameter(
            f"Invalid subnet {text} : it should be {net}"
        )
    return net


def parse_ip(text: str, v6: bool = False) -> IPv4Address:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidParameter(f"invalid IP address: {text}") from None
    if ip.version != (6 if v6 else 4):
        raise InvalidParameter(f"invalid IPv{6 if v6 else 4} address: {text}")
    return ip


def v6_key(network_id: str) -> str:
    """The pool key of a network's IPv6 address space (its IPv4 one is its id)."""
    return network_id + "/v6"


@dataclass
class Pool:
    """One network's address space and its leases (addresses as ints)."""

    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None
    leased: set[int] = field(default_factory=set)
    # Explicitly requested subnets are the user's: never reused for others.
    auto: bool = False

    @property
    def alloc_range(self) -> IPv4Network:
        return self.ip_range or self.subnet

    @property
    def v6(self) -> bool:
        return self.subnet.version == 6

    def reserved(self) -> set[int]:
        """Addresses never handed out: network, broadcast (IPv4), gateway."""
        s = self.subnet
        out = {int(s.network_address), int(self.gateway)}
        if not self.v6 and s.prefixlen < 31:
            out.add(int(s.broadcast_address))
        return out

    def contains(self, ip: IPv4Address) -> bool:
        return ip in self.alloc_range

    def to_dict(self) -> dict:
        return {
            "Subnet": str(self.subnet),
            "Gateway": str(self.gateway),
            "IPRange": str(self.ip_range) if self.ip_range else "",
            "Leased": sorted(str((ipaddress.IPv6Address if self.v6 else IPv4Address)(i))
                             for i in self.leased),
            "Auto": self.auto,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Pool":
        return cls(
            subnet=ipaddress.ip_network(d["Subnet"]),
            gateway=ipaddress.ip_address(d["Gateway"]),
            ip_range=ipaddress.ip_network(d["IPRange"]) if d.get("IPRange") else None,
            leased={int(ipaddress.ip_address(a)) for a in d.get("Leased", [])},
            auto=bool(d.get("Auto", False)),
        )


class IPAM:
    """Pools keyed by network id.

    ``host_routes``: destinations (CIDR strings) of the host's routes other
    than our own bridges'; auto-allocated subnets avoid overlapping them.
    """

    def __init__(
        self,
        default_pool: str = DEFAULT_BRIDGE_POOL,
        user_pools: Iterable[tuple[str, int]] = DEFAULT_USER_POOLS,
    ) -> None:
        self.default_pool = parse_subnet(default_pool)
        self.user_pools = [(parse_subnet(p), int(size)) for p, size in user_pools]
        for base, size in self.user_pools:
            if size < base.prefixlen or size > 30:
                raise InvalidParameter(f"invalid pool size /{size} for {base}")
        self.pools: dict[str, Pool] = {}

    # -- pools ------------------------------------------------------------
    def request_pool(
        self,
        network_id: str,
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        *,
        default: bool = False,
        host_routes: Iterable[str] = (),
        v6: bool = False,
    ) -> Pool:
        """Reserve an address space for a network; validate everything first.
        ``v6``: the network's IPv6 space (kept under ``v6_key(network_id)``; a
        subnet is required, as dockerd 20.10 has no default IPv6 pools)."""
        key = v6_key(network_id) if v6 else network_id
        if key in self.pools:
            raise InvalidParameter(f"network {network_id} already has a pool")
        if subnet:
            net = parse_subnet(subnet, v6)
            if any(p.subnet.version == net.version and net.overlaps(p.subnet)
                   for p in self.pools.values()):
                raise PoolOverlap()
            auto = False
        elif v6:
            raise InvalidParameter("could not find an available, non-overlapping IPv6 address "
                                   "pool among the defaults to assign to the network")
        else:
            if gateway or ip_range:
                raise InvalidParameter(
                    "ip-range and gateway require a subnet (--subnet)"
                )
            net = self._pick_subnet(default, [parse_subnet(r) for r in host_routes])
            auto = True
        rng = None
        if ip_range:
            rng = parse_subnet(ip_range, v6)
            if not rng.subnet_of(net):
                raise InvalidParameter(f"no matching subnet for range {ip_range}")
        if gateway:
            gw = parse_ip(gateway, v6)
            if gw not in net:
                raise InvalidParameter(f"no matching subnet for gateway {gateway}")
            if gw in (net.network_address, net.broadcast_address) and net.prefixlen < (
                    127 if v6 else 31):
                raise InvalidParameter(f"invalid gateway {gateway} for subnet {net}")
        else:
            if net.num_addresses < 4:
                raise InvalidParameter(f"subnet {net} is too small")
            gw = net.network_address + 1
        pool = Pool(subnet=net, gateway=gw, ip_range=rng, auto=auto)
        self.pools[key] = pool
        return pool

    def _pick_subnet(self, default: bool, host_routes: list[IPv4Network]) -> IPv4Network:
        taken = [p.subnet for p in self.pools.values() if not p.v6]
        if default:
            cands: Iterable[IPv4Network] = [self.default_pool]
        else:
            cands = (
                sub
                for base, size in self.user_pools
                for sub in base.subnets(new_prefix=size)
            )
        for cand in cands:
            if any(cand.overlaps(t) for t in taken):
                continue
            if any(cand.overlaps(r) for r in host_routes if r.prefixlen > 0):
                continue
            return cand
        if default:
            raise NoAvailableAddress(
                f"default pool {self.default_pool} overlaps with an existing network or route"
            )
        raise NoAvailableAddress(
            "all predefined address pools have been fully subnetted"
        )

    def release_pool(self, network_id: str) -> None:
        self.pools.pop(network_id, None)
        self.pools.pop(v6_key(network_id), None)

    def pool(self, network_id: str) -> Pool:
        try:
            return self.pools[network_id]
        except KeyError:
            raise InvalidParameter(f"network {network_id} has no address pool") from None

    # -- addresses --------------------------------------------------------
    def request_address(self, network_id: str, ip: str | None = None, v6: bool = False) -> str:
        """A lease on the network's IPv4 (or, ``v6``, IPv6) pool: ``ip`` or the first free."""
        if v6 and v6_key(network_id) not in self.pools:
            raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {ip}"
                                   if ip else f"network {network_id} has no IPv6 pool")
        pool = self.pool(v6_key(network_id) if v6 else network_id)
        if ip:
            addr = parse_ip(ip, v6)
            if v6 and not pool.contains(addr):  # dockerd's words for IPv6
                raise InvalidParameter(f"Invalid address {ip}: It does not belong to any of "
                                       f"this network's subnets")
            if not pool.contains(addr):
                raise InvalidParameter(
                    f"no configured subnet or ip-range contain the IP address {ip}"
                )
            n = int(addr)
            if n in pool.leased or n in pool.reserved():
                raise AddressInUse()
            pool.leased.add(n)
            return str(addr)
        rng = pool.alloc_range
        reserved = pool.reserved()
        lo, hi = int(rng.network_address), int(rng.broadcast_address)
        for n in range(lo, hi + 1):
            if n not in pool.leased and n not in reserved:
                pool.leased.add(n)
                return str(ipaddress.IPv6Address(n) if v6 else IPv4Address(n))
        raise NoAvailableAddress(
            f"no available IPv{6 if v6 else 4} addresses on this network's address pools: "
            f"{network_id}"
        )

    def release_address(self, network_id: str, ip: str) -> None:
        addr = ipaddress.ip_address(ip)
        pool = self.pools.get(v6_key(network_id) if addr.version == 6 else network_id)
        if pool is not None:
            pool.leased.discard(int(addr))

    # -- persistence ------------------------------------------------------
    def to_dict(self) -> dict:
        return {nid: p.to_dict() for nid, p in self.pools.items()}

    def load_dict(self, d: dict) -> None:
        self.pools = {nid: Pool.from_dict(p) for nid, p in (d or {}).items()}

    @classmethod
    def from_dict(
        cls,
        d: dict,
        default_pool: str = DEFAULT_BRIDGE_POOL,
        user_pools: Iterable[tuple[str, int]] = DEFAULT_USER_POOLS,
    ) -> "IPAM":
        ipam = cls(default_pool, user_pools)
        ipam.load_dict(d)
        return ipam
