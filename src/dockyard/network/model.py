"""Networks and endpoints as plain data, with Docker's inspect shapes.

These are what the manager persists (``to_dict``/``from_dict``) and what the
apply layers (bridge, firewall, DNS) are planned from.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any

DRIVERS = ("bridge", "host", "none")
PROTOS = ("tcp", "udp")


def new_id() -> str:
    return secrets.token_hex(32)


def mac_from_ip(ip: str) -> str:
    """Docker's classic MAC: 02:42 followed by the four IPv4 bytes."""
    b = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


@dataclass
class PortBinding:
    """One published port: host (ip, port) -> container port/proto."""

    container_port: int
    proto: str = "tcp"
    host_ip: str = ""  # "" means all addresses (0.0.0.0)
    host_port: int = 0  # 0 means "pick one from the ephemeral range"

    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PortBinding":
        return cls(
            container_port=int(d["container_port"]),
            proto=d.get("proto", "tcp"),
            host_ip=d.get("host_ip", ""),
            host_port=int(d.get("host_port", 0)),
        )


def parse_port_spec(spec: str) -> PortBinding:
    """``-p`` syntax: [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/PROTO]."""
    from dockyard.errors import InvalidParameter

    text = spec.strip()
    proto = "tcp"
    if "/" in text:
        text, proto = text.rsplit("/", 1)
        proto = proto.lower()
    if proto not in PROTOS:
        raise InvalidParameter(f"invalid proto: {proto}")
    host_ip = ""
    if text.startswith("["):
        end = text.find("]")
        host_ip, text = text[1:end], text[end + 2 :]
    parts = text.split(":")
    if len(parts) == 1:
        hp, cp = "", parts[0]
    elif len(parts) == 2:
        hp, cp = parts
    elif len(parts) == 3 and not host_ip:
        host_ip, hp, cp = parts
    else:
        raise InvalidParameter(f"invalid port specification: {spec!r}")

    def port(v: str, what: str) -> int:
        try:
            n = int(v)
        except ValueError:
            raise InvalidParameter(f"invalid {what}port: {v}") from None
        if not 0 < n < 65536:
            raise InvalidParameter(f"invalid {what}port: {v}")
        return n

    if host_ip:
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise InvalidParameter(f"invalid IP address: {host_ip}") from None
    return PortBinding(
        container_port=port(cp, "container"),
        proto=proto,
        host_ip=host_ip,
        host_port=port(hp, "host ") if hp else 0,
    )


@dataclass
class Network:
    name: str
    id: str
    driver: str = "bridge"
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    bridge: str = ""  # device name, bridge driver only
    options: dict[str, str] = field(default_factory=dict)
    created: str = ""
    default: bool = False  # the predefined `bridge` network
    user_subnet: bool = False  # subnet given by the user (IPAM Config shows it either way)
    enable_ipv6: bool = False
    subnet6: str = ""  # IPv6 space (always the user's; used only with enable_ipv6, as dockerd)
    gateway6: str = ""
    ip_range6: str = ""
    # IPAM Config shows a Gateway the daemon chose or the user gave, not one it derived
    # from a user's subnet (dockerd's)
    show_gateway: bool = True
    show_gateway6: bool = True
    # --attachable: only shown (it matters to swarm services, which this daemon has not)
    attachable: bool = False

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.subnet).prefixlen if self.subnet else 0

    @property
    def has_v6(self) -> bool:
        """Endpoints get IPv6 addresses (an --ipv6 network with its v6 subnet)."""
        return self.enable_ipv6 and bool(self.subnet6)

    @property
    def prefixlen6(self) -> int:
        return ipaddress.IPv6Network(self.subnet6).prefixlen if self.subnet6 else 0

    def _opt_bool(self, key: str, default: bool = True) -> bool:
        v = self.options.get(key)
        return default if v is None else str(v).lower() in ("1", "true", "yes")

    @property
    def icc(self) -> bool:
        return self._opt_bool("com.docker.network.bridge.enable_icc")

    @property
    def masquerade(self) -> bool:
        return self._opt_bool("com.docker.network.bridge.enable_ip_masquerade")

    @property
    def mtu(self) -> int:
        return int(self.options.get("com.docker.network.driver.mtu") or 1500)

    @property
    def host_binding_ipv4(self) -> str:
        """Default host address for published ports (``-p 8080:80``)."""
        v = self.options.get("com.docker.network.bridge.host_binding_ipv4", "")
        return "" if v == "0.0.0.0" else v

    @property
    def has_dns(self) -> bool:
        """Docker's embedded DNS serves user-defined bridge networks only."""
        return self.driver == "bridge" and not self.default

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Network":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def inspect(self, endpoints: list["Endpoint"]) -> dict[str, Any]:
        ipam_cfg: list[dict] = []
        if self.driver == "bridge" and self.subnet:
            c = {"Subnet": self.subnet}
            if self.show_gateway:
                c["Gateway"] = self.gateway
            if self.ip_range:
                c["IPRange"] = self.ip_range
            ipam_cfg.append(c)
        if self.driver == "bridge" and self.subnet6:
            c = {"Subnet": self.subnet6}
            if self.show_gateway6:
                c["Gateway"] = self.gateway6
            if self.ip_range6:
                c["IPRange"] = self.ip_range6
            ipam_cfg.append(c)
        return {
            "Name": self.name,
            "Id": self.id,
            "Created": self.created,
            "Scope": "local",
            "Driver": "null" if self.driver == "none" else self.driver,  # Docker's name for it
            "EnableIPv6": self.enable_ipv6,
            "IPAM": {"Driver": "default", "Options": {} if not self.default else None,
                     "Config": ipam_cfg},
            "Internal": self.internal,
            "Attachable": self.attachable,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": {
                ep.container_id: {
                    "Name": ep.container_name,
                    "EndpointID": ep.id,
                    "MacAddress": ep.mac,
                    "IPv4Address": f"{ep.ip}/{self.prefixlen}" if ep.ip else "",
                    "IPv6Address": f"{ep.ip6}/{self.prefixlen6}" if ep.ip6 else "",
                }
                for ep in endpoints
            },
            "Options": dict(self.options),
            "Labels": dict(self.labels),
        }


@dataclass
class Endpoint:
    id: str
    network_id: str
    container_id: str
    container_name: str = ""
    netns_path: str = ""
    ip: str = ""
    mac: str = ""
    host_veth: str = ""
    aliases: list[str] = field(default_factory=list)
    requested_ip: str = ""  # --ip, shown as IPAMConfig
    ip6: str = ""  # on an --ipv6 network
    requested_ip6: str = ""  # --ip6
    link_local_ips: list[str] = field(default_factory=list)  # --link-local-ip
    ports: list[PortBinding] = field(default_factory=list)
    # legacy links on a user network: alias -> target name, resolved through this
    # network's names for this container only (dockerd's CreateOptionAlias)
    links: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ports"] = [p.to_dict() for p in self.ports]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Endpoint":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["ports"] = [PortBinding.from_dict(p) for p in d.get("ports", [])]
        return cls(**d)

    def dns_names(self) -> list[str]:
        names = []
        if self.container_name:
            names.append(self.container_name.lstrip("/"))
        names.extend(a for a in self.aliases if a not in names)
        short = self.container_id[:12]
        if short and short not in names:
            names.append(short)
        return names

    def inspect(self, net: Network) -> dict[str, Any]:
        """Shaped as inspect's NetworkSettings.Networks[name]."""
        bridged = net.driver == "bridge"
        ipam = {}
        if self.requested_ip:
            ipam["IPv4Address"] = self.requested_ip
        if self.requested_ip6:
            ipam["IPv6Address"] = self.requested_ip6
        if self.link_local_ips:
            ipam["LinkLocalIPs"] = list(self.link_local_ips)
        return {
            "IPAMConfig": ipam or None,
            "Links": None,
            "Aliases": list(self.aliases) or None,
            "MacAddress": self.mac,
            "DriverOpts": None,
            "NetworkID": net.id,
            "EndpointID": self.id,
            "Gateway": net.gateway if bridged else "",
            "IPAddress": self.ip,
            "IPPrefixLen": net.prefixlen if bridged and self.ip else 0,
            "IPv6Gateway": net.gateway6 if bridged and self.ip6 else "",
            "GlobalIPv6Address": self.ip6,
            "GlobalIPv6PrefixLen": net.prefixlen6 if self.ip6 else 0,
            "DNSNames": self.dns_names() if net.has_dns else None,
        }

    def ports_inspect(self) -> dict[str, list[dict[str, str]]]:
        """NetworkSettings.Ports shape: {"80/tcp": [{"HostIp","HostPort"}]}."""
        out: dict[str, list[dict[str, str]]] = {}
        for p in self.ports:
            out.setdefault(p.key(), []).append(
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)}
            )
        return out
