"""`dockyard network create|ls|inspect|rm|prune|connect|disconnect`, as Docker's CLI."""

from __future__ import annotations

import json
import sys

from dockyard.cli.docker import CommandError
from dockyard.cli.format import Context, format_rows
from dockyard.cli.parser import CommandParser, UsageError


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        k, _, val = v.partition("=")
        if not k:
            raise UsageError(f'invalid argument "{v}" for "{what}" flag', 125)
        out[k] = val
    return out


def _filters(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq:
            raise UsageError("bad format of filter (expected name=value)", 125)
        out.setdefault(k, []).append(val)
    return out


class NetworkRow(Context):
    FIELDS = ("ID", "Name", "Driver", "Scope", "IPv4", "IPv6", "Internal", "Labels", "CreatedAt")
    HEADER = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
              "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
              "CreatedAt": "CREATED AT"}

    def __init__(self, n: dict, trunc: bool = True) -> None:
        self.n = n
        self.ID = n.get("Id", "")[:12] if trunc else n.get("Id", "")
        self.Name, self.Driver, self.Scope = n.get("Name", ""), n.get("Driver", ""), n.get("Scope", "")

    @property
    def IPv4(self) -> str:
        return "true"

    @property
    def IPv6(self) -> str:
        return str(bool(self.n.get("EnableIPv6"))).lower()

    @property
    def Internal(self) -> str:
        return str(bool(self.n.get("Internal"))).lower()

    @property
    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted((self.n.get("Labels") or {}).items()))

    @property
    def CreatedAt(self) -> str:
        return self.n.get("Created", "")

    def Label(self, name: str) -> str:
        return (self.n.get("Labels") or {}).get(name, "")


def cmd_network_create(g, argv: list[str]) -> int:
    p = CommandParser("network create", "[OPTIONS] NETWORK", "Create a network", nargs=(1, 1))
    p.add_argument("-d", "--driver", default="bridge", help="Driver to manage the Network")
    p.add_argument("--subnet", action="append", default=[],
                   help="Subnet in CIDR format that represents a network segment")
    p.add_argument("--gateway", action="append", default=[],
                   help="IPv4 or IPv6 Gateway for the master subnet")
    p.add_argument("--ip-range", action="append", default=[],
                   help="Allocate container ip from a sub-range")
    p.add_argument("--aux-address", action="append", default=[],
                   help="Auxiliary IPv4 or IPv6 addresses used by Network driver")
    p.add_argument("--ipam-driver", default="default", help="IP Address Management Driver")
    p.add_argument("--ipam-opt", action="append", default=[], help="Set IPAM driver specific options")
    p.add_flag("--internal", help="Restrict external access to the network")
    p.add_flag("--attachable", help="Enable manual container attachment")
    p.add_flag("--ipv6", help="Enable or disable IPv6 networking")
    p.add_argument("--label", action="append", default=[], help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    p.add_argument("--scope", help="Control the network's scope")
    o = p.parse(argv)
    if len(o.gateway) > len(o.subnet) or len(o.ip_range) > len(o.subnet):
        raise UsageError("every ip-range or gateway must have a corresponding subnet", 1)
    configs = []
    for i, subnet in enumerate(o.subnet):
        cfg = {"Subnet": subnet}
        if i < len(o.ip_range):
            cfg["IPRange"] = o.ip_range[i]
        if i < len(o.gateway):
            cfg["Gateway"] = o.gateway[i]
        if o.aux_address:
            cfg["AuxiliaryAddresses"] = _pairs(o.aux_address, "--aux-address")
        configs.append(cfg)
    body = {"Name": o.args[0], "Driver": o.driver, "Internal": o.internal,
            "Attachable": o.attachable, "EnableIPv6": o.ipv6,
            "Options": _pairs(o.opt, "--opt"), "Labels": _pairs(o.label, "--label"),
            "IPAM": {"Driver": o.ipam_driver, "Config": configs,
                     "Options": _pairs(o.ipam_opt, "--ipam-opt")},
            "CheckDuplicate": True}
    if o.scope:
        body["Scope"] = o.scope
    out = json.loads(g.client().request("POST", "/networks/create", json_body=body).read())
    for w in [out.get("Warning")] if out.get("Warning") else []:
        sys.stderr.write(f"WARNING: {w}\n")
    sys.stdout.write(out["Id"] + "\n")
    return 0


def cmd_network_ls(g, argv: list[str]) -> int:
    p = CommandParser("network ls", "[OPTIONS]", "List networks")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help='Provide filter values (e.g. "driver=bridge")')
    p.add_argument("--format", help="Format output using a custom template")
    p.add_flag("--no-trunc", help="Do not truncate the output")
    p.add_flag("-q", "--quiet", help="Only display network IDs")
    o = p.parse(argv)
    from dockyard.client.api import _filters as encode

    params = {"filters": encode(_filters(o.filter))} if o.filter else None
    nets = sorted(g.client().get_json("/networks", params) or [], key=lambda n: n.get("Name", ""))
    fmt = o.format or "table"
    if fmt == "table":
        fmt = "{{.ID}}" if o.quiet else "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    rows = [NetworkRow(n, trunc=not o.no_trunc) for n in nets]
    sys.stdout.write(format_rows(fmt, rows, NetworkRow.HEADER))
    return 0


def cmd_network_inspect(g, argv: list[str]) -> int:
    p = CommandParser("network inspect", "[OPTIONS] NETWORK [NETWORK...]",
                      "Display detailed information on one or more networks", nargs=(1, None))
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_flag("-v", "--verbose", help="Verbose output for diagnostics")
    o = p.parse(argv)
    from dockyard.cli.format import inspect_each

    return inspect_each(g.client(), o.args, "/networks/{}", o.format, "Error response from daemon: ")


def cmd_network_rm(g, argv: list[str]) -> int:
    p = CommandParser("network rm", "NETWORK [NETWORK...]", "Remove one or more networks",
                      nargs=(1, None))
    p.add_flag("-f", "--force", help="Do not error if the network does not exist")
    o = p.parse(argv)
    from dockyard import errors

    c = g.client()
    failed = []
    for n in o.args:
        try:
            c.request("DELETE", f"/networks/{n}").read()
            sys.stdout.write(n + "\n")
        except errors.NotFound as e:
            if not o.force:
                failed.append(f"Error response from daemon: {e}")
        except errors.DockyardError as e:
            failed.append(f"Error response from daemon: {e}")
    if failed:
        # docker 28 prints each error, then its StatusError without a message
        raise CommandError("\n".join(failed) + "\nexit status 1", 1)
    return 0


def cmd_network_prune(g, argv: list[str]) -> int:
    p = CommandParser("network prune", "[OPTIONS]", "Remove all unused networks")
    p.add_argument("--filter", action="append", default=[],
                   help='Provide filter values (e.g. "until=<timestamp>")')
    p.add_flag("-f", "--force", help="Do not prompt for confirmation")
    o = p.parse(argv)
    if not o.force:
        sys.stdout.write("WARNING! This will remove all custom networks not used by at least "
                         "one container.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if (sys.stdin.readline().strip().lower() if sys.stdin else "") not in ("y", "yes"):
            return 0
    from dockyard.client.api import _filters as encode

    f = _filters(o.filter)
    rep = json.loads(g.client().request("POST", "/networks/prune",
                                        {"filters": encode(f)} if f else None).read() or b"{}")
    names = rep.get("NetworksDeleted") or []
    if names:
        sys.stdout.write("Deleted Networks:\n" + "".join(n + "\n" for n in names) + "\n")
    return 0


def cmd_network_connect(g, argv: list[str]) -> int:
    p = CommandParser("network connect", "[OPTIONS] NETWORK CONTAINER",
                      "Connect a container to a network", nargs=(2, 2))
    p.add_argument("--alias", action="append", default=[], help="Add network-scoped alias for the container")
    p.add_argument("--driver-opt", action="append", default=[], help="driver options for the network")
    p.add_argument("--ip", help="IPv4 address (e.g., \"172.30.100.104\")")
    p.add_argument("--ip6", help="IPv6 address (e.g., \"2001:db8::33\")")
    p.add_argument("--link", action="append", default=[], help="Add link to another container")
    p.add_argument("--link-local-ip", action="append", default=[],
                   help="Add a link-local address for the container")
    o = p.parse(argv)
    net, container = o.args
    epc: dict = {}
    ipam = {}
    if o.ip:
        ipam["IPv4Address"] = o.ip
    if o.ip6:
        ipam["IPv6Address"] = o.ip6
    if o.link_local_ip:
        ipam["LinkLocalIPs"] = o.link_local_ip
    if ipam:
        epc["IPAMConfig"] = ipam
    if o.alias:
        epc["Aliases"] = o.alias
    if o.link:
        epc["Links"] = o.link
    if o.driver_opt:
        epc["DriverOpts"] = _pairs(o.driver_opt, "--driver-opt")
    g.client().request("POST", f"/networks/{net}/connect",
                       json_body={"Container": container, "EndpointConfig": epc}).read()
    return 0


def cmd_network_disconnect(g, argv: list[str]) -> int:
    p = CommandParser("network disconnect", "[OPTIONS] NETWORK CONTAINER",
                      "Disconnect a container from a network", nargs=(2, 2))
    p.add_flag("-f", "--force", help="Force the container to disconnect from a network")
    o = p.parse(argv)
    net, container = o.args
    g.client().request("POST", f"/networks/{net}/disconnect",
                       json_body={"Container": container, "Force": o.force}).read()
    return 0
