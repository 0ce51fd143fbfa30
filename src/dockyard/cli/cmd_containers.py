"""Container commands that act on existing containers: ps, stop, kill, restart, rm, wait,
logs, top, pause, unpause, inspect, rename, update, diff, commit, export, prune, stats, port.

(create, run, start, attach and exec live in cmd_run.)
"""

from __future__ import annotations

import json
import os
import re
import sys

from dockyard import errors
from dockyard.cli.cmd_run import require
from dockyard.cli.docker import CommandError
from dockyard.cli.format import Context, format_rows
from dockyard.cli.parser import CommandParser
from dockyard.cli.units import bytes_size, ellipsis, human_size, since, truncate_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


def _alias(fn: Callable, command: str) -> Callable:
    def run(g, argv: list[str]) -> int:
        return fn(g, argv, command)
    run.__name__ = fn.__name__ + "_alias"
    return run


def _unreachable(e: Exception) -> bool:
    from dockyard.client import DaemonUnreachable

    return isinstance(e, DaemonUnreachable)


def _each(names: list[str], op: Callable[[str], Any], parallel: bool = False) -> int:
    """Apply op to each name; print the name on success, docker's error otherwise."""
    results: dict[int, Exception | None] = {}
    if parallel and len(names) > 1:
        import threading

        def work(i: int, n: str) -> None:
            try:
                op(n)
                results[i] = None
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = e
        threads = [threading.Thread(target=work, args=(i, n)) for i, n in enumerate(names)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i, n in enumerate(names):
            try:
                op(n)
                results[i] = None
            except errors.DockyardError as e:
                if _unreachable(e):
                    raise
                results[i] = e
    failed = False
    for i, n in enumerate(names):
        e = results.get(i)
        if e is None:
            sys.stdout.write(n + "\n")
            sys.stdout.flush()
            continue
        if _unreachable(e) or not isinstance(e, errors.DockyardError):
            raise e
        failed = True
        sys.stderr.write(f"Error response from daemon: {e}\n")
        sys.stderr.flush()
    return 1 if failed else 0


def _filters(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq:
            raise ValueError(v)
        out.setdefault(k.strip().lower(), []).append(val)
    return out


def _parse_filters(p: CommandParser, values: list[str], flag: str = "-f, --filter") -> dict:
    try:
        return _filters(values)
    except ValueError as e:
        p._fail(f'invalid argument "{e}" for "{flag}" flag: bad format of filter (expected '
                "name=value)", 125)


# -------------------------------------------------------------------------- ps


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def displayable_ports(ports: list[dict]) -> str:
    """Docker's DisplayablePorts: ranges grouped, host mappings last."""
    def key(p):
        return (p.get("PrivatePort", 0), p.get("IP", ""), p.get("PublicPort", 0),
                p.get("Type", ""))

    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    mappings: list[str] = []

    def form(k: str, first: int, last: int) -> str:
        ip, _, typ = k.rpartition("/")
        grp = str(first) if first == last else f"{first}-{last}"
        if ip:
            host = f"[{ip}]" if ":" in ip else ip
            grp = f"{host}:{grp}->{grp}"
        return f"{grp}/{typ}"

    for port in sorted(ports, key=key):
        cur = port.get("PrivatePort", 0)
        k = port.get("Type", "tcp")
        ip = port.get("IP", "")
        if ip:
            if port.get("PublicPort", 0) != cur:
                host = f"[{ip}]" if ":" in ip else ip
                mappings.append(f"{host}:{port.get('PublicPort', 0)}->{cur}/{port.get('Type')}")
                continue
            k = f"{ip}/{k}"
        g = groups.get(k)
        if g is None:
            groups[k] = [cur, cur]
            order.append(k)
            continue
        if cur == g[1] + 1:
            g[1] = cur
            continue
        result.append(form(k, g[0], g[1]))
        groups[k] = [cur, cur]
    for k in order:
        result.append(form(k, *groups[k]))
    return ", ".join(result + mappings)


def _go_time(ts: float) -> str:
    """time.Unix(ts, 0).String() in the local zone: 2026-11-28 05:21:23 +0000 UTC."""
    from datetime import datetime

    t = datetime.fromtimestamp(ts).astimezone()
    return t.strftime("%Y-%m-%d %H:%M:%S %z ") + (t.tzname() or "")


class ContainerRow(Context):
    FIELDS = ("Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts",
              "Names", "Networks", "Platform", "Ports", "RunningFor", "Size", "State", "Status")
    HEADER = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES", "Platform": "PLATFORM"}

    def __init__(self, c: dict, trunc: bool):
        self.c, self.trunc = c, trunc

    @property
    def ID(self) -> str:
        return truncate_id(self.c["Id"]) if self.trunc else self.c["Id"]

    @property
    def Names(self) -> str:
        names = []
        for n in self.c.get("Names") or []:
            n = n[1:] if n.startswith("/") else n
            if self.trunc and "/" in n:
                continue  # a link name: only with --no-trunc
            names.append(n)
        return ",".join(names)

    @property
    def Image(self) -> str:
        img = self.c.get("Image") or "<no image>"
        if self.trunc:
            image_id = self.c.get("ImageID", "")
            if image_id and truncate_id(image_id) == truncate_id(img):
                return truncate_id(img)  # created from an ID: shown short
            if "@" in img:
                img = img.split("@", 1)[0]
        return img

    @property
    def Command(self) -> str:
        cmd = self.c.get("Command") or ""
        if self.trunc:
            cmd = ellipsis(cmd, 20)
        return json.dumps(cmd, ensure_ascii=False)

    @property
    def CreatedAt(self) -> str:
        return _go_time(self.c.get("Created", 0))

    @property
    def RunningFor(self) -> str:
        return since(self.c.get("Created", 0))

    @property
    def Ports(self) -> str:
        return displayable_ports(self.c.get("Ports") or [])

    @property
    def State(self) -> str:
        return self.c.get("State", "")

    @property
    def Status(self) -> str:
        return self.c.get("Status", "")

    @property
    def Size(self) -> str:
        rw, root = self.c.get("SizeRw", 0) or 0, self.c.get("SizeRootFs", 0) or 0
        s = human_size(rw, 3)
        if root > 0:
            s += f" (virtual {human_size(root, 3)})"
        return s

    @property
    def Labels(self) -> str:
        labels = self.c.get("Labels") or {}
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

    def Label(self, name: str) -> str:  # {{.Label "x"}}
        return (self.c.get("Labels") or {}).get(name, "")

    @property
    def Mounts(self) -> str:
        out = []
        for m in self.c.get("Mounts") or []:
            name = m.get("Name") or m.get("Source") or ""
            if self.trunc:
                name = ellipsis(name, 15)
            out.append(name)
        return ",".join(out)

    @property
    def LocalVolumes(self) -> str:
        return str(sum(1 for m in self.c.get("Mounts") or [] if m.get("Driver") == "local"))

    @property
    def Networks(self) -> str:
        nets = ((self.c.get("NetworkSettings") or {}).get("Networks") or {})
        return ",".join(sorted(nets))

    @property
    def Platform(self) -> Any:
        return None


PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t" \
           "{{.Ports}}\t{{.Names}}"


def cmd_ps(g, argv: list[str], command: str = "ps") -> int:
    p = CommandParser(command, "[OPTIONS]", "List containers")
    p.add_flag("-a", "--all", help="Show all containers (default shows just running)")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_flag("-l", "--latest", help="Show the latest created container (includes all states)")
    p.add_argument("-n", "--last", default="-1",
                   help="Show n last created containers (includes all states)")
    p.add_flag("--no-trunc", help="Don't truncate output")
    p.add_flag("-q", "--quiet", help="Only display container IDs")
    p.add_flag("-s", "--size", help="Display total file sizes")
    o = p.parse(argv)
    try:
        last = int(o.last)
    except ValueError:
        p._fail(f'invalid argument "{o.last}" for "-n, --last" flag: strconv.ParseInt: '
                f'parsing "{o.last}": invalid syntax', 125)
    filters = _parse_filters(p, o.filter)
    if o.latest and last == -1:
        last = 1
    fmt = o.format or "table"
    if o.quiet and o.format and o.format != "table":
        sys.stderr.write("WARNING: Ignoring custom format, because both --format and "
                         "--quiet are set.\n")
        fmt = "table"
    size = o.size or (".Size" in fmt and not o.quiet)
    if fmt == "table":
        fmt = "{{.ID}}" if o.quiet else PS_TABLE + ("\t{{.Size}}" if o.size else "")
    elif fmt == "raw":
        fmt = ("container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\n"
               "created_at: {{.CreatedAt}}\nstate: {{- pad .State 1 0}}\nstatus: "
               "{{- pad .Status 1 0}}\nnames: {{.Names}}\nlabels: {{- pad .Labels 1 0}}\n"
               "ports: {{- pad .Ports 1 0}}\n")
    rows = [ContainerRow(c, not o.no_trunc) for c in
            g.client().containers(all=o.all, limit=last, size=size, filters=filters)]
    sys.stdout.write(format_rows(fmt, rows, ContainerRow.HEADER))
    return 0


# -------------------------------------------------------------------------- stop/kill/...


def cmd_stop(g, argv: list[str], command: str = "stop") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Stop one or more running containers", nargs=(0, None))
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    p.add_argument("-t", "--timeout", "--time", help="Seconds to wait before killing the "
                   "container")
    o = p.parse(argv)
    require(p, o.args, 1)
    t = _int_flag(p, o.timeout, "-t, --timeout")
    c = g.client()
    return _each(o.args, lambda n: c.clone().stop(n, t, o.signal), parallel=True)


def _int_flag(p: CommandParser, v: str | None, flag: str) -> int | None:
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        p._fail(f'invalid argument "{v}" for "{flag}" flag: strconv.ParseInt: parsing '
                f'"{v}": invalid syntax', 125)


def cmd_restart(g, argv: list[str], command: str = "restart") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Restart one or more containers", nargs=(0, None))
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    p.add_argument("-t", "--timeout", "--time", help="Seconds to wait before killing the "
                   "container")
    o = p.parse(argv)
    require(p, o.args, 1)
    t = _int_flag(p, o.timeout, "-t, --timeout")
    c = g.client()
    return _each(o.args, lambda n: c.restart(n, t, o.signal))


def cmd_kill(g, argv: list[str], command: str = "kill") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Kill one or more running containers", nargs=(0, None))
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    o = p.parse(argv)
    require(p, o.args, 1)
    c = g.client()
    return _each(o.args, lambda n: c.clone().kill(n, o.signal), parallel=True)


def cmd_pause(g, argv: list[str], command: str = "pause") -> int:
    p = CommandParser(command, "CONTAINER [CONTAINER...]",
                      "Pause all processes within one or more containers", nargs=(0, None))
    o = p.parse(argv)
    require(p, o.args, 1)
    c = g.client()
    return _each(o.args, c.pause)


def cmd_unpause(g, argv: list[str], command: str = "unpause") -> int:
    p = CommandParser(command, "CONTAINER [CONTAINER...]",
                      "Unpause all processes within one or more containers", nargs=(0, None))
    o = p.parse(argv)
    require(p, o.args, 1)
    c = g.client()
    return _each(o.args, c.unpause)


def cmd_rm(g, argv: list[str], command: str = "rm") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Remove one or more containers", nargs=(0, None))
    p.add_flag("-f", "--force", help="Force the removal of a running container (uses SIGKILL)")
    p.add_flag("-l", "--link", help="Remove the specified link")
    p.add_flag("-v", "--volumes", help="Remove anonymous volumes associated with the container")
    o = p.parse(argv)
    require(p, o.args, 1)
    c = g.client()
    names = [n.strip("/") or n for n in o.args]
    # like docker: every DELETE at once, each on its own connection
    return _each(names, lambda n: c.clone().remove_container(n, o.force, o.volumes, o.link),
                 parallel=True)


def cmd_wait(g, argv: list[str], command: str = "wait") -> int:
    p = CommandParser(command, "CONTAINER [CONTAINER...]",
                      "Block until one or more containers stop, then print their exit codes",
                      nargs=(0, None))
    o = p.parse(argv)
    require(p, o.args, 1)
    c = g.client()
    failed = False
    for n in o.args:
        try:
            print(c.wait(n), flush=True)
        except errors.DockyardError as e:
            if _unreachable(e):
                raise
            failed = True
            sys.stderr.write(f"Error response from daemon: {e}\n")
    return 1 if failed else 0


def cmd_rename(g, argv: list[str], command: str = "rename") -> int:
    p = CommandParser(command, "CONTAINER NEW_NAME", "Rename a container", nargs=(0, None))
    o = p.parse(argv)
    require(p, o.args, 2, 2)
    old, new = o.args[0], o.args[1].strip()
    if not new or new.startswith("/") and not new[1:]:
        raise CommandError("Error: neither old nor new names may be empty", 1)
    try:
        g.client().rename(old, new)
    except errors.DockyardError as e:
        if _unreachable(e):
            raise
        raise CommandError(f"Error response from daemon: {e}\n"
                           f"Error: failed to rename container named {old}", 1) from None
    return 0


# -------------------------------------------------------------------------- logs


_DUR = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+$")
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DUR_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def get_timestamp(value: str, now: float | None = None) -> str:
    """Docker's timetypes.GetTimestamp: a duration (before now), a date, or unix seconds."""
    import time
    from datetime import datetime

    now = time.time() if now is None else now
    if _DUR.match(value):
        d = sum(float(n) * _DUR_UNIT[u] for n, u in _DUR_PART.findall(value))
        t = now - d
        sec = int(t)
        return f"{sec}.{int(round((t - sec) * 1e9)):09d}"
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    v = value.replace("Z", "+00:00")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f",
                "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H%z",
                "%Y-%m-%dT%H", "%Y-%m-%d%z", "%Y-%m-%d"):
        try:
            dt = datetime.strptime(v, fmt)
        except ValueError:
            continue
        if dt.tzinfo is None:
            dt = dt.astimezone()  # local time, as docker
        t = dt.timestamp()
        sec = int(t)
        return f"{sec}.{int(round((t - sec) * 1e9)):09d}"
    raise ValueError(f'failed to parse value as time or duration: "{value}"')


def copy_log_stream(resp, tty: bool) -> None:
    from dockyard.cli.streams import _write_all
    from dockyard.client.containers import iter_frames

    try:
        if tty:
            for chunk in resp.iter_chunks():
                _write_all(1, chunk)
        else:
            for stream, payload in iter_frames(resp.iter_chunks()):
                _write_all(2 if stream == 2 else 1, payload)
    finally:
        resp.close()


def cmd_logs(g, argv: list[str], command: str = "logs") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER", "Fetch the logs of a container",
                      nargs=(0, None))
    p.add_flag("--details", help="Show extra details provided to logs")
    p.add_flag("-f", "--follow", help="Follow log output")
    p.add_argument("--since", help="Show logs since timestamp or relative (e.g. 42m)")
    p.add_argument("-n", "--tail", default="all", help="Number of lines to show from the "
                   "end of the logs (default \"all\")")
    p.add_flag("-t", "--timestamps", help="Show timestamps")
    p.add_argument("--until", help="Show logs before a timestamp or relative (e.g. 42m)")
    o = p.parse(argv)
    require(p, o.args, 1, 1)
    c = g.client()
    info = c.inspect_container(o.args[0])
    stamps = {}
    for key, value in (("since", o.since), ("until", o.until)):
        try:
            stamps[key] = get_timestamp(value) if value else None
        except ValueError:
            raise CommandError(f'invalid value for "{key}": parsing time "{value}" as '
                               f'"2006-01-02": cannot parse "{value}" as "2006"', 1) from None
    since_ts, until_ts = stamps["since"], stamps["until"]
    resp = c.logs(info["Id"], follow=o.follow, tail=o.tail, since=since_ts, until=until_ts,
                  timestamps=o.timestamps, details=o.details)
    copy_log_stream(resp, bool((info.get("Config") or {}).get("Tty")))
    return 0


# -------------------------------------------------------------------------- inspect


def _inspect_objects(g, names: list[str], fmt: str | None, kind: str | None,
                     size: bool) -> int:
    from dockyard.cli.cmd_images import _print_inspect

    c = g.client()
    found: list[Any] = []
    errs: list[str] = []
    if kind not in (None, "container", "image"):
        raise CommandError(f'"{kind}" is not a valid value for --type', 1)
    for name in names:
        obj = None
        try:
            if kind in (None, "container"):
                try:
                    obj = c.inspect_container(name, size=size)
                except errors.NotFound:
                    if kind == "container":
                        raise
            if obj is None and kind in (None, "image"):
                obj = c.inspect_image(name)
            found.append(obj)
        except errors.NotFound as e:
            errs.append(f"Error: No such object: {name}" if kind is None
                        else f"Error response from daemon: {e}")
        except errors.DockyardError as e:
            if _unreachable(e):
                raise
            errs.append(f"Error response from daemon: {e}")
    if found or not fmt:
        _print_inspect(found, fmt)
    if errs:
        sys.stdout.flush()
        sys.stderr.write("\n".join(errs) + "\n")
        return 1
    return 0


def cmd_inspect(g, argv: list[str]) -> int:
    """`inspect`: containers first, then images (as docker's inspect walks them)."""
    p = CommandParser("inspect", "[OPTIONS] NAME|ID [NAME|ID...]",
                      "Return low-level information on Dockyard objects", nargs=(0, None))
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_flag("-s", "--size", help="Display total file sizes if the type is container")
    p.add_argument("--type", help="Only inspect objects of the given type")
    o = p.parse(argv)
    require(p, o.args, 1)
    return _inspect_objects(g, o.args, o.format, o.type, o.size)


def cmd_container_inspect(g, argv: list[str]) -> int:
    p = CommandParser("container inspect", "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Display detailed information on one or more containers",
                      nargs=(0, None))
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_flag("-s", "--size", help="Display total file sizes")
    o = p.parse(argv)
    require(p, o.args, 1)
    return _inspect_objects(g, o.args, o.format, "container", o.size)


# -------------------------------------------------------------------------- top/diff/port


def cmd_top(g, argv: list[str], command: str = "top") -> int:
    from dockyard.cli.format import tabwrite

    p = CommandParser(command, "CONTAINER [ps OPTIONS]",
                      "Display the running processes of a container", nargs=(0, None))
    from dockyard.cli.runopts import split_interspersed

    flags, pos = split_interspersed(p, argv)
    o = p.parse(flags)
    pos = o.args + pos
    require(p, pos, 1)
    top = g.client().top(pos[0], " ".join(pos[1:]) if len(pos) > 1 else None)
    lines = ["\t".join(top.get("Titles") or [])]
    lines += ["\t".join(proc) for proc in top.get("Processes") or []]
    sys.stdout.write(tabwrite("\n".join(lines) + "\n", minwidth=20, padding=3))
    return 0


def cmd_diff(g, argv: list[str], command: str = "diff") -> int:
    p = CommandParser(command, "CONTAINER",
                      "Inspect changes to files or directories on a container's filesystem",
                      nargs=(0, None))
    o = p.parse(argv)
    require(p, o.args, 1, 1)
    kinds = {0: "C", 1: "A", 2: "D"}
    for ch in g.client().changes(o.args[0]):
        sys.stdout.write(f"{kinds.get(ch.get('Kind'), '?')} {ch.get('Path')}\n")
    return 0


def _join_host_port(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def cmd_port(g, argv: list[str], command: str = "port") -> int:
    p = CommandParser(command, "CONTAINER [PRIVATE_PORT[/PROTO]]",
                      "List port mappings or a specific mapping for the container",
                      nargs=(0, None))
    o = p.parse(argv)
    require(p, o.args, 1, 2)
    name = o.args[0]
    info = g.client().inspect_container(name)
    ports = ((info.get("NetworkSettings") or {}).get("Ports")) or {}
    out: list[str] = []
    if len(o.args) > 1:
        spec = o.args[1]
        port, _, proto = spec.partition("/")
        key = f"{port}/{proto or 'tcp'}"
        fronts = ports.get(key)
        if not fronts:
            raise CommandError(f"Error: No public port '{spec}' published for {name}", 1)
        out = [_join_host_port(f.get("HostIp", ""), f.get("HostPort", "")) for f in fronts]
    else:
        for key, fronts in ports.items():
            for f in fronts or []:
                out.append(f"{key} -> {_join_host_port(f.get('HostIp', ''), f.get('HostPort', ''))}")
    if out:
        out.sort(key=_natural_key)
        sys.stdout.write("\n".join(out) + "\n")
    return 0


# -------------------------------------------------------------------------- update


def cmd_update(g, argv: list[str], command: str = "update") -> int:
    from dockyard.cli.runopts import nano_cpus, parse_restart, ram_in_bytes

    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Update configuration of one or more containers", nargs=(0, None))
    a = p.add_argument
    a("--blkio-weight", help="Block IO (relative weight), between 10 and 1000, or 0 to disable")
    a("--cpu-period", help="Limit CPU CFS (Completely Fair Scheduler) period")
    a("--cpu-quota", help="Limit CPU CFS (Completely Fair Scheduler) quota")
    a("--cpu-rt-period", help="Limit the CPU real-time period in microseconds")
    a("--cpu-rt-runtime", help="Limit the CPU real-time runtime in microseconds")
    a("-c", "--cpu-shares", help="CPU shares (relative weight)")
    a("--cpus", help="Number of CPUs")
    a("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    a("-m", "--memory", help="Memory limit")
    a("--memory-reservation", help="Memory soft limit")
    a("--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    a("--pids-limit", help="Tune container pids limit (set -1 for unlimited)")
    a("--restart", help="Restart policy to apply when a container exits")
    o = p.parse(argv)
    require(p, o.args, 1)
    body: dict[str, Any] = {}

    def conv(value, fn, key, flag):
        if value is None:
            return
        try:
            body[key] = fn(value)
        except ValueError as e:
            p._fail(f'invalid argument "{value}" for "{flag}" flag: {e}', 125)

    def ival(s: str) -> int:
        try:
            return int(s)
        except ValueError:
            raise ValueError(f'strconv.ParseInt: parsing "{s}": invalid syntax') from None

    conv(o.blkio_weight, ival, "BlkioWeight", "--blkio-weight")
    conv(o.cpu_period, ival, "CpuPeriod", "--cpu-period")
    conv(o.cpu_quota, ival, "CpuQuota", "--cpu-quota")
    conv(o.cpu_rt_period, ival, "CpuRealtimePeriod", "--cpu-rt-period")
    conv(o.cpu_rt_runtime, ival, "CpuRealtimeRuntime", "--cpu-rt-runtime")
    conv(o.cpu_shares, ival, "CpuShares", "-c, --cpu-shares")
    conv(o.cpus, nano_cpus, "NanoCpus", "--cpus")
    conv(o.cpuset_cpus, str, "CpusetCpus", "--cpuset-cpus")
    conv(o.cpuset_mems, str, "CpusetMems", "--cpuset-mems")
    conv(o.memory, ram_in_bytes, "Memory", "-m, --memory")
    conv(o.memory_reservation, ram_in_bytes, "MemoryReservation", "--memory-reservation")
    conv(o.memory_swap, ram_in_bytes, "MemorySwap", "--memory-swap")
    conv(o.pids_limit, ival, "PidsLimit", "--pids-limit")
    conv(o.restart, parse_restart, "RestartPolicy", "--restart")
    if not body:
        raise CommandError("you must provide one or more flags when using this command", 1)
    c = g.client()
    warnings: list[str] = []

    def op(n: str) -> None:
        r = c.update_container(n, body)
        warnings.extend(r.get("Warnings") or [])

    status = _each(o.args, op)
    for w in warnings:
        sys.stderr.write(w + "\n")
    return status


# -------------------------------------------------------------------------- commit/export


def cmd_commit(g, argv: list[str], command: str = "commit") -> int:
    from dockyard.cli.cmd_images import _check_ref, _split_tag
    from dockyard.cli.cmd_run import _normalize_ref

    p = CommandParser(command, "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                      "Create a new image from a container's changes", nargs=(0, None))
    p.add_argument("-a", "--author", help='Author (e.g., "John Hannibal Smith '
                   '<hannibal@a-team.com>")')
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Commit message")
    p.add_argument("-p", "--pause", action="store_true", default=True,
                   help="Pause container during commit (default true)")
    o = p.parse(argv)
    require(p, o.args, 1, 2)
    repo = tag = None
    if len(o.args) > 1:
        _check_ref(o.args[1])
        r, t = _split_tag(o.args[1])
        repo = _normalize_ref(r)[0]
        tag = t or None
    resp = g.client().commit(o.args[0], repo=repo, tag=tag, author=o.author,
                             comment=o.message, changes=o.change, pause=o.pause)
    print(resp.get("Id", ""))
    return 0


def cmd_export(g, argv: list[str], command: str = "export") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER",
                      "Export a container's filesystem as a tar archive", nargs=(0, None))
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    o = p.parse(argv)
    require(p, o.args, 1, 1)
    if not o.output and os.isatty(1):
        raise CommandError("cowardly refusing to save to a terminal. Use the -o flag or "
                           "redirect", 1)
    from dockyard.cli.cmd_images import write_stream

    write_stream(g.client().export(o.args[0]), o.output)
    return 0


# -------------------------------------------------------------------------- prune


def cmd_container_prune(g, argv: list[str]) -> int:
    p = CommandParser("container prune", "[OPTIONS]", "Remove all stopped containers")
    p.add_argument("--filter", action="append", default=[],
                   help='Provide filter values (e.g. "until=<timestamp>")')
    p.add_flag("-f", "--force", help="Do not prompt for confirmation")
    o = p.parse(argv)
    filters = _parse_filters(p, o.filter, "--filter")
    if not o.force:
        sys.stdout.write("WARNING! This will remove all stopped containers.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower() if sys.stdin else ""
        if answer not in ("y", "yes"):
            return 0
    report = g.client().prune_containers(filters)
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Containers:\n" + "".join(d + "\n" for d in deleted) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed', 0))}\n")
    return 0


# -------------------------------------------------------------------------- stats


def _cpu_percent(s: dict) -> float:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = ((cpu.get("cpu_usage") or {}).get("total_usage", 0) -
                 (pre.get("cpu_usage") or {}).get("total_usage", 0))
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage")
                                           or []) or 1
    if sys_delta > 0 and cpu_delta > 0:
        return cpu_delta / sys_delta * online * 100.0
    return 0.0


def _mem_usage(s: dict) -> float:
    m = s.get("memory_stats") or {}
    usage = m.get("usage", 0)
    st = m.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in st and st[key] < usage:
            return usage - st[key]
    return usage


def _blkio(s: dict) -> tuple[int, int]:
    r = w = 0
    for e in ((s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []):
        op = (e.get("op") or "").lower()
        if op == "read":
            r += e.get("value", 0)
        elif op == "write":
            w += e.get("value", 0)
    return r, w


def _net(s: dict) -> tuple[int, int]:
    rx = tx = 0
    for n in (s.get("networks") or {}).values():
        rx += n.get("rx_bytes", 0)
        tx += n.get("tx_bytes", 0)
    return rx, tx


class StatsRow(Context):
    FIELDS = ("BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name",
              "NetIO", "PIDs")
    HEADER = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME",
              "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
              "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}

    def __init__(self, container: str, cid: str, name: str, s: dict | None, trunc: bool,
                 err: bool = False):
        self.container, self.cid, self.name, self.s, self.trunc = container, cid, name, s, trunc
        self.err = err or s is None

    @property
    def Container(self) -> str:
        return self.container

    @property
    def ID(self) -> str:
        return self.cid[:12] if self.trunc else self.cid

    @property
    def Name(self) -> str:
        return self.name.lstrip("/") if self.name else "--"

    def _v(self, fn: Callable[[dict], str]) -> str:
        return "--" if self.err else fn(self.s or {})

    @property
    def CPUPerc(self) -> str:
        return self._v(lambda s: f"{_cpu_percent(s):.2f}%")

    @property
    def MemUsage(self) -> str:
        return "-- / --" if self.err else \
            f"{bytes_size(_mem_usage(self.s))} / " \
            f"{bytes_size((self.s.get('memory_stats') or {}).get('limit', 0))}"

    @property
    def MemPerc(self) -> str:
        def f(s):
            limit = (s.get("memory_stats") or {}).get("limit", 0)
            return f"{(_mem_usage(s) / limit * 100.0 if limit else 0.0):.2f}%"
        return self._v(f)

    @property
    def NetIO(self) -> str:
        if self.err:
            return "--"
        rx, tx = _net(self.s)
        return f"{human_size(rx, 3)} / {human_size(tx, 3)}"

    @property
    def BlockIO(self) -> str:
        if self.err:
            return "--"
        r, w = _blkio(self.s)
        return f"{human_size(r, 3)} / {human_size(w, 3)}"

    @property
    def PIDs(self) -> str:
        return self._v(lambda s: str((s.get("pids_stats") or {}).get("current", 0)))


STATS_TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
               "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")


def cmd_stats(g, argv: list[str], command: str = "stats") -> int:
    p = CommandParser(command, "[OPTIONS] [CONTAINER...]",
                      "Display a live stream of container(s) resource usage statistics",
                      nargs=(0, None))
    p.add_flag("-a", "--all", help="Show all containers (default shows just running)")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_flag("--no-stream", help="Disable streaming stats and only pull the first result")
    p.add_flag("--no-trunc", help="Do not truncate output")
    o = p.parse(argv)
    import threading

    c = g.client()
    fmt = o.format or "table"
    if fmt == "table":
        fmt = STATS_TABLE
    names = list(o.args)
    follow_list = not names  # no names: every (running) container, as they come and go
    if follow_list:
        names = [x["Id"][:12] for x in c.containers(all=o.all)]
    # one sampler per container, each on its own connection
    latest: dict[str, StatsRow] = {}
    lock = threading.Lock()
    missing: list[str] = []

    def sample(name: str) -> None:
        cl = c.clone()
        try:
            if o.no_stream:
                s = cl.stats(name, stream=False)
                with lock:
                    latest[name] = StatsRow(name, s.get("id", ""), s.get("name", ""), s,
                                            not o.no_trunc)
                return
            resp = cl.stats(name, stream=True)
            buf = b""
            for chunk in resp.iter_chunks():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        s = json.loads(line)
                        with lock:
                            latest[name] = StatsRow(name, s.get("id", ""), s.get("name", ""),
                                                    s, not o.no_trunc)
        except errors.NotFound as e:
            with lock:
                missing.append(f"Error response from daemon: {e}")
        except errors.DockyardError:
            with lock:
                old = latest.get(name)
                latest[name] = StatsRow(name, old.cid if old else name,
                                        old.name if old else "", None, not o.no_trunc,
                                        err=True)
        finally:
            cl.close()

    threads = [threading.Thread(target=sample, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()

    def refresh() -> None:
        """Track started/removed containers (docker follows /events; we poll the list)."""
        try:
            now = [x["Id"][:12] for x in c.containers(all=o.all)]
        except errors.DockyardError:
            return
        with lock:
            for n in [n for n in names if n not in now]:
                names.remove(n)
            for n in now:
                if n not in names:
                    names.append(n)
                    t = threading.Thread(target=sample, args=(n,), daemon=True)
                    threads.append(t)
                    t.start()

    def render() -> str:
        with lock:
            rows = [latest[n] for n in list(names) if n in latest]
        return format_rows(fmt, rows, StatsRow.HEADER)

    if o.no_stream:
        for t in threads:
            t.join()
        if missing:
            sys.stderr.write("\n".join(missing) + "\n")
            return 1
        sys.stdout.write(render())
        return 0
    import time

    try:
        first = True
        ticks = 0
        while True:
            time.sleep(0.5)
            ticks += 1
            if follow_list and ticks % 2 == 0:
                refresh()
            with lock:
                if missing and len(missing) == len(names):
                    sys.stderr.write("\n".join(missing) + "\n")
                    return 1
            text = render()
            if os.isatty(1):
                sys.stdout.write("\033[2J\033[H" + text)
            else:
                if not first:
                    sys.stdout.write("\n")
                sys.stdout.write(text)
            sys.stdout.flush()
            first = False
            if not follow_list and all(not t.is_alive() for t in threads):
                return 0
    except KeyboardInterrupt:
        return 0


# -------------------------------------------------------------------------- aliases

cmd_container_ls = _alias(cmd_ps, "container ls")
cmd_container_stop = _alias(cmd_stop, "container stop")
cmd_container_kill = _alias(cmd_kill, "container kill")
cmd_container_restart = _alias(cmd_restart, "container restart")
cmd_container_rm = _alias(cmd_rm, "container rm")
cmd_container_wait = _alias(cmd_wait, "container wait")
cmd_container_logs = _alias(cmd_logs, "container logs")
cmd_container_top = _alias(cmd_top, "container top")
cmd_container_pause = _alias(cmd_pause, "container pause")
cmd_container_unpause = _alias(cmd_unpause, "container unpause")
cmd_container_rename = _alias(cmd_rename, "container rename")
cmd_container_update = _alias(cmd_update, "container update")
cmd_container_diff = _alias(cmd_diff, "container diff")
cmd_container_commit = _alias(cmd_commit, "container commit")
cmd_container_export = _alias(cmd_export, "container export")
cmd_container_stats = _alias(cmd_stats, "container stats")
cmd_container_port = _alias(cmd_port, "container port")
