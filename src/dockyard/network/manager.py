"""NetworkManager: Docker's networks and endpoints as an in-process service.

No HTTP here; the daemon calls these methods (from a worker thread: they block
on netlink and iptables for milliseconds) and maps dockyard.errors to status
codes. State is plain data: ``state()`` returns a JSON-able dict, the
constructor (or ``restore``) takes one back; ``on_change(state)`` is called
after every mutation so the daemon can store it (SQLite) at once.

Each mutation is planned and validated first, then applied step by step with
an undo list, so a failure leaves nothing half-configured.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from dockyard.errors import Conflict, Forbidden, InvalidParameter, NotFound
from dockyard.network import bridge as br
from dockyard.network import dns, dnsmsg
from dockyard.network.files import read_host_resolv
from dockyard.network.firewall import BridgeFw, Firewall, PortFw
from dockyard.network.ipam import DEFAULT_BRIDGE_POOL, DEFAULT_USER_POOLS, IPAM, v6_key
from dockyard.network.model import (
    Endpoint,
    Network,
    PortBinding,
    mac_from_ip,
    new_id,
    parse_port_spec,
)
from dockyard.network.proxy import PortAllocated, ServiceLoop, bind_port, make_proxy

log = logging.getLogger(__name__)

PREDEFINED = ("bridge", "host", "none")
# dockerd takes any name (spaces too) but an empty or blank one; ids are what the host sees
NAME_RE = re.compile(r"^(?=.*\S)[^\x00-\x1f/]+$")
BRIDGE_NAME_OPT = "com.docker.network.bridge.name"
# the bridge driver options a user network may be given (the others are refused)
DRIVER_OPTS = (BRIDGE_NAME_OPT, "com.docker.network.bridge.enable_icc",
               "com.docker.network.bridge.enable_ip_masquerade",
               "com.docker.network.bridge.host_binding_ipv4", "com.docker.network.driver.mtu")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


@dataclass
class _Sandbox:
    """Per-container runtime pieces that live only in this process."""

    netns_path: str
    listener: dns.Listener | None = None
    upstreams: list[tuple[str, int]] = field(default_factory=list)


class _Undo:
    def __init__(self) -> None:
        self.steps: list[Callable[[], Any]] = []

    def push(self, fn: Callable[[], Any]) -> None:
        self.steps.append(fn)

    def run(self) -> None:
        for fn in reversed(self.steps):
            try:
                fn()
            except Exception:  # undo is best effort; the original error wins
                log.exception("undo step failed")
        self.steps.clear()


def _blocking(fn):
    """Marks methods that block on netlink/iptables: refuse to run them on a
    thread that is running an event loop (pyroute2 would fail obscurely, and
    the loop would stall)."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)
        raise RuntimeError(
            f"NetworkManager.{fn.__name__} blocks: call it from a worker thread "
            "(asyncio.to_thread), not from an event loop"
        )

    return wrapper


def _check_link_local(addrs: list[str]) -> None:
    """--link-local-ip: link-local unicast addresses (169.254/16, fe80::/10), as dockerd."""
    import ipaddress

    for a in addrs:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            raise InvalidParameter(f"invalid link local IP address: {a}") from None
        if not ip.is_link_local or ip.is_multicast:
            raise InvalidParameter(f"invalid link local IP address: {a}")


def _parse_upstream(s: str) -> tuple[str, int]:
    if s.count(":") == 1:
        host, port = s.split(":")
        return host, int(port)
    return s, 53


class NetworkManager:
    def __init__(
        self,
        state: dict | None = None,
        *,
        prefix: str = "DOCKYARD",
        bridge_prefix: str = "dy",
        default_bridge: str | None = None,
        default_pool: str = DEFAULT_BRIDGE_POOL,
        user_pools: Iterable[tuple[str, int]] = DEFAULT_USER_POOLS,
        dns_upstreams: list[str] | None = None,
        on_change: Callable[[dict], None] | None = None,
        loop: Any = None,
        default_ipv6: str | None = None,
    ) -> None:
        """``default_ipv6``: the default bridge's IPv6 subnet (dockerd's ``--ipv6
        --fixed-cidr-v6``), or None for an IPv4-only default bridge."""
        if len(bridge_prefix) > 6:
            raise ValueError("bridge_prefix is at most 6 characters")
        self.prefix = prefix
        self.bridge_prefix = bridge_prefix
        self.default_bridge = default_bridge or f"{bridge_prefix}0"
        self.ipam = IPAM(default_pool, user_pools)
        self.firewall = Firewall(prefix)
        self.firewall6 = Firewall(prefix, v6=True)
        self.default_ipv6 = default_ipv6
        self.on_change = on_change
        self._loop_arg = loop
        self.services: ServiceLoop | None = None
        self._lock = threading.RLock()
        self.networks: dict[str, Network] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.ip_forward_prev = ""
        self._proxies: dict[tuple[str, int], Any] = {}  # (endpoint id, port index) -> proxy
        self._sandboxes: dict[str, _Sandbox] = {}
        self._dns_upstreams = (
            [_parse_upstream(s) for s in dns_upstreams]
            if dns_upstreams is not None
            else [(s, 53) for s in read_host_resolv().nameservers]
        )
        # Lookup tables for the DNS server (read from the loop thread; rebuilt
        # and swapped whole under the lock, never mutated in place).
        # network id -> lower-case name -> (IPv4 addresses, IPv6 addresses)
        self._names: dict[str, dict[str, tuple[list[str], list[str]]]] = {}
        self._rev: dict[str, dict[str, list[str]]] = {}
        # container -> network id -> link alias (case kept) -> lower-case target name
        self._linked: dict[str, dict[str, dict[str, str]]] = {}
        # container -> its DNS-served networks as (id, name), in dockerd's sandbox order
        self._container_nets: dict[str, tuple[tuple[str, str], ...]] = {}
        self._may_forward: frozenset[str] = frozenset()
        self.started = False
        if state:
            self._load(state)

    # -- state ----------------------------------------------------------------
    def _load(self, state: dict) -> None:
        self.networks = {k: Network.from_dict(v) for k, v in state.get("networks", {}).items()}
        self.endpoints = {k: Endpoint.from_dict(v) for k, v in state.get("endpoints", {}).items()}
        self.ipam.load_dict(state.get("ipam", {}))
        self.ip_forward_prev = state.get("ip_forward_prev", "")

    def state(self) -> dict:
        with self._lock:
            return {
                "version": 1,
                "networks": {k: v.to_dict() for k, v in self.networks.items()},
                "endpoints": {k: v.to_dict() for k, v in self.endpoints.items()},
                "ipam": self.ipam.to_dict(),
                "ip_forward_prev": self.ip_forward_prev,
            }

    def _changed(self) -> None:
        self._rebuild_dns_tables()
        if self.on_change is not None:
            self.on_change(self.state())

    # -- lifecycle ---------------------------------------------------------------
    @_blocking
    def start(self) -> None:
        """Bring the kernel in line with the state: predefined networks, bridges,
        rules, endpoints (re-adopted if present, re-created if missing, dropped
        if their namespace is gone), proxies and DNS listeners."""
        with self._lock:
            if self.services is None:
                self.services = ServiceLoop(self._loop_arg)
            self._ensure_predefined()
            for net in self.networks.values():
                if net.driver == "bridge":
                    self._ensure_bridge(net)
            if any(n.driver == "bridge" and not n.internal for n in self.networks.values()):
                prev = br.enable_ip_forward()
                if not self.ip_forward_prev:
                    self.ip_forward_prev = prev
            for ep in list(self.endpoints.values()):
                self._readopt(ep)
            self._sweep_orphans()
            self._sync_firewall()
            self.started = True
            self._changed()

    @_blocking
    def restore(self, state: dict) -> None:
        """After a daemon restart: load ``state`` and reconcile (see start)."""
        with self._lock:
            self._load(state)
        self.start()

    @_blocking
    def close(self) -> None:
        """Stop this process's services (proxies, DNS) but leave bridges, veths
        and rules in place for the next daemon to re-adopt."""
        with self._lock:
            if self.services is None:
                return
            for key in list(self._proxies):
                self._stop_proxy(key)
            for cid in list(self._sandboxes):
                sb = self._sandboxes.pop(cid)
                if sb.listener is not None:
                    self.services.call(sb.listener.close())
            self.services.close()
            self.services = None
            self.started = False

    @_blocking
    def teardown(self) -> None:
        """Remove everything this manager created: endpoints, bridges, rules;
        restore ip_forward. (Tests, and `dockyard daemon --cleanup`.)"""
        with self._lock:
            for ep in list(self.endpoints.values()):
                try:
                    self._disconnect(ep)
                except Exception:
                    log.exception("teardown: endpoint %s", ep.id)
            for net in list(self.networks.values()):
                if net.driver == "bridge":
                    br.delete_link(net.bridge)
                self.ipam.release_pool(net.id)
            self.networks.clear()
            self.firewall.teardown()
            self.firewall6.teardown()
            if self.ip_forward_prev:
                br.restore_ip_forward(self.ip_forward_prev)
                self.ip_forward_prev = ""
            self._changed()
        self.close()

    def _ensure_predefined(self) -> None:
        have = {n.name for n in self.networks.values()}
        if "bridge" not in have:
            nid = new_id()
            routes = br.host_routes(exclude_devices={self.default_bridge})
            pool = self.ipam.request_pool(nid, default=True, host_routes=routes)
            self.networks[nid] = Network(
                name="bridge", id=nid, driver="bridge", subnet=str(pool.subnet),
                gateway=str(pool.gateway), bridge=self.default_bridge, created=_now(),
                default=True,
                options={
                    "com.docker.network.bridge.default_bridge": "true",
                    "com.docker.network.bridge.enable_icc": "true",
                    "com.docker.network.bridge.enable_ip_masquerade": "true",
                    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                    BRIDGE_NAME_OPT: self.default_bridge,
                    "com.docker.network.driver.mtu": "1500",
                },
            )
        self._default_v6()
        for name in ("host", "none"):
            if name not in have:
                nid = new_id()
                self.networks[nid] = Network(name=name, id=nid, driver=name, created=_now())

    def _default_v6(self) -> None:
        """The default bridge's IPv6 side follows the daemon's options at each start
        (as dockerd's): set, changed or dropped while no container is on it."""
        net = next(n for n in self.networks.values() if n.default)
        want = self.default_ipv6 or ""
        if want:
            from dockyard.network.ipam import parse_subnet
            want = str(parse_subnet(want, v6=True))
        if net.subnet6 == want or self._endpoints_of(net):
            return
        self.ipam.pools.pop(v6_key(net.id), None)
        net.enable_ipv6, net.subnet6, net.gateway6 = False, "", ""
        if want:
            pool = self.ipam.request_pool(net.id, subnet=want, v6=True)
            net.enable_ipv6, net.subnet6, net.gateway6 = True, want, str(pool.gateway)

    def _ensure_bridge(self, net: Network) -> bool:
        return br.ensure_bridge(net.bridge, net.gateway, net.prefixlen, net.mtu,
                                net.gateway6 if net.has_v6 else None, net.prefixlen6)

    # -- networks -------------------------------------------------------------------
    def _find(self, ref: str) -> Network:
        for n in self.networks.values():
            if n.name == ref or n.id == ref:
                return n
        matches = [n for n in self.networks.values() if ref and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"network {ref} is ambiguous ({len(matches)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def _endpoints_of(self, net: Network) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.network_id == net.id]

    def _our_bridges(self) -> set[str]:
        return {n.bridge for n in self.networks.values() if n.driver == "bridge"}

    def _user_bridge_name(self, nid: str) -> str:
        room = br.IFNAMSIZ - len(self.bridge_prefix) - 1
        return f"{self.bridge_prefix}-{nid[:room]}"

    @_blocking
    def create_network(
        self,
        name: str,
        driver: str = "bridge",
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        internal: bool = False,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        enable_ipv6: bool = False,
        subnet6: str | None = None,
        gateway6: str | None = None,
        ip_range6: str | None = None,
        attachable: bool = False,
    ) -> dict:
        """Create a user-defined network; returns {"Id", "Warning"} as the API
        does. Errors: InvalidParameter (bad name/subnet/gateway/range),
        Forbidden (overlapping pool, predefined driver), Conflict (name taken).
        ``enable_ipv6``: also an IPv6 space (``subnet6`` is required)."""
        with self._lock:
            self._require_started()
            if not name or not NAME_RE.match(name):
                raise InvalidParameter(
                    f"invalid network name {name!r}: it must not be blank nor hold '/' or "
                    f"control characters"
                )
            if any(n.name == name for n in self.networks.values()):
                raise Conflict(f"network with name {name} already exists")
            if driver in ("host", "none"):
                raise Forbidden(f'only one instance of "{driver}" network is allowed')
            if driver != "bridge":
                raise NotFound(f"plugin \"{driver}\" not found")
            options = {str(k): str(v) for k, v in (options or {}).items()}
            for k in options:
                # the bridge driver's own options: one it would act on and we do not is
                # refused (other keys are kept and shown, as dockerd keeps them)
                if k.startswith("com.docker.network.") and k not in DRIVER_OPTS:
                    raise InvalidParameter(f"network option {k}: Dockyard does not support it "
                                           f"(known: {', '.join(DRIVER_OPTS)})")
            mtu = options.get("com.docker.network.driver.mtu")
            if mtu is not None and (not mtu.isdigit() or not 68 <= int(mtu) <= 65535):
                raise InvalidParameter(f"invalid MTU {mtu!r}")
            nid = new_id()
            bname = options.get(BRIDGE_NAME_OPT) or self._user_bridge_name(nid)
            if len(bname) > br.IFNAMSIZ:
                raise InvalidParameter(f"bridge name {bname!r} is longer than {br.IFNAMSIZ} characters")
            if bname in self._our_bridges():
                raise Conflict(f"bridge name {bname} is already in use by another network")
            routes = br.host_routes(exclude_devices=self._our_bridges())
            pool = self.ipam.request_pool(
                nid, subnet=subnet, gateway=gateway, ip_range=ip_range, host_routes=routes
            )
            undo = _Undo()
            undo.push(lambda: self.ipam.release_pool(nid))
            pool6 = None
            if enable_ipv6 or subnet6:  # without --ipv6 reserved and shown, unused (dockerd)
                try:
                    pool6 = self.ipam.request_pool(nid, subnet=subnet6, gateway=gateway6,
                                                   ip_range=ip_range6, v6=True)
                except BaseException:
                    undo.run()
                    raise
            net = Network(
                name=name, id=nid, driver="bridge", subnet=str(pool.subnet),
                gateway=str(pool.gateway), ip_range=str(pool.ip_range or ""),
                internal=internal, labels=dict(labels or {}), bridge=bname,
                options=options, created=_now(), user_subnet=bool(subnet),
                enable_ipv6=enable_ipv6,
                subnet6=str(pool6.subnet) if pool6 else "",
                gateway6=str(pool6.gateway) if pool6 else "",
                ip_range6=str(pool6.ip_range or "") if pool6 else "",
                show_gateway=bool(gateway) or not subnet, show_gateway6=bool(gateway6),
                attachable=attachable,
            )
            try:
                if br.link_exists(bname):
                    raise Conflict(f"device {bname} already exists")
                self._ensure_bridge(net)
                undo.push(lambda: br.delete_link(bname))
                self.networks[nid] = net
                undo.push(lambda: self.networks.pop(nid, None))
                if not internal:
                    prev = br.enable_ip_forward()
                    if not self.ip_forward_prev:
                        self.ip_forward_prev = prev
                self._sync_firewall()
            except BaseException:
                undo.run()
                raise
            self._changed()
            return {"Id": nid, "Warning": ""}

    def inspect_network(self, ref: str) -> dict:
        with self._lock:
            net = self._find(ref)
            return net.inspect(self._endpoints_of(net))

    def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[dict]:
        """Docker's `GET /networks`: filters name (substring), id (prefix),
        driver, label (key or key=value), type (custom|builtin)."""
        with self._lock:
            out = []
            for net in self.networks.values():
                if filters and not self._matches(net, filters):
                    continue
                out.append(net.inspect(self._endpoints_of(net)))
            return out

    @staticmethod
    def _matches(net: Network, f: dict[str, list[str]]) -> bool:
        if f.get("name") and not any(v in net.name for v in f["name"]):
            return False
        if f.get("id") and not any(net.id.startswith(v) for v in f["id"]):
            return False
        if f.get("driver") and net.driver not in f["driver"] and not (
                net.driver == "none" and "null" in f["driver"]):
            return False
        if f.get("type"):
            kind = "builtin" if net.name in PREDEFINED else "custom"
            if kind not in f["type"]:
                return False
        for lab in f.get("label", []):
            k, eq, v = lab.partition("=")
            if k not in net.labels or (eq and net.labels[k] != v):
                return False
        return True

    @_blocking
    def remove_network(self, ref: str) -> None:
        with self._lock:
            net = self._find(ref)
            if net.name in PREDEFINED:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            if self._endpoints_of(net):
                raise Conflict(
                    f"error while removing network: network {net.name} id {net.id} has active endpoints"
                )
            del self.networks[net.id]
            try:
                self._sync_firewall()
            except BaseException:
                self.networks[net.id] = net
                raise
            br.delete_link(net.bridge)
            self.ipam.release_pool(net.id)
            self._changed()

    @_blocking
    def prune_networks(self, filters: dict[str, list[str]] | None = None) -> list[str]:
        """Remove unused user-defined networks; returns their names.
        Filters: label, label!, until (RFC 3339 or unix seconds)."""
        with self._lock:
            removed = []
            for net in list(self.networks.values()):
                if net.name in PREDEFINED or self._endpoints_of(net):
                    continue
                if filters and not self._prune_match(net, filters):
                    continue
                self.remove_network(net.id)
                removed.append(net.name)
            return removed

    @staticmethod
    def _prune_match(net: Network, f: dict[str, list[str]]) -> bool:
        for lab in f.get("label", []):
            k, eq, v = lab.partition("=")
            if k not in net.labels or (eq and net.labels[k] != v):
                return False
        for lab in f.get("label!", []):
            k, eq, v = lab.partition("=")
            if k in net.labels and (not eq or net.labels[k] == v):
                return False
        for until in f.get("until", []):
            created = datetime.strptime(net.created[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
            try:
                limit = datetime.fromtimestamp(float(until), timezone.utc)
            except ValueError:
                limit = datetime.fromisoformat(until.replace("Z", "+00:00"))
            if created >= limit:
                return False
        return True

    # -- endpoints ------------------------------------------------------------------
    @_blocking
    def connect(
        self,
        container_id: str,
        netns_path: str,
        network: str,
        ip: str | None = None,
        aliases: Iterable[str] = (),
        ports: Iterable[PortBinding | dict | str] = (),
        name: str = "",
        dns: list[str] | None = None,
        mac: str | None = None,
        ip6: str | None = None,
        link_local_ips: Iterable[str] = (),
        links: dict[str, str] | None = None,
    ) -> dict:
        """Attach the container whose network namespace is ``netns_path`` to
        ``network``. Returns the endpoint shaped as inspect's
        NetworkSettings.Networks[network] (plus nothing else). ``ports`` are
        PortBinding, dicts of its fields, or `-p` strings; host ports 0 are
        picked from the ephemeral range and recorded. ``dns``: the container's
        --dns servers (upstreams of the embedded DNS on user networks). ``links``:
        legacy links on a user network, {alias: target name}: the alias resolves to the
        target's current addresses on this network, for this container only."""
        with self._lock:
            self._require_started()
            net = self._find(network)
            bindings = [self._port(p) for p in ports]
            aliases = [a for a in aliases if a]
            mine = [e for e in self.endpoints.values() if e.container_id == container_id]
            if any(e.network_id == net.id for e in mine):
                raise Forbidden(
                    f"endpoint with name {name.lstrip('/') or container_id[:12]} already exists in network {net.name}"
                )
            other_drivers = {self.networks[e.network_id].driver for e in mine}
            if mine and (net.driver in ("host", "none") or other_drivers & {"host", "none"}):
                raise Forbidden(
                    "container cannot be disconnected from host network or connected to host network"
                    if "host" in other_drivers | {net.driver}
                    else "container cannot be connected to multiple networks with one of the networks in private (none) mode"
                )
            if not br.netns_alive(netns_path):
                raise InvalidParameter(f"network namespace {netns_path} does not exist")
            if net.driver != "bridge" and (ip or bindings):
                if ip:
                    raise InvalidParameter("user specified IP address is supported only when connecting to networks with user configured subnets")
            link_local_ips = [a for a in link_local_ips if a]
            _check_link_local(link_local_ips)
            if (ip or ip6 or link_local_ips) and net.default:
                raise InvalidParameter(
                    "user specified IP address is supported on user defined networks only"
                )
            if (ip or ip6 or link_local_ips) and net.driver != "bridge":
                raise InvalidParameter(
                    "user specified IP address is supported only when connecting to "
                    "networks with user configured subnets"
                )
            if ip6 and not net.has_v6:
                raise InvalidParameter(
                    "user specified IP address is supported only when connecting to "
                    "networks with user configured subnets")
            if ip and net.driver == "bridge" and not net.user_subnet:
                raise InvalidParameter(
                    "user specified IP address is supported only when connecting to "
                    "networks with user configured subnets"
                )
            if aliases and not net.has_dns:
                raise InvalidParameter(
                    "network-scoped alias is supported only for containers in user defined networks"
                )
            ep = Endpoint(
                id=new_id(), network_id=net.id, container_id=container_id,
                container_name=name.lstrip("/"), netns_path=netns_path,
                aliases=aliases, requested_ip=ip or "", requested_ip6=ip6 or "",
                link_local_ips=list(link_local_ips), links=dict(links or {}),
            )
            undo = _Undo()
            try:
                if net.driver == "none":
                    br.loopback_up(netns_path)
                elif net.driver == "bridge":
                    self._attach_bridge(net, ep, ip, bindings, undo, dns, mac)
                self.endpoints[ep.id] = ep
                undo.push(lambda: self.endpoints.pop(ep.id, None))
                if net.has_dns:
                    self._rebuild_dns_tables()
                    self._ensure_sandbox_dns(container_id, netns_path, dns, undo)
            except BaseException:
                undo.run()
                self._rebuild_dns_tables()
                raise
            self._changed()
            return ep.inspect(net)

    def _port(self, p: PortBinding | dict | str) -> PortBinding:
        if isinstance(p, PortBinding):
            return PortBinding(**p.to_dict())
        if isinstance(p, str):
            return parse_port_spec(p)
        return PortBinding.from_dict(p)

    def _attach_bridge(
        self,
        net: Network,
        ep: Endpoint,
        ip: str | None,
        bindings: list[PortBinding],
        undo: _Undo,
        dns_servers: list[str] | None,
        mac: str | None = None,
    ) -> None:
        # 1. address lease (validates --ip)
        ep.ip = self.ipam.request_address(net.id, ip)
        undo.push(lambda: self.ipam.release_address(net.id, ep.ip))
        if net.has_v6:
            ep.ip6 = self.ipam.request_address(net.id, ep.requested_ip6 or None, v6=True)
            undo.push(lambda: self.ipam.release_address(net.id, ep.ip6))
        ep.mac = (mac or "").lower() or mac_from_ip(ep.ip)
        # 2. host ports: bind first, so a taken port fails before any change
        for b in bindings:
            if not b.host_ip and net.host_binding_ipv4:
                b.host_ip = net.host_binding_ipv4
        socks = []
        try:
            for i, b in enumerate(bindings):
                try:
                    s = bind_port(b.host_ip, b.host_port, b.proto)
                except PortAllocated as e:
                    raise self._bind_error(ep, b, bindings[:i], e) from None
                socks.append(s)
                b.host_port = s.getsockname()[1]
        except BaseException:
            for s in socks:
                s.close()
            raise
        ep.ports = bindings
        # 3. veth into the namespace
        ep.host_veth = self._unique_veth()
        try:
            fresh = not any(e.netns_path == ep.netns_path and e.id != ep.id
                            for e in self.endpoints.values())
            br.attach(net.bridge, ep.host_veth, ep.netns_path, ep.ip, net.prefixlen,
                      None if net.internal else net.gateway, ep.mac, net.mtu,
                      guess="eth0" if fresh else None, v6=self._v6(net, ep))
        except BaseException:
            for s in socks:
                s.close()
            raise
        undo.push(lambda: br.delete_link(ep.host_veth))
        # 4. proxies (own the bound sockets from here on)
        for i, (b, s) in enumerate(zip(bindings, socks)):
            self._start_proxy(ep, i, b, s)
            undo.push(lambda i=i: self._stop_proxy((ep.id, i)))
        # 5. rules
        if bindings:
            self.endpoints[ep.id] = ep
            try:
                self._sync_firewall()
            finally:
                del self.endpoints[ep.id]
            undo.push(self._sync_firewall)

    @staticmethod
    def _v6(net: Network, ep: Endpoint) -> br.V6 | None:
        if not ep.ip6 and not ep.link_local_ips:
            return None
        return br.V6(ep.ip6, net.prefixlen6 if ep.ip6 else 0,
                     None if net.internal or not ep.ip6 else net.gateway6,
                     tuple(ep.link_local_ips))

    def _bind_error(self, ep: Endpoint, b: PortBinding, earlier: list[PortBinding],
                    e: PortAllocated) -> PortAllocated:
        """Docker's words: a port one of our containers (or an earlier binding
        of this one) holds is "already allocated" (its port allocator); one a
        host process holds fails the bind (Docker 28's wording)."""
        ip = b.host_ip or "0.0.0.0"

        def overlaps(o: PortBinding) -> bool:
            wild = {"", "0.0.0.0"}
            return (o.proto == b.proto and o.host_port == b.host_port
                    and (o.host_ip in wild or b.host_ip in wild or o.host_ip == b.host_ip))

        ours = [o for other in self.endpoints.values() for o in other.ports] + earlier
        if e.errno == errno.EADDRINUSE and any(overlaps(o) for o in ours):
            why = f"Bind for {ip}:{b.host_port} failed: port is already allocated"
        elif e.errno:
            why = (f"failed to bind host port for {ip}:{b.host_port}:{ep.ip}:{b.container_port}"
                   f"/{b.proto}: {os.strerror(e.errno).lower()}")
        else:
            why = str(e)
        name = ep.container_name or ep.container_id[:12]
        return PortAllocated(
            f"driver failed programming external connectivity on endpoint {name} ({ep.id}): {why}",
            e.errno)

    def _unique_veth(self) -> str:
        used = {e.host_veth for e in self.endpoints.values()}
        while True:
            name = br.new_veth_name()
            if name not in used and not br.link_exists(name):
                return name

    def _start_proxy(self, ep: Endpoint, i: int, b: PortBinding, sock) -> None:
        proxy = make_proxy(sock, b.proto, (ep.ip, b.container_port))
        try:
            self.services.call(proxy.start())
        except BaseException:
            sock.close()
            raise
        self._proxies[(ep.id, i)] = proxy

    def _stop_proxy(self, key: tuple[str, int]) -> None:
        proxy = self._proxies.pop(key, None)
        if proxy is not None:
            self.services.call(proxy.close())

    @_blocking
    def disconnect(self, container_id: str, network: str, force: bool = False) -> None:
        with self._lock:
            net = self._find(network)
            eps = [e for e in self._endpoints_of(net) if e.container_id == container_id]
            if not eps:
                if force:   # dockerd looks for a stale endpoint by name, and finds none
                    raise NotFound(f"endpoint {container_id} not found")
                raise NotFound(f"container {container_id} is not connected to network {net.name}")
            self._disconnect(eps[0])
            self._changed()

    @_blocking
    def release_all(self, container_id: str) -> None:
        """Everything for a stopped/removed container: all its endpoints,
        leases, ports, rules and its DNS listener. Idempotent."""
        with self._lock:
            eps = [e for e in self.endpoints.values() if e.container_id == container_id]
            for ep in eps:
                self._disconnect(ep)
            self._drop_sandbox(container_id)
            if eps:
                self._changed()

    def _disconnect(self, ep: Endpoint) -> None:
        net = self.networks.get(ep.network_id)
        for i in range(len(ep.ports)):
            self._stop_proxy((ep.id, i))
        del self.endpoints[ep.id]
        if ep.ports:
            self._sync_firewall()
        if ep.host_veth:
            br.delete_link(ep.host_veth)
        if ep.ip and net is not None:
            self.ipam.release_address(net.id, ep.ip)
        if ep.ip6 and net is not None:
            self.ipam.release_address(net.id, ep.ip6)
        if ep.host_veth and br.netns_alive(ep.netns_path):
            # hand the default route on to another network, as Docker does
            for other in self.endpoints.values():
                onet = self.networks.get(other.network_id)
                if (other.container_id == ep.container_id and onet is not None
                        and onet.driver == "bridge" and not onet.internal):
                    br.ensure_default_route(ep.netns_path, onet.gateway,
                                            onet.gateway6 if other.ip6 else None)
                    break
        self._rebuild_dns_tables()
        if not self._container_nets.get(ep.container_id):
            self._drop_sandbox(ep.container_id)

    # -- DNS ------------------------------------------------------------------------
    def _rebuild_dns_tables(self) -> None:
        names: dict[str, dict[str, tuple[list[str], list[str]]]] = {}
        rev: dict[str, dict[str, list[str]]] = {}
        cnets: dict[str, list[tuple[tuple, str, str]]] = {}
        linked: dict[str, dict[str, dict[str, str]]] = {}
        for ep in self.endpoints.values():
            net = self.networks.get(ep.network_id)
            if net is None or not net.has_dns or not ep.ip:
                continue
            # libnetwork's endpoint heap: internal networks last, dual-stack endpoints
            # first, then by network name (byte order)
            cnets.setdefault(ep.container_id, []).append(
                ((net.internal, not ep.ip6, net.name), net.id, net.name))
            if ep.links:
                linked.setdefault(ep.container_id, {})[net.id] = {
                    alias: target.lstrip("/").lower() for alias, target in ep.links.items()}
            table = names.setdefault(net.id, {})
            for n in ep.dns_names():
                v4, v6 = table.setdefault(n.lower(), ([], []))
                if ep.ip not in v4:
                    v4.append(ep.ip)
                if ep.ip6 and ep.ip6 not in v6:
                    v6.append(ep.ip6)
            if ep.container_name:
                for a in (ep.ip, ep.ip6):
                    if a:
                        rev.setdefault(net.id, {})[a] = [f"{ep.container_name}.{net.name}"]
        self._names, self._rev, self._linked = names, rev, linked
        self._container_nets = {k: tuple((nid, name) for _, nid, name in sorted(v))
                                for k, v in cnets.items()}
        # Docker does not forward outside queries for containers whose every
        # DNS-served network is --internal.
        self._may_forward = frozenset(
            cid for cid, nets in cnets.items()
            if any(not self.networks[nid].internal for _, nid, _ in nets)
        )

    def _lookup(self, container_id: str, asked: str, qtype: int) -> list[str] | None:
        """The addresses of ``qtype``'s family the container's resolver gives for ``asked``
        (case kept, no trailing dot), as libnetwork's sandbox ResolveName (dockerd 20.10):
        the whole name on every network, then ``<name>.<network>`` split at each dot from
        the right (network names may hold dots). For each, the container's link aliases
        first (matched case-sensitively, as dockerd), then the names on its networks
        (case-insensitive); the network part is matched case-sensitively. The first
        network (in the sandbox's order) that has the name answers, not all of them. A name
        known only without an IPv6 address answers AAAA with nothing (an empty NOERROR);
        None: not ours (forwarded)."""
        nets = self._container_nets.get(container_id, ())
        if not nets:
            return None
        names, links = self._names, self._linked.get(container_id, {})
        v6 = qtype == dnsmsg.TYPE_AAAA
        tries = [(asked, None)]
        i = len(asked)
        while (i := asked.rfind(".", 0, i)) > 0:
            tries.append((asked[:i], asked[i + 1:]))
        for req, in_net in tries:
            for alias_pass in (True, False):
                known = False
                for nid, net_name in nets:
                    if in_net is not None and in_net != net_name:
                        continue
                    ep_links = links.get(nid, {})
                    if alias_pass:
                        if req not in ep_links:
                            continue
                        entry = names.get(nid, {}).get(ep_links[req])
                    elif req in ep_links:
                        continue   # an alias of this endpoint: only the alias pass answers it
                    else:
                        entry = names.get(nid, {}).get(req.lower())
                    if entry is None:
                        continue
                    found = entry[1] if v6 else entry[0]
                    if found:
                        return list(found)
                    known = True
                if known:
                    return []
        return None

    def _reverse(self, container_id: str, ip: str) -> list[str] | None:
        rev = self._rev
        for nid, _ in self._container_nets.get(container_id, ()):
            if ip in rev.get(nid, {}):
                return rev[nid][ip]
        return None

    def _ensure_sandbox_dns(self, cid: str, netns_path: str, servers: list[str] | None,
                            undo: _Undo | None) -> None:
        sb = self._sandboxes.get(cid)
        if sb is not None and sb.listener is not None:
            return
        if sb is None:
            sb = _Sandbox(netns_path)
            self._sandboxes[cid] = sb
        sb.upstreams = [_parse_upstream(s) for s in servers] if servers else []
        resolver = dns.Resolver(
            lambda n, t: self._lookup(cid, n, t),
            lambda ip: self._reverse(cid, ip),
            lambda: (sb.upstreams or self._dns_upstreams) if cid in self._may_forward else [],
        )
        udp, tcp = dns.open_sockets(netns_path)
        listener = dns.Listener(resolver, udp, tcp)
        try:
            self.services.call(listener.start())
            dns.install_redirect(netns_path, listener.udp_port, listener.tcp_port, self.prefix,
                                 fresh=undo is not None)
        except BaseException:
            self.services.call(listener.close())
            self._sandboxes.pop(cid, None)
            raise
        sb.listener = listener
        if undo is not None:
            undo.push(lambda: self._drop_sandbox(cid))

    def _drop_sandbox(self, cid: str) -> None:
        sb = self._sandboxes.pop(cid, None)
        if sb is None:
            return
        if sb.listener is not None and self.services is not None:
            self.services.call(sb.listener.close())
        if br.netns_alive(sb.netns_path):
            try:
                dns.remove_redirect(sb.netns_path, self.prefix)
            except Exception:
                log.exception("removing DNS redirect in %s", sb.netns_path)

    # -- reconciliation -----------------------------------------------------------------
    def _readopt(self, ep: Endpoint) -> None:
        net = self.networks.get(ep.network_id)
        if net is None or not br.netns_alive(ep.netns_path):
            log.info("endpoint %s: namespace gone, releasing", ep.id[:12])
            self.endpoints.pop(ep.id, None)
            if ep.host_veth:
                br.delete_link(ep.host_veth)
            if net is not None and ep.ip:
                self.ipam.release_address(net.id, ep.ip)
            if net is not None and ep.ip6:
                self.ipam.release_address(net.id, ep.ip6)
            return
        if net.driver == "bridge":
            if not br.endpoint_present(ep.host_veth, ep.netns_path, ep.ip):
                br.delete_link(ep.host_veth)
                br.attach(net.bridge, ep.host_veth, ep.netns_path, ep.ip, net.prefixlen,
                          None if net.internal else net.gateway, ep.mac, net.mtu,
                          v6=self._v6(net, ep))
            elif br.link_master(ep.host_veth) != net.bridge:
                br.delete_link(ep.host_veth)
                br.attach(net.bridge, ep.host_veth, ep.netns_path, ep.ip, net.prefixlen,
                          None if net.internal else net.gateway, ep.mac, net.mtu,
                          v6=self._v6(net, ep))
            for i, b in enumerate(ep.ports):
                if (ep.id, i) in self._proxies:
                    continue
                try:
                    self._start_proxy(ep, i, b, bind_port(b.host_ip, b.host_port, b.proto))
                except Exception as e:
                    log.warning("endpoint %s: cannot re-publish %s: %s", ep.id[:12], b.key(), e)
        if net.has_dns:
            self._rebuild_dns_tables()
            try:
                self._ensure_sandbox_dns(ep.container_id, ep.netns_path, None, None)
            except Exception as e:
                log.warning("container %s: DNS not restored: %s", ep.container_id[:12], e)

    def _sweep_orphans(self) -> None:
        """Remove devices only we can have made that the state does not know:
        veths plugged into our bridges (a crash between attach and save) and
        bridges named ``<bridge_prefix>-*``."""
        ours = self._our_bridges()
        known = {e.host_veth for e in self.endpoints.values()}
        for name in br.list_links():
            if name.startswith("veth") and name not in known and br.link_master(name) in ours:
                log.info("removing orphan veth %s", name)
                br.delete_link(name)
            elif name.startswith(self.bridge_prefix + "-") and name not in ours:
                log.info("removing orphan bridge %s", name)
                br.delete_link(name)

    def _sync_firewall(self) -> None:
        nets = [n for n in self.networks.values() if n.driver == "bridge"]
        bridges = [BridgeFw(n.bridge, n.subnet, n.internal, n.icc, n.masquerade) for n in nets]
        ports = []
        for ep in self.endpoints.values():
            net = self.networks.get(ep.network_id)
            if net is None or net.driver != "bridge":
                continue
            for b in ep.ports:
                ports.append(PortFw(net.bridge, ep.ip, b.container_port, b.proto, b.host_ip, b.host_port))
        self.firewall.sync(bridges, ports)
        self.firewall6.sync([BridgeFw(n.bridge, n.subnet6, n.internal, n.icc, False)
                             for n in nets if n.has_v6], [])

    def _require_started(self) -> None:
        if not self.started:
            raise RuntimeError("NetworkManager.start() has not been called")

    # -- queries for the daemon ----------------------------------------------------------
    def container_endpoints(self, container_id: str) -> dict[str, dict]:
        """{network name: NetworkSettings.Networks entry} for a container."""
        with self._lock:
            out = {}
            for ep in self.endpoints.values():
                if ep.container_id == container_id:
                    net = self.networks[ep.network_id]
                    out[net.name] = ep.inspect(net)
            return out

    def container_settings(self, container_id: str) -> dict:
        """inspect's NetworkSettings for a container (top-level fields from the
        default `bridge` endpoint, as Docker fills them)."""
        with self._lock:
            nets = self.container_endpoints(container_id)
            ports: dict[str, list[dict[str, str]]] = {}
            for ep in self.endpoints.values():
                if ep.container_id == container_id:
                    for k, v in ep.ports_inspect().items():
                        ports.setdefault(k, []).extend(v)
            default = nets.get("bridge", {})
            return {
                "Bridge": "",
                "SandboxID": "",
                "SandboxKey": next((e.netns_path for e in self.endpoints.values()
                                    if e.container_id == container_id), ""),
                "HairpinMode": False,
                "LinkLocalIPv6Address": "",
                "LinkLocalIPv6PrefixLen": 0,
                "Ports": ports,
                "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None,
                "EndpointID": default.get("EndpointID", ""),
                "Gateway": default.get("Gateway", ""),
                "GlobalIPv6Address": default.get("GlobalIPv6Address", ""),
                "GlobalIPv6PrefixLen": default.get("GlobalIPv6PrefixLen", 0),
                "IPAddress": default.get("IPAddress", ""),
                "IPPrefixLen": default.get("IPPrefixLen", 0),
                "IPv6Gateway": default.get("IPv6Gateway", ""),
                "MacAddress": default.get("MacAddress", ""),
                "Networks": nets,
            }

    def container_files(
        self,
        container_id: str,
        hostname: str,
        domainname: str = "",
        extra_hosts: list[str] | None = None,
        dns: list[str] | None = None,
        dns_search: list[str] | None = None,
        dns_options: list[str] | None = None,
        host_resolv_conf: str = "/etc/resolv.conf",
        links: list[tuple[str, list[str]]] | None = None,
    ) -> dict[str, str]:
        """Contents of /etc/hosts, /etc/resolv.conf and /etc/hostname for a
        connected container (call after connect; write them in place into
        the files bind-mounted into the container). ``links``: /etc/hosts lines of
        legacy links on the default bridge, ``(ip, [names])``."""
        from dockyard.network import files

        with self._lock:
            eps = [e for e in self.endpoints.values() if e.container_id == container_id]
            nets = [self.networks[e.network_id] for e in eps]
            drivers = {n.driver for n in nets}
            if "host" in drivers:
                mode = "host"
            elif "none" in drivers or not nets:
                mode = "none"
            elif any(n.has_dns for n in nets):
                mode = "user"
            else:
                mode = "default"
            host_gw = next((n.gateway for n in nets if n.driver == "bridge"), "")
            ips = [a for e in eps for a in (e.ip, e.ip6) if a]
        host = files.read_host_resolv(host_resolv_conf)
        rc = files.resolv_conf(host, mode, dns, dns_search, dns_options)
        if mode == "host":
            import socket
            hostname = hostname or socket.gethostname()
        return {
            "hosts": files.hosts_file(hostname, ips, domainname, extra_hosts, host_gw,
                                      network_mode="host" if mode == "host" else
                                      "none" if mode == "none" else "bridge", links=links),
            "resolv.conf": rc.text,
            "hostname": files.hostname_file(hostname),
        }

    def network_of(self, ref: str) -> dict:
        """Plain facts about a network for the daemon: name, id, driver,
        gateway, subnet, internal, has_dns (user network: 127.0.0.11)."""
        with self._lock:
            n = self._find(ref)
            return {"Name": n.name, "Id": n.id, "Driver": n.driver, "Gateway": n.gateway,
                    "Subnet": n.subnet, "Internal": n.internal, "HasDNS": n.has_dns,
                    "Bridge": n.bridge}
