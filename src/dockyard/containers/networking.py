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

from dockyard import errors, statefiles


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
        endpoints = {("bridge" if k == "default" else k): v for k, v in
                     (((c.get("NetworkingConfig") or {}).get("EndpointsConfig")) or {}).items()}
        nets = [mode] + [n for n in endpoints if n != mode]
        try:
            for i, net in enumerate(nets):
                epc = endpoints.get(net) or {}
                ip = ((epc.get("IPAMConfig") or {}).get("IPv4Address")) or None
                await asyncio.to_thread(
                    self.m.connect, cid, netns, net, ip=ip,
                    aliases=list(epc.get("Aliases") or []), ports=ports if i == 0 else (),
                    name=c["Name"], dns=host.get("Dns") or None)
            files = await asyncio.to_thread(
                self.m.container_files, cid, cfg.get("Hostname") or cid[:12],
                cfg.get("Domainname") or "", host.get("ExtraHosts"), host.get("Dns"),
                host.get("DnsSearch"), host.get("DnsOptions"))
        except BaseException:
            await asyncio.to_thread(self.m.release_all, cid)
            raise
        cdir = os.path.dirname(c["HostsPath"])
        _write_in_place(os.path.join(cdir, "hosts"), files["hosts"])
        _write_in_place(os.path.join(cdir, "resolv.conf"), files["resolv.conf"])
        return await asyncio.to_thread(self.m.container_settings, cid)

    async def detach(self, c: dict) -> None:
        await asyncio.to_thread(self.m.release_all, c["Id"])

    def validate(self, host: dict, config: dict, endpoints: dict | None = None) -> None:
        """At create: the network must exist and ports must parse (Docker answers 404/400)."""
        # An unknown network is reported at start, as dockerd does: a 404 at create
        # would make the CLI think the image is missing and try to pull it.
        port_bindings(host, config)


async def connect_container(svc, ref: str, network: str, endpoint: dict) -> None:
    """``docker network connect``: now if running, else at the next start."""
    c = svc.get(ref)
    net = svc.network
    info = await asyncio.to_thread(net.m.network_of, network)
    name = info["Name"]
    mode = ContainerNetworking.mode(c)
    if mode in ("host", "none") or mode.startswith("container:"):
        raise errors.Forbidden(f"container sharing network namespace with another container or "
                               f"host cannot be connected to any other network")
    eps = c.setdefault("NetworkingConfig", {}).setdefault("EndpointsConfig", {})
    if c["State"]["Running"]:
        ip = ((endpoint.get("IPAMConfig") or {}).get("IPv4Address")) or None
        await asyncio.to_thread(net.m.connect, c["Id"], f"/proc/{c['State']['Pid']}/ns/net", name,
                                ip=ip, aliases=list(endpoint.get("Aliases") or []),
                                name=c["Name"], dns=c["HostConfig"].get("Dns") or None)
        c["NetworkSettings"] = await asyncio.to_thread(net.m.container_settings, c["Id"])
    elif name in eps or name == mode:
        raise errors.Forbidden(f"endpoint with name {c['Name'].lstrip('/')} already exists in "
                               f"network {name}")
    eps[name] = endpoint or {}
    svc._save(c)
    svc.emit("network", "connect", info["Id"], {"container": c["Id"], "name": name,
                                                "type": info["Driver"]})


async def disconnect_container(svc, ref: str, network: str, force: bool = False) -> None:
    c = svc.get(ref)
    net = svc.network
    info = await asyncio.to_thread(net.m.network_of, network)
    name = info["Name"]
    eps = (c.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if c["State"]["Running"]:
        await asyncio.to_thread(net.m.disconnect, c["Id"], name, force)
        c["NetworkSettings"] = await asyncio.to_thread(net.m.container_settings, c["Id"])
    elif name not in eps and name != ContainerNetworking.mode(c):
        raise errors.Forbidden(f"container {c['Id']} is not connected to network {name}")
    eps.pop(name, None)
    if ContainerNetworking.mode(c) == name:
        c["HostConfig"]["NetworkMode"] = next(iter(eps), "none")
    svc._save(c)
    svc.emit("network", "disconnect", info["Id"], {"container": c["Id"], "name": name,
                                                   "type": info["Driver"]})
