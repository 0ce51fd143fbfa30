"""Containers meet the network manager: endpoints at start, files, release at stop.

The container service calls three things (plain data in and out):
``etc_files`` before the runtime's create (bind sources must exist),
``attach`` between create and start (the namespace exists, the process waits),
``detach`` when the container has stopped. ``/etc/hosts`` and ``resolv.conf``
are rewritten in place after attach, since they are already bind-mounted.
"""

from __future__ import annotations

import asyncio
import os
import re

from dockyard import errors, statefiles


_MAC_RE = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")


def _write_in_place(path: str, text: str) -> None:
    # Same inode: the file is bind-mounted into the container already.
    with open(path, "w") as f:
        f.write(text)


def port_bindings(host: dict, config: dict) -> list[dict]:
    """HostConfig.PortBindings (+ -P for the image's EXPOSE) -> manager port dicts."""
    out = []
    bindings = dict(host.get("PortBindings") or {})
    if host.get("PublishAllPorts"):
        for port in (config.get("ExposedPorts") or {}):
            bindings.setdefault(port, [{"HostIp": "", "HostPort": ""}])
    for port, binds in bindings.items():
        num, _, proto = port.partition("/")
        try:
            cport = int(num)
        except ValueError:
            raise errors.InvalidParameter(f"invalid port specification: {port!r}") from None
        for b in binds or [{}]:
            hp = (b or {}).get("HostPort") or "0"
            try:
                hport = int(hp)
            except ValueError:
                raise errors.InvalidParameter(f"invalid host port: {hp}") from None
            out.append({"container_port": cport, "proto": proto or "tcp",
                        "host_ip": (b or {}).get("HostIp") or "", "host_port": hport})
    return out


class ContainerNetworking:
    def __init__(self, manager) -> None:
        self.m = manager

    @staticmethod
    def mode(c: dict) -> str:
        mode = c["HostConfig"].get("NetworkMode") or "default"
        return "bridge" if mode == "default" else mode

    def etc_files(self, c: dict, cdir: str) -> dict:
        files = {}
        for name in ("hosts", "resolv.conf"):
            path = os.path.join(cdir, name)
            if not os.path.exists(path):
                # 0644 whatever the umask: the container's non-root users read it
                os.close(statefiles.create(path, mode=0o644))
            files[f"/etc/{name}"] = path
        return files

    async def attach(self, c: dict, netns: str) -> dict:
        cid, host, cfg = c["Id"], c["HostConfig"], c["Config"]
        mode = self.mode(c)
        ports = port_bindings(host, cfg)
        endpoints = planned_endpoints(c)
        # the networks the container is connected to (its mode's first); all of them
        # disconnected while it was stopped: only its loopback
        nets = ([mode] if mode in endpoints else []) + [n for n in endpoints if n != mode]
        if not nets:
            nets = ["none"]
        from dockyard.containers.links import endpoint_links

        linked = {net: endpoint_links((endpoints.get(net) or {}).get("Links")) for net in nets}
        try:
            for i, net in enumerate(nets):
                epc = endpoints.get(net) or {}
                ipam = epc.get("IPAMConfig") or {}
                mac = epc.get("MacAddress") or (cfg.get("MacAddress") if i == 0 else None)
                await asyncio.to_thread(
                    self.m.connect, cid, netns, net, ip=ipam.get("IPv4Address") or None,
                    aliases=list(epc.get("Aliases") or []), ports=ports if i == 0 else (),
                    name=c["Name"], dns=host.get("Dns") or None, mac=mac or None,
                    ip6=ipam.get("IPv6Address") or None,
                    link_local_ips=list(ipam.get("LinkLocalIPs") or ()), links=linked[net])
            files = await asyncio.to_thread(
                self.m.container_files, cid, cfg.get("Hostname") or cid[:12],
                cfg.get("Domainname") or "", host.get("ExtraHosts"), host.get("Dns"),
                host.get("DnsSearch"), host.get("DnsOptions"), links=c.get("LinkHosts"))
        except BaseException:
            await asyncio.to_thread(self.m.release_all, cid)
            raise
        cdir = os.path.dirname(c["HostsPath"])
        _write_in_place(os.path.join(cdir, "hosts"), files["hosts"])
        _write_in_place(os.path.join(cdir, "resolv.conf"), files["resolv.conf"])
        return with_requested(await asyncio.to_thread(self.m.container_settings, cid), endpoints)

    def planned_settings(self, c: dict) -> dict:
        """NetworkSettings of a container that is not running: the networks it will be
        connected to, as dockerd shows them (no address yet)."""
        from dockyard.containers.records import _empty_network_settings

        out = _empty_network_settings()
        nets = {}
        for name, epc in planned_endpoints(c).items():
            nid = ""   # dockerd's until the endpoint exists
            epc = epc or {}
            nets[name] = {
                "IPAMConfig": epc.get("IPAMConfig"), "Links": epc.get("Links"),
                "Aliases": epc.get("Aliases"), "MacAddress": epc.get("MacAddress") or "",
                "DriverOpts": epc.get("DriverOpts"), "NetworkID": nid, "EndpointID": "",
                "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "DNSNames": epc.get("DNSNames")}
        out["Networks"] = nets
        return out

    async def detach(self, c: dict) -> None:
        await asyncio.to_thread(self.m.release_all, c["Id"])

    def validate(self, host: dict, config: dict, endpoints: dict | None = None) -> None:
        """At create: the network must exist and ports must parse (Docker answers 404/400)."""
        # An unknown network is reported at start, as dockerd does: a 404 at create
        # would make the CLI think the image is missing and try to pull it.
        port_bindings(host, config)


def planned_endpoints(c: dict) -> dict:
    """{network name: EndpointSettings asked for} of the networks the container is (to
    be) connected to. Records from before ``NetworksPlanned`` had their mode's network
    implied."""
    eps = {("bridge" if k == "default" else k): v for k, v in
           (((c.get("NetworkingConfig") or {}).get("EndpointsConfig")) or {}).items()}
    mode = ContainerNetworking.mode(c)
    if not c.get("NetworksPlanned") and mode not in eps and not mode.startswith("container:"):
        eps = {mode: {}, **eps}
    return eps


def check_endpoint(endpoint: dict | None) -> None:
    """EndpointSettings this daemon does not implement are refused, not dropped: the
    bridge driver takes no per-endpoint DriverOpts."""
    opts = (endpoint or {}).get("DriverOpts")
    if opts:
        raise errors.InvalidParameter(f"endpoint DriverOpts {opts!r}: Dockyard does not "
                                      f"support them (the bridge driver takes none)")


def plan_networks(c: dict) -> None:
    """At create: the mode's network is one of the container's endpoints from the start
    (dockerd shows it, and it can be disconnected and connected before the start)."""
    eps = planned_endpoints(c)
    for ep in eps.values():
        check_endpoint(ep)
    if ContainerNetworking.mode(c).startswith("container:"):
        eps = {}
    c["NetworkingConfig"] = {**(c.get("NetworkingConfig") or {}), "EndpointsConfig": eps}
    c["NetworksPlanned"] = True


def with_requested(settings: dict, endpoints: dict) -> dict:
    """The endpoint fields dockerd echoes as they were asked for (IPAMConfig, DriverOpts:
    ``{}`` stays ``{}``; Links as given)."""
    for name, ep in (settings.get("Networks") or {}).items():
        asked = endpoints.get(name) or {}
        for k in ("IPAMConfig", "DriverOpts", "Links"):
            if k in asked and asked[k] is not None:
                ep[k] = asked[k]
    return settings


def network_events(svc, c: dict, action: str) -> None:
    """dockerd's ``network connect`` / ``disconnect`` events of a container's start and stop."""
    for name, ep in (c["NetworkSettings"].get("Networks") or {}).items():
        if ep.get("NetworkID"):
            svc.emit("network", action, ep["NetworkID"], {"container": c["Id"], "name": name,
                                                          "type": "bridge" if name not in (
                                                              "host", "none") else
                                                          "null" if name == "none" else "host"})


async def connect_container(svc, ref: str, network: str, endpoint: dict) -> None:
    """``docker network connect``: now if running, else at the next start."""
    check_endpoint(endpoint)
    c = svc.get(ref)
    net = svc.network
    info = await asyncio.to_thread(net.m.network_of, network)
    name = info["Name"]
    mode = ContainerNetworking.mode(c)
    if mode in ("host", "none") or mode.startswith("container:"):
        raise errors.Forbidden(f"container sharing network namespace with another container or "
                               f"host cannot be connected to any other network")
    mac = endpoint.get("MacAddress") or ""
    if mac and not _MAC_RE.match(mac):
        raise errors.InvalidParameter(f"invalid MAC address: {mac}")
    eps = planned_endpoints(c)
    from dockyard.containers.links import endpoint_links

    linked = endpoint_links(endpoint.get("Links"))
    if c["State"]["Running"]:
        ipam = endpoint.get("IPAMConfig") or {}
        await asyncio.to_thread(net.m.connect, c["Id"], f"/proc/{c['State']['Pid']}/ns/net", name,
                                ip=ipam.get("IPv4Address") or None,
                                aliases=list(endpoint.get("Aliases") or []),
                                name=c["Name"], dns=c["HostConfig"].get("Dns") or None,
                                mac=mac or None, ip6=ipam.get("IPv6Address") or None,
                                link_local_ips=list(ipam.get("LinkLocalIPs") or ()),
                                links=linked)
    elif name in eps:
        raise errors.Forbidden(f"endpoint with name {c['Name'].lstrip('/')} already exists in "
                               f"network {name}")
    eps[name] = endpoint or {}
    c["NetworkingConfig"] = {**(c.get("NetworkingConfig") or {}), "EndpointsConfig": eps}
    c["NetworksPlanned"] = True
    if c["State"]["Running"]:
        c["NetworkSettings"] = with_requested(
            await asyncio.to_thread(net.m.container_settings, c["Id"]), eps)
    else:
        c["NetworkSettings"] = await asyncio.to_thread(net.planned_settings, c)
    svc._save(c)
    svc.emit("network", "connect", info["Id"], {"container": c["Id"], "name": name,
                                                "type": info["Driver"]})


async def disconnect_container(svc, ref: str, network: str, force: bool = False) -> None:
    c = svc.get(ref)
    net = svc.network
    info = await asyncio.to_thread(net.m.network_of, network)
    name = info["Name"]
    eps = planned_endpoints(c)
    if c["State"]["Running"]:
        if name not in await asyncio.to_thread(net.m.container_endpoints, c["Id"]):
            # forced or not, dockerd's words (Debian's 20.10: 500, the CLI shows the text)
            raise errors.DockyardError(
                f"container {c['Id']} is not connected to network {name}")
        await asyncio.to_thread(net.m.disconnect, c["Id"], name, force)
    elif name not in eps:
        raise errors.Forbidden(f"container {c['Id']} is not connected to network {name}")
    eps.pop(name, None)
    # NetworkMode stays (dockerd's too): connecting it again is allowed
    c["NetworkingConfig"] = {**(c.get("NetworkingConfig") or {}), "EndpointsConfig": eps}
    c["NetworksPlanned"] = True
    if c["State"]["Running"]:
        c["NetworkSettings"] = with_requested(
            await asyncio.to_thread(net.m.container_settings, c["Id"]), eps)
    else:
        c["NetworkSettings"] = await asyncio.to_thread(net.planned_settings, c)
    svc._save(c)
    svc.emit("network", "disconnect", info["Id"], {"container": c["Id"], "name": name,
                                                   "type": info["Driver"]})
