"""`dockyard volume create|ls|inspect|rm|prune`, as Docker's CLI prints them."""

from __future__ import annotations

import json
import sys

from dockyard.cli.docker import CommandError
from dockyard.cli.format import Context, format_rows
from dockyard.cli.parser import CommandParser, UsageError


def _filters(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq:
            raise UsageError("bad format of filter (expected name=value)", 125)
        out.setdefault(k, []).append(val)
    return out


def _opts(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not k:
            raise UsageError(f'invalid argument "{v}" for "{what}" flag', 125)
        out[k] = val
    return out


class VolumeRow(Context):
    FIELDS = ("Driver", "Name", "Mountpoint", "Scope", "Labels", "Links", "Size")
    HEADER = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
              "Scope": "SCOPE", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE"}

    def __init__(self, v: dict) -> None:
        self.v = v
        self.Driver, self.Name = v.get("Driver", ""), v.get("Name", "")
        self.Mountpoint, self.Scope = v.get("Mountpoint", ""), v.get("Scope", "")

    @property
    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted((self.v.get("Labels") or {}).items()))

    @property
    def Links(self) -> str:
        u = self.v.get("UsageData")
        return "N/A" if not u else str(u.get("RefCount", 0))

    @property
    def Size(self) -> str:
        from dockyard.cli.units import human_size

        u = self.v.get("UsageData")
        return "N/A" if not u or u.get("Size", -1) < 0 else human_size(u["Size"])

    def to_json(self) -> dict:
        return {f: getattr(self, f) for f in self.FIELDS}


def cmd_volume_create(g, argv: list[str]) -> int:
    p = CommandParser("volume create", "[OPTIONS] [VOLUME]", "Create a volume", nargs=(0, 1))
    p.add_argument("-d", "--driver", default="local", help="Specify volume driver name")
    p.add_argument("--label", action="append", default=[], help="Set metadata for a volume")
    p.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    p.add_argument("--name", help="Specify volume name")
    o = p.parse(argv)
    o.name_arg = o.args[0] if o.args else None
    if o.name and o.name_arg and o.name != o.name_arg:
        raise UsageError("conflicting options: cannot specify a volume-name through both "
                         "--name and as a positional arg", 125)
    body = {"Name": o.name or o.name_arg or "", "Driver": o.driver,
            "DriverOpts": _opts(o.opt, "--opt"), "Labels": _opts(o.label, "--label")}
    v = json.loads(g.client().request("POST", "/volumes/create", json_body=body).read())
    sys.stdout.write(v["Name"] + "\n")
    return 0


def cmd_volume_ls(g, argv: list[str]) -> int:
    p = CommandParser("volume ls", "[OPTIONS]", "List volumes")
    p.add_argument("-f", "--filter", action="append", default=[], help="Provide filter values")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_flag("-q", "--quiet", help="Only display volume names")
    o = p.parse(argv)
    from dockyard.client.api import _filters as encode

    params = {"filters": encode(_filters(o.filter))} if o.filter else None
    data = g.client().get_json("/volumes", params)
    for w in data.get("Warnings") or []:
        sys.stderr.write(w + "\n")
    vols = sorted(data.get("Volumes") or [], key=lambda v: v["Name"])
    fmt = o.format or "table"
    if fmt == "table":
        fmt = "{{.Name}}" if o.quiet else "table {{.Driver}}\t{{.Name}}"
    sys.stdout.write(format_rows(fmt, [VolumeRow(v) for v in vols], VolumeRow.HEADER))
    return 0


def cmd_volume_inspect(g, argv: list[str]) -> int:
    p = CommandParser("volume inspect", "[OPTIONS] VOLUME [VOLUME...]",
                      "Display detailed information on one or more volumes", nargs=(1, None))
    p.add_argument("-f", "--format", help="Format output using a custom template")
    o = p.parse(argv)
    o.names = o.args
    from dockyard.cli.format import inspect_each

    return inspect_each(g.client(), o.names, "/volumes/{}", o.format, "Error: ")


def cmd_volume_rm(g, argv: list[str]) -> int:
    p = CommandParser("volume rm", "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes",
                      nargs=(1, None))
    p.add_flag("-f", "--force", help="Force the removal of one or more volumes")
    o = p.parse(argv)
    o.names = o.args
    from dockyard import errors

    c = g.client()
    failed = []
    for n in o.names:
        try:
            c.request("DELETE", f"/volumes/{n}", {"force": "1"} if o.force else None).read()
            sys.stdout.write(n + "\n")
        except errors.DockyardError as e:
            failed.append(str(e))
    if failed:
        raise CommandError("\n".join(failed), 1)
    return 0


def cmd_volume_prune(g, argv: list[str]) -> int:
    p = CommandParser("volume prune", "[OPTIONS]", "Remove unused local volumes")
    p.add_flag("-a", "--all", help="Remove all unused volumes, not just anonymous ones")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values")
    p.add_flag("-f", "--force", help="Do not prompt for confirmation")
    o = p.parse(argv)
    warning = ("WARNING! This will remove all local volumes not used by at least one container."
               if o.all else "WARNING! This will remove anonymous local volumes not used by at "
               "least one container.")
    if not o.force:
        sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if (sys.stdin.readline().strip().lower() if sys.stdin else "") not in ("y", "yes"):
            return 0
    from dockyard.cli.units import human_size
    from dockyard.client.api import _filters as encode

    f = _filters(o.filter)
    if o.all:
        f["all"] = ["true"]
    rep = json.loads(g.client().request("POST", "/volumes/prune",
                                        {"filters": encode(f)} if f else None).read() or b"{}")
    names = rep.get("VolumesDeleted") or []
    if names:
        sys.stdout.write("Deleted Volumes:\n" + "".join(n + "\n" for n in names) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(int(rep.get('SpaceReclaimed') or 0))}\n")
    return 0
