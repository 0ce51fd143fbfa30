"""version, info, events, system df."""

from __future__ import annotations

import sys
import time

from dockyard import errors
from dockyard.cli.format import Context, format_rows, is_table, render, tabwrite
from dockyard.cli.parser import CommandParser
from dockyard.cli.units import bytes_size, human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# -------------------------------------------------------------------------- version


def _ansic(ts: str) -> str:
    """RFC 3339 -> Go's time.ANSIC, as docker version prints Built."""
    from datetime import datetime

    try:
        t = ts.replace("Z", "+00:00")
        if "." in t:
            head, frac = t.split(".", 1)
            digits = "".join(c for c in frac if c.isdigit())
            tz = frac[len(digits):]
            t = head + "." + digits[:6].ljust(6, "0") + tz
        dt = datetime.fromisoformat(t)
    except ValueError:
        return ts
    return dt.strftime("%a %b ") + f"{dt.day:>2}" + dt.strftime(" %H:%M:%S %Y")


def _client_build_time() -> str:
    import os
    import dockyard
    from dockyard import buildinfo

    from datetime import datetime, timezone

    ts = buildinfo.build_time()
    if ts is None:   # a source checkout: when its code last changed
        ts = os.stat(dockyard.__file__).st_mtime
    dt = datetime.fromtimestamp(ts, timezone.utc)
    return dt.strftime("%a %b ") + f"{dt.day:>2}" + dt.strftime(" %H:%M:%S %Y")


def _python_version() -> str:
    # platform.python_version() without importing platform (slow to import)
    v = sys.version.split()[0]
    return v + ".0" if v.count(".") == 1 else v


def _machine() -> str:
    import os

    return os.uname().machine


def cmd_version(g, argv: list[str]) -> int:
    p = CommandParser("version", "[OPTIONS]", "Show the Dockyard version information")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    o = p.parse(argv)
    from dockyard import __version__
    from dockyard.client.api import CLIENT_API_VERSION

    c = g.client()
    client: dict[str, Any] = {
        "Platform": {"Name": "Dockyard"},
        "Version": __version__,
        "ApiVersion": CLIENT_API_VERSION,
        "DefaultAPIVersion": CLIENT_API_VERSION,
        "GoVersion": "python" + _python_version(),
        "GitCommit": __import__("dockyard.buildinfo").buildinfo.git_commit(),
        "BuildTime": _client_build_time(),
        "Os": "linux",
        "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(_machine(), _machine()),
        "Context": "default",
    }
    server = None
    server_err = None
    try:
        client["ApiVersion"] = c.negotiate()
        server = c.version()
    except errors.DockyardError as e:
        server_err = e
    if o.format:
        from dockyard.cli.format import Struct

        aliases = {"APIVersion": "ApiVersion", "MinAPIVersion": "MinAPIVersion",
                   "DefaultAPIVersion": "DefaultAPIVersion"}
        srv = None
        if server is not None:
            srv = dict(server)
            comps = []
            for comp in server.get("Components") or []:
                comp = dict(comp)
                if comp.get("Name") == "Engine" and "BuildTime" in (comp.get("Details") or {}):
                    comp["Details"] = {**comp["Details"],
                                       "BuildTime": _ansic(comp["Details"]["BuildTime"])}
                comps.append(comp)
            srv["Components"] = comps
            srv = Struct(srv, aliases)
        fmt = "{{json .}}" if o.format == "json" else o.format
        sys.stdout.write(render(fmt.replace("\\n", "\n").replace("\\t", "\t"),
                                {"Client": Struct(client, aliases), "Server": srv}) + "\n")
        if server_err is not None:
            raise server_err
        return 0
    lines = ["Client: Dockyard",
             f" Version:\t{client['Version']}",
             f" API version:\t{client['ApiVersion']}" +
             (f" (downgraded from {client['DefaultAPIVersion']})"
              if client["ApiVersion"] != client["DefaultAPIVersion"] else ""),
             f" Go version:\t{client['GoVersion']}",
             f" Git commit:\t{client['GitCommit']}",
             f" Built:\t{client['BuildTime']}",
             f" OS/Arch:\t{client['Os']}/{client['Arch']}",
             f" Context:\t{client['Context']}"]
    if server is not None:
        name = (server.get("Platform") or {}).get("Name", "")
        lines += ["", "Server:" + (f" {name}" if name else "")]
        for comp in server.get("Components") or []:
            d = comp.get("Details") or {}
            lines.append(f" {comp.get('Name')}:")
            if comp.get("Name") == "Engine":
                lines += [f"  Version:\t{comp.get('Version')}",
                          f"  API version:\t{d.get('ApiVersion')} (minimum version "
                          f"{d.get('MinAPIVersion')})",
                          f"  Go version:\t{d.get('GoVersion')}",
                          f"  Git commit:\t{d.get('GitCommit')}",
                          f"  Built:\t{_ansic(d.get('BuildTime', ''))}",
                          f"  OS/Arch:\t{d.get('Os')}/{d.get('Arch')}",
                          f"  Experimental:\t{d.get('Experimental')}"]
            else:
                lines.append(f"  Version:\t{comp.get('Version')}")
                for k in sorted(d):
                    lines.append(f"  {k}:\t{d[k]}")
    sys.stdout.write(tabwrite("\n".join(lines) + "\n", minwidth=20, padding=1))
    if server_err is not None:
        raise server_err
    return 0


# -------------------------------------------------------------------------- info


def cmd_info(g, argv: list[str]) -> int:
    p = CommandParser("info", "[OPTIONS]", "Display system-wide information")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    o = p.parse(argv)
    c = g.client()
    if o.format:
        info = c.info()
        fmt = "{{json .}}" if o.format == "json" else o.format
        sys.stdout.write(render(fmt.replace("\\n", "\n").replace("\\t", "\t"), info) + "\n")
        return 0
    out = ["Client: Dockyard", f" Version:    {__import__('dockyard').__version__}",
           " Context:    default", f" Debug Mode: {str(g.debug).lower()}", ""]
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    try:
        info = c.info()
    except errors.DockyardError as e:
        sys.stdout.write("Server:\n")
        from dockyard.client import DaemonUnreachable
        sys.stdout.flush()
        if isinstance(e, DaemonUnreachable):
            sys.stderr.write(f"{e}\n")
            return 1
        raise
    sys.stdout.write(_format_info(info))
    return 0


def _format_info(i: dict) -> str:
    L: list[str] = ["Server:"]
    add = L.append
    add(f" Containers: {i.get('Containers', 0)}")
    add(f"  Running: {i.get('ContainersRunning', 0)}")
    add(f"  Paused: {i.get('ContainersPaused', 0)}")
    add(f"  Stopped: {i.get('ContainersStopped', 0)}")
    add(f" Images: {i.get('Images', 0)}")
    add(f" Server Version: {i.get('ServerVersion', '')}")
    add(f" Storage Driver: {i.get('Driver', '')}")
    for k, v in i.get("DriverStatus") or []:
        add(f"  {k}: {v}")
    add(f" Logging Driver: {i.get('LoggingDriver', '')}")
    add(f" Cgroup Driver: {i.get('CgroupDriver', '')}")
    add(f" Cgroup Version: {i.get('CgroupVersion', '')}")
    plugins = i.get("Plugins") or {}
    add(" Plugins:")
    add(f"  Volume: {' '.join(plugins.get('Volume') or [])}")
    add(f"  Network: {' '.join(plugins.get('Network') or [])}")
    if plugins.get("Authorization"):
        add(f"  Authorization: {' '.join(plugins['Authorization'])}")
    add(f"  Log: {' '.join(plugins.get('Log') or [])}")
    add(f" Swarm: {(i.get('Swarm') or {}).get('LocalNodeState', 'inactive')}")
    add(f" Runtimes: {' '.join(sorted(i.get('Runtimes') or {}))}")
    add(f" Default Runtime: {i.get('DefaultRuntime', '')}")
    add(f" Init Binary: {i.get('InitBinary', '')}")
    add(f" containerd version: {(i.get('ContainerdCommit') or {}).get('ID', '')}")
    add(f" runc version: {(i.get('RuncCommit') or {}).get('ID', '')}")
    add(f" init version: {(i.get('InitCommit') or {}).get('ID', '')}")
    secopts = i.get("SecurityOptions") or []
    if secopts:
        add(" Security Options:")
        for so in secopts:
            kv = dict(part.split("=", 1) for part in so.split(",") if "=" in part)
            add(f"  {kv.get('name', so)}")
            for k, v in kv.items():
                if k != "name":
                    add(f"   {k.capitalize()}: {v}")
    add(f" Kernel Version: {i.get('KernelVersion', '')}")
    add(f" Operating System: {i.get('OperatingSystem', '')}")
    add(f" OSType: {i.get('OSType', '')}")
    add(f" Architecture: {i.get('Architecture', '')}")
    add(f" CPUs: {i.get('NCPU', 0)}")
    add(f" Total Memory: {bytes_size(i.get('MemTotal', 0))}")
    add(f" Name: {i.get('Name', '')}")
    add(f" ID: {i.get('ID', '')}")
    add(f" Docker Root Dir: {i.get('DockerRootDir', '')}")
    add(f" Debug Mode: {str(bool(i.get('Debug'))).lower()}")
    if i.get("Debug"):
        add(f"  File Descriptors: {i.get('NFd', 0)}")
        add(f"  Goroutines: {i.get('NGoroutines', 0)}")
        add(f"  System Time: {i.get('SystemTime', '')}")
        add(f"  EventsListeners: {i.get('NEventsListener', 0)}")
    for k, label in (("HttpProxy", "HTTP Proxy"), ("HttpsProxy", "HTTPS Proxy"),
                     ("NoProxy", "No Proxy")):
        if i.get(k):
            add(f" {label}: {i[k]}")
    if i.get("Labels"):
        add(" Labels:")
        L.extend(f"  {lab}" for lab in i["Labels"])
    add(f" Experimental: {str(bool(i.get('ExperimentalBuild'))).lower()}")
    reg = i.get("RegistryConfig") or {}
    insecure = list(reg.get("InsecureRegistryCIDRs") or [])
    insecure += [name for name, ic in (reg.get("IndexConfigs") or {}).items()
                 if not ic.get("Secure", True)]
    if insecure:
        add(" Insecure Registries:")
        L.extend(f"  {x}" for x in insecure)
    if reg.get("Mirrors"):
        add(" Registry Mirrors:")
        L.extend(f"  {x}" for x in reg["Mirrors"])
    add(f" Live Restore Enabled: {str(bool(i.get('LiveRestoreEnabled'))).lower()}")
    text = "\n".join(L) + "\n\n"
    for w in i.get("Warnings") or []:
        text += w + "\n"
    return text


# -------------------------------------------------------------------------- events


class EventContext(Context):
    FIELDS = ("Type", "Action", "Actor", "scope", "time", "timeNano", "status", "id", "from",
              "Status", "ID", "From", "Scope", "Time", "TimeNano")

    def __init__(self, ev: dict):
        self.ev = ev

    def __getattr__(self, name: str) -> Any:
        ev = self.__dict__["ev"]
        low = {"Status": "status", "ID": "id", "From": "from", "Scope": "scope",
               "Time": "time", "TimeNano": "timeNano"}
        return ev.get(low.get(name, name), ev.get(name, ""))

    def to_json(self) -> dict:
        return self.ev


def _event_line(ev: dict) -> str:
    from datetime import datetime

    ns = ev.get("timeNano") or ev.get("time", 0) * 1_000_000_000
    t = datetime.fromtimestamp(ns // 1_000_000_000).astimezone()
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}" + \
        (t.strftime("%z")[:3] + ":" + t.strftime("%z")[3:] if t.utcoffset() else "Z")
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    s = f"{stamp} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        s += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return s


def cmd_events(g, argv: list[str]) -> int:
    from dockyard.api.timestamps import get_timestamp

    p = CommandParser("events", "[OPTIONS]", "Get real time events from the server")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--since", help="Show all events created since timestamp")
    p.add_argument("--until", help="Stream events until this timestamp")
    o = p.parse(argv)
    filters = _parse_filter_flags(o.filter)
    since = get_timestamp(o.since) if o.since else None
    until = get_timestamp(o.until) if o.until else None
    c = g.client()
    fmt = o.format
    if fmt == "json":
        fmt = "{{json .}}"
    from dockyard.cli.format import Template

    tmpl = Template(fmt.replace("\\n", "\n").replace("\\t", "\t")) if fmt else None
    for ev in c.events(since=since, until=until, filters=filters):
        if tmpl is not None:
            line = tmpl.execute(EventContext(ev) if "{{json .}}" != fmt else ev)
        else:
            line = _event_line(ev)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return 0


def _parse_filter_flags(values: list[str]) -> dict[str, list[str]]:
    from dockyard.cli.parser import UsageError

    out: dict[str, list[str]] = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq:
            raise UsageError(f"invalid argument \"{v}\" for \"-f, --filter\" flag: bad format "
                             "of filter (expected name=value)\nSee 'dockyard --help'.", 125)
        out.setdefault(k.strip().lower(), []).append(val)
    return out


# -------------------------------------------------------------------------- system df


class _DfRow(Context):
    FIELDS = ("Type", "TotalCount", "Active", "Size", "Reclaimable")

    def __init__(self, type: str, total: int, active: int, size: int, reclaim: int):
        self.Type = type
        self.TotalCount = str(total)
        self.Active = str(active)
        self.Size = human_size(size)
        pct = f" ({int(reclaim * 100 / size)}%)" if size > 0 else ""
        self.Reclaimable = human_size(reclaim) + pct


def cmd_df(g, argv: list[str]) -> int:
    p = CommandParser("system df", "[OPTIONS]", "Show docker disk usage")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_flag("-v", "--verbose", help="Show detailed information on space usage")
    o = p.parse(argv)
    du = g.client().df()
    images = du.get("Images") or []
    size = du.get("LayersSize") or 0
    active = sum(1 for im in images if (im.get("Containers") or 0) > 0)
    used = sum(im.get("Size", 0) - max(im.get("SharedSize", 0), 0) for im in images
               if (im.get("Containers") or 0) > 0)
    reclaim = max(size - used, 0)
    containers = du.get("Containers") or []
    volumes = du.get("Volumes") or []
    cache = du.get("BuildCache") or []
    cache_size = sum(b.get("Size", 0) for b in cache if not b.get("Shared"))
    cache_reclaim = sum(b.get("Size", 0) for b in cache
                        if not b.get("Shared") and not b.get("InUse"))
    rows = [
        _DfRow("Images", len(images), active, size, reclaim),
        _DfRow("Containers", len(containers),
               sum(1 for c in containers if c.get("State") == "running"),
               sum(c.get("SizeRw", 0) for c in containers),
               sum(c.get("SizeRw", 0) for c in containers if c.get("State") != "running")),
        _DfRow("Local Volumes", len(volumes), sum(1 for v in volumes if _refs(v) > 0),
               sum(max(_vsize(v), 0) for v in volumes),
               sum(max(_vsize(v), 0) for v in volumes if _refs(v) == 0)),
        _DfRow("Build Cache", len(cache), sum(1 for b in cache if b.get("InUse")),
               cache_size, cache_reclaim),
    ]
    if o.verbose and not o.format:
        return _df_verbose(du)
    fmt = o.format or ("table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t"
                       "{{.Reclaimable}}")
    header = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
              "Reclaimable": "RECLAIMABLE"}
    if fmt == "table":
        fmt = ("table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t"
               "{{.Reclaimable}}")
    sys.stdout.write(format_rows(fmt, rows, header))
    return 0


def _df_verbose(du: dict) -> int:
    from dockyard.cli.cmd_images import ImageRow, image_rows

    out = ["Images space usage:", ""]
    rows = []
    for img in du.get("Images") or []:
        # docker shows one row per image, named by its first tag only
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        first = image_rows([{**img, "RepoTags": tags[:1], "RepoDigests": []}],
                           digests=False, trunc=True)
        rows.extend(first[:1])
    fmt = ("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t"
           "{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.write(format_rows(fmt, rows, ImageRow.HEADER))
    sys.stdout.write("\nContainers space usage:\n\n")
    lines = ["CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES\n"]
    from dockyard.cli.units import ellipsis, since

    for c in du.get("Containers") or []:
        vols = sum(1 for m in c.get("Mounts") or [] if m.get("Type") == "volume")
        cmd = '"' + ellipsis(c.get("Command", ""), 19) + '"'
        lines.append(f"{c['Id'][:12]}\t{c.get('Image', '')}\t{cmd}\t{vols}\t"
                     f"{human_size(c.get('SizeRw', 0))}\t{since(c.get('Created', 0))}\t"
                     f"{c.get('Status', '')}\t{(c.get('Names') or ['/'])[0].lstrip('/')}\n")
    sys.stdout.write(tabwrite("".join(lines)))
    sys.stdout.write("\nLocal Volumes space usage:\n\n")
    lines = ["VOLUME NAME\tLINKS\tSIZE\n"]
    for v in du.get("Volumes") or []:
        size = _vsize(v)
        lines.append(f"{v['Name']}\t{_refs(v)}\t{human_size(size) if size >= 0 else 'N/A'}\n")
    sys.stdout.write(tabwrite("".join(lines)))
    cache = du.get("BuildCache") or []
    total = sum(b.get("Size", 0) for b in cache if not b.get("Shared"))
    sys.stdout.write(f"\nBuild cache usage: {human_size(total)}\n\n")
    lines = ["CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED\n"]
    for b in cache:
        lines.append(f"{b.get('ID', '')[:12]}\t{b.get('Type', '')}\t"
                     f"{human_size(b.get('Size', 0))}"
                     f"\t{_ago(b.get('CreatedAt'))}\t{_ago(b.get('LastUsedAt'))}\t"
                     f"{b.get('UsageCount', 0)}\t{'true' if b.get('Shared') else 'false'}\n")
    sys.stdout.write(tabwrite("".join(lines)))
    return 0


def _refs(v: dict) -> int:
    return int((v.get("UsageData") or {}).get("RefCount", 0))


def _vsize(v: dict) -> int:
    return int((v.get("UsageData") or {}).get("Size", -1))


def _ago(ts: str | None) -> str:
    if not ts:
        return ""
    from datetime import datetime

    from dockyard.cli.units import since
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00")[:26] + "+00:00"
                                   if ts.endswith("Z") else ts)
    except ValueError:
        return ""
    return since(t.timestamp())


# -------------------------------------------------------------------------- prune


def _confirm(text: str, force: bool) -> bool:
    if force:
        return True
    sys.stdout.write(f"{text}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower() if sys.stdin else ""
    return answer in ("y", "yes")


def _filter_flags(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq:
            from dockyard.cli.parser import UsageError
            raise UsageError("bad format of filter (expected name=value)", 125)
        out.setdefault(k, []).append(val)
    return out


def _cache_report(report: dict) -> tuple[str, int]:
    ids = report.get("CachesDeleted") or []
    text = ("Deleted build cache objects:\n" + "".join(i + "\n" for i in ids) + "\n"
            if ids else "")
    return text, int(report.get("SpaceReclaimed") or 0)


def cmd_builder_prune(g, argv: list[str]) -> int:
    p = CommandParser("builder prune", "", "Remove build cache")
    p.add_flag("-a", "--all", help="Remove all unused build cache, not just dangling ones")
    p.add_argument("--filter", action="append", default=[],
                   help='Provide filter values (e.g. "until=24h")')
    p.add_flag("-f", "--force", help="Do not prompt for confirmation")
    p.add_argument("--keep-storage", help="Amount of disk space to keep for cache")
    o = p.parse(argv)
    keep = 0
    if o.keep_storage:
        from dockyard.cli.runopts import ram_in_bytes
        try:
            keep = ram_in_bytes(o.keep_storage)
        except ValueError as e:
            from dockyard.cli.parser import UsageError
            raise UsageError(f'invalid argument "{o.keep_storage}" for "--keep-storage" '
                             f"flag: {e}", 125) from None
    warning = ("WARNING! This will remove all build cache." if o.all else
               "WARNING! This will remove all dangling build cache.")
    if not _confirm(warning, o.force):
        return 0
    text, reclaimed = _cache_report(g.client().prune_build_cache(
        o.all, _filter_flags(o.filter), keep))
    sys.stdout.write(text + f"Total:\t{human_size(reclaimed)}\n")
    return 0


def cmd_system_prune(g, argv: list[str]) -> int:
    p = CommandParser("system prune", "[OPTIONS]", "Remove unused data")
    p.add_flag("-a", "--all", help="Remove all unused images not just dangling ones")
    p.add_argument("--filter", action="append", default=[],
                   help='Provide filter values (e.g. "label=<key>=<value>")')
    p.add_flag("-f", "--force", help="Do not prompt for confirmation")
    p.add_flag("--volumes", help="Prune anonymous volumes")
    o = p.parse(argv)
    lines = ["WARNING! This will remove:", "  - all stopped containers",
             "  - all networks not used by at least one container"]
    if o.volumes:
        lines.append("  - all anonymous volumes not used by at least one container")
    lines.append("  - all images without at least one container associated to them"
                 if o.all else "  - all dangling images")
    lines.append("  - all build cache" if o.all else "  - unused build cache")
    if not _confirm("\n".join(lines) + "\n", o.force):
        return 0
    import json

    filters = _filter_flags(o.filter)
    c = g.client()
    out, reclaimed = [], 0
    rep = c.prune_containers(filters)
    if rep.get("ContainersDeleted"):
        out.append("Deleted Containers:\n" + "".join(i + "\n" for i in rep["ContainersDeleted"]))
    reclaimed += int(rep.get("SpaceReclaimed") or 0)
    from dockyard.client.api import _filters
    net_filters = {k: v for k, v in filters.items() if k in ("label", "label!", "until")}
    rep = json.loads(c.request("POST", "/networks/prune",
                               {"filters": _filters(net_filters)}).read() or b"{}")
    if rep.get("NetworksDeleted"):
        out.append("Deleted Networks:\n" + "".join(i + "\n" for i in rep["NetworksDeleted"]))
    img_filters = dict(filters)
    img_filters["dangling"] = ["false" if o.all else "true"]
    rep = c.prune_images(img_filters)
    if rep.get("ImagesDeleted"):
        rows = []
        for st in rep["ImagesDeleted"]:
            rows.append(f"untagged: {st['Untagged']}\n" if st.get("Untagged")
                        else f"deleted: {st.get('Deleted', '')}\n")
        out.append("Deleted Images:\n" + "".join(rows))
    reclaimed += int(rep.get("SpaceReclaimed") or 0)
    cache_filters = {k: v for k, v in filters.items() if k in ("until", "label", "label!")}
    text, n = _cache_report(c.prune_build_cache(o.all, cache_filters))
    reclaimed += n
    sys.stdout.write("".join(s + "\n" for s in out) + text)
    sys.stdout.write(f"Total reclaimed space: {human_size(reclaimed)}\n")
    return 0


del is_table, time
