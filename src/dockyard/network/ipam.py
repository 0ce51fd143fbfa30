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


def parse_subnet(text: str) -> IPv4Network:
    """A subnet in CIDR form; host bits must be zero (Docker rejects them too)."""
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise InvalidParameter(f"invalid CIDR address: {text}") from None
    if iface.version != 4:
        raise InvalidParameter(f"IPv6 subnets are not supported yet: {text}")
    if "/" not in text:
        raise InvalidParameter(f"invalid CIDR address: {text}")
    net = iface.network
    if iface.ip != net.network_address:
        raise InvalidParameter(
            f"Invalid subnet {text} : it should be {net}"
        )
    return net


def parse_ip(text: str) -> IPv4Address:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidParameter(f"invalid IP address: {text}") from None
    if ip.version != 4:
        raise InvalidParameter(f"IPv6 addresses are not supported yet: {text}")
    return ip


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

    def reserved(self) -> set[int]:
        """Addresses never handed out: network, broadcast, gateway."""
        s = self.subnet
        out = {int(s.network_address), int(self.gateway)}
        if s.prefixlen < 31:
            out.add(int(s.broadcast_address))
        return out

    def contains(self, ip: IPv4Address) -> bool:
        return ip in self.alloc_range

    def to_dict(self) -> dict:
        return {
            "Subnet": str(self.subnet),
            "Gateway": str(self.gateway),
            "IPRange": str(self.ip_range) if self.ip_range else "",
            "Leased": sorted(str(IPv4Address(i)) for i in self.leased),
            "Auto": self.auto,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Pool":
        return cls(
            subnet=IPv4Network(d["Subnet"]),
            gateway=IPv4Address(d["Gateway"]),
            ip_range=IPv4Network(d["IPRange"]) if d.get("IPRange") else None,
            leased={int(IPv4Address(a)) for a in d.get("Leased", [])},
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
    ) -> Pool:
        """Reserve an address space for a network; validate everything first."""
        if network_id in self.pools:
            raise InvalidParameter(f"network {network_id} already has a pool")
        if subnet:
            net = parse_subnet(subnet)
            if any(net.overlaps(p.subnet) for p in self.pools.values()):
                raise PoolOverlap()
            auto = False
        else:
            if gateway or ip_range:
                raise InvalidParameter(
                    "ip-range and gateway require a subnet (--subnet)"
                )
            net = self._pick_subnet(default, [parse_subnet(r) for r in host_routes])
            auto = True
        rng = None
        if ip_range:
            rng = parse_subnet(ip_range)
            if not rng.subnet_of(net):
                raise InvalidParameter(f"no matching subnet for range {ip_range}")
        if gateway:
            gw = parse_ip(gateway)
            if gw not in net:
                raise InvalidParameter(f"no matching subnet for gateway {gateway}")
            if gw in (net.network_address, net.broadcast_address) and net.prefixlen < 31:
                raise InvalidParameter(f"invalid gateway {gateway} for subnet {net}")
        else:
            if net.num_addresses < 4:
                raise InvalidParameter(f"subnet {net} is too small")
            gw = net.network_address + 1
        pool = Pool(subnet=net, gateway=gw, ip_range=rng, auto=auto)
        self.pools[network_id] = pool
        return pool

    def _pick_subnet(self, default: bool, host_routes: list[IPv4Network]) -> IPv4Network:
        taken = [p.subnet for p in self.pools.values()]
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

    def pool(self, network_id: str) -> Pool:
        try:
            return self.pools[network_id]
        except KeyError:
            raise InvalidParameter(f"network {network_id} has no address pool") from None

    # -- addresses --------------------------------------------------------
    def request_address(self, network_id: str, ip: str | None = None) -> str:
        pool = self.pool(network_id)
        if ip:
            addr = parse_ip(ip)
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
                return str(IPv4Address(n))
        raise NoAvailableAddress(
            f"no available IPv4 addresses on this network's address pools: {network_id}"
        )

    def release_address(self, network_id: str, ip: str) -> None:
        pool = self.pools.get(network_id)
        if pool is not None:
            pool.leased.discard(int(parse_ip(ip)))

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
