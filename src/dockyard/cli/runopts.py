"""`run`/`create` flags -> the Engine API's create body, as the Docker CLI builds it.

Pure functions (no I/O except reading --env-file/--label-file): bad values raise
:class:`FlagError`, which the command turns into Docker's
``invalid argument "x" for "-m, --memory" flag: ...`` (exit 125).
"""

from __future__ import annotations

import re

from dockyard.cli.parser import CommandParser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class FlagError(Exception):
    """A bad flag value: ``flag`` as docker names it ("-m, --memory"), ``value``, ``why``."""

    def __init__(self, flag: str, value: str, why: str):
        super().__init__(f'invalid argument "{value}" for "{flag}" flag: {why}')


class OptionError(Exception):
    """A bad value docker only finds after parsing (-p, -v, --env-file, ...): printed as
    ``docker: <why>`` with the --help pointer, exit 125."""


# flags whose values docker's flag parser itself checks (typed pflag values); the others
# are checked when the create request is built, with a different message
_TYPED = {"memory", "memory_swap", "memory_reservation", "shm_size", "cpus", "ulimit",
          "cpu_shares", "pids_limit", "stop_timeout", "oom_score_adj", "cpu_period",
          "cpu_quota"}


# --------------------------------------------------------------------------- value parsers

_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(s: str) -> int:
    """go-units RAMInBytes: ``64m`` -> 67108864; ``-1`` stays -1 (unlimited swap)."""
    if s.strip() == "-1":
        return -1
    m = _RAM.match(s)
    if not m:
        raise ValueError(f"invalid size: '{s}'")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def nano_cpus(s: str) -> int:
    try:
        v = float(s)
    except ValueError:
        raise ValueError("failed to parse " + s + " as a rational number") from None
    if v < 0:
        raise ValueError("invalid value: " + s)
    return int(round(v * 1e9))


def parse_restart(s: str) -> dict:
    """name[:count]; the daemon judges the combination (always:3 is its error to give)."""
    name, _, count = s.partition(":")
    pol: dict[str, Any] = {"Name": name, "MaximumRetryCount": 0}
    if count:
        try:
            pol["MaximumRetryCount"] = int(count)
        except ValueError:
            raise ValueError("invalid restart policy format: maximum retry count must be an "
                             "integer") from None
    return pol


def parse_ulimit(s: str) -> dict:
    name, eq, rng = s.partition("=")
    if not eq:
        raise ValueError(f"invalid ulimit argument: {s}")
    soft, _, hard = rng.partition(":")
    try:
        sv = int(soft)
        hv = int(hard) if hard else sv
    except ValueError:
        raise ValueError(f"invalid ulimit argument: {s}") from None
    if sv > hv:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: "
                         f"{sv} > {hv}")
    return {"Name": name, "Hard": hv, "Soft": sv}


def normalize_cap(c: str) -> str:
    c = c.strip().upper()
    if c == "ALL" or c.startswith("CAP_"):
        return c
    return "CAP_" + c


def read_kv_file(path: str, what: str) -> list[str]:
    """--env-file / --label-file: KEY=VALUE lines; '#' comments; a bare KEY takes $KEY."""
    import os

    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n").lstrip()
            if not line or line.startswith("#"):
                continue
            key, eq, val = line.partition("=")
            if not key:
                raise ValueError(f"no variable name on line '{line}'")
            if " " in key or "\t" in key:
                raise ValueError(f"variable '{key}' contains whitespaces")
            if eq:
                out.append(f"{key}={val}")
            elif what == "env":
                if key in os.environ:
                    out.append(f"{key}={os.environ[key]}")
            else:
                out.append(key)
    return out


def expand_env(items: list[str]) -> list[str]:
    """-e KEY without a value takes KEY from our environment (dropped if unset)."""
    import os

    out = []
    for e in items:
        if "=" in e:
            out.append(e)
        elif e in os.environ:
            out.append(f"{e}={os.environ[e]}")
    return out


def _parse_port_range(s: str) -> tuple[int, int]:
    lo, _, hi = s.partition("-")
    a = int(lo)
    b = int(hi) if hi else a
    if not (0 <= a <= 65535 and 0 <= b <= 65535) or b < a:
        raise ValueError
    return a, b


def parse_publish(specs: list[str]) -> tuple[dict, dict]:
    """-p values -> (ExposedPorts, PortBindings) like nat.ParsePortSpecs."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list] = {}
    for spec in specs:
        raw = spec
        proto = "tcp"
        if "/" in spec:
            spec, proto = spec.rsplit("/", 1)
            proto = proto.lower()
            if proto not in ("tcp", "udp", "sctp"):
                raise ValueError(f"invalid proto: {proto}")
        ip, host_port, cport = "", "", spec
        if spec.startswith("["):  # [v6]:host:container
            end = spec.find("]")
            ip = spec[1:end]
            rest = spec[end + 2:]
            host_port, _, cport = rest.rpartition(":")
        else:
            parts = spec.split(":")
            if len(parts) == 1:
                cport = parts[0]
            elif len(parts) == 2:
                host_port, cport = parts
            elif len(parts) == 3:
                ip, host_port, cport = parts
            else:
                ip = ":".join(parts[:-2])
                host_port, cport = parts[-2], parts[-1]
        if not cport:
            raise ValueError(f"no port specified: {raw}<empty>")
        try:
            c0, c1 = _parse_port_range(cport)
        except ValueError:
            raise ValueError(f"invalid containerPort: {cport}") from None
        h0 = h1 = 0
        if host_port:
            try:
                h0, h1 = _parse_port_range(host_port)
            except ValueError:
                raise ValueError(f"invalid hostPort: {host_port}") from None
            if (h1 - h0) != (c1 - c0) and h0 != h1:
                raise ValueError(f"invalid ranges specified for container and host Ports: "
                                 f"{cport} and {host_port}")
        for i, port in enumerate(range(c0, c1 + 1)):
            key = f"{port}/{proto}"
            exposed[key] = {}
            if not host_port:
                hp = ""
            elif h0 == h1:
                hp = str(h0)
            elif c0 == c1:
                hp = f"{h0}-{h1}"
            else:
                hp = str(h0 + i)
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
    return exposed, bindings


def parse_expose(specs: list[str]) -> dict:
    out: dict[str, dict] = {}
    for spec in specs:
        port, _, proto = spec.partition("/")
        proto = proto or "tcp"
        try:
            a, b = _parse_port_range(port)
        except ValueError:
            raise ValueError(f"invalid range format for --expose: {spec}") from None
        for p in range(a, b + 1):
            out[f"{p}/{proto}"] = {}
    return out


def parse_tmpfs(specs: list[str]) -> dict:
    out = {}
    for s in specs:
        path, _, opts = s.partition(":")
        if not path.startswith("/"):
            raise ValueError(f"invalid mount path {path!r}: not absolute")
        out[path] = opts
    return out


def parse_labels(items: list[str]) -> dict:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def parse_volume(spec: str) -> str:
    import os

    if spec.startswith(".") and ":" in spec:   # a relative host path, made absolute (docker's)
        src, _, rest = spec.partition(":")
        spec = os.path.abspath(src) + ":" + rest
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0] or (len(parts) >= 2 and not parts[1]):
        raise ValueError(f"invalid spec: {spec}: empty section between colons"
                         if "" in parts else f"invalid volume specification: '{spec}'")
    if len(parts) >= 2 and not parts[1].startswith("/"):
        raise ValueError(f"invalid volume specification: '{spec}': invalid mount config for "
                         "type \"bind\": invalid mount path: '" + parts[1] +
                         "' mount path must be absolute")
    return spec


# --------------------------------------------------------------------------- flags

def security_opts(opts: list[str]) -> tuple[list[str], list | None]:
    """--security-opt as the docker CLI sends it: a seccomp profile's file read and its
    JSON sent (compacted); ``systempaths=unconfined`` becomes empty MaskedPaths and
    ReadonlyPaths (returned as the second item, None when not given)."""
    import json

    out: list[str] = []
    masked = None
    for opt in opts or []:
        if opt == "systempaths=unconfined":
            masked = []
            continue
        key, sep, val = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "seccomp" and sep and val != "unconfined":
            try:
                with open(val, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise OptionError(f"opening seccomp profile ({val}) failed: open {val}: "
                                  f"{(e.strerror or str(e)).lower()}") from None
            try:
                profile = json.loads(data)
            except ValueError as e:
                raise OptionError(f"compacting json for seccomp profile ({val}) failed: "
                                  f"{e}") from None
            opt = "seccomp=" + json.dumps(profile, separators=(",", ":"))
        out.append(opt)
    return out, masked


def add_container_flags(p: CommandParser) -> None:
    """The flags `create` and `run` share (Docker's names, help texts shortened)."""
    a = p.add_argument
    app = dict(action="append", default=[])
    p.add_flag("-i", "--interactive", help="Keep STDIN open even if not attached")
    p.add_flag("-t", "--tty", help="Allocate a pseudo-TTY")
    p.add_argument("-a", "--attach", help="Attach to STDIN, STDOUT or STDERR", **app)
    a("--name", help="Assign a name to the container")
    a("-e", "--env", help="Set environment variables", **app)
    a("--env-file", help="Read in a file of environment variables", **app)
    a("-w", "--workdir", help="Working directory inside the container")
    a("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    a("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    a("-h", "--hostname", help="Container host name")
    a("--domainname", help="Container NIS domain name")
    a("-l", "--label", help="Set meta data on a container", **app)
    a("--label-file", help="Read in a line delimited file of labels", **app)
    a("--restart", default="no", help='Restart policy to apply when a container exits')
    p.add_flag("--rm", help="Automatically remove the container when it exits")
    p.add_flag("--init", help="Run an init inside the container")
    p.add_flag("--read-only", help="Mount the container's root filesystem as read only")
    a("--cap-add", help="Add Linux capabilities", **app)
    a("--cap-drop", help="Drop Linux capabilities", **app)
    p.add_flag("--privileged", help="Give extended privileges to this container")
    a("--security-opt", help="Security Options", **app)
    a("--ulimit", help="Ulimit options", **app)
    a("-m", "--memory", help="Memory limit")
    a("--memory-swap", help="Swap limit equal to memory plus swap: '-1' to enable "
      "unlimited swap")
    a("--memory-reservation", help="Memory soft limit")
    a("--cpus", help="Number of CPUs")
    a("-c", "--cpu-shares", help="CPU shares (relative weight)")
    a("--cpu-period", help="Limit CPU CFS (Completely Fair Scheduler) period")
    a("--cpu-quota", help="Limit CPU CFS (Completely Fair Scheduler) quota")
    a("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    a("--pids-limit", help="Tune container pids limit (set -1 for unlimited)")
    a("--oom-kill-disable", action="store_true", help="Disable OOM Killer")
    a("--oom-score-adj", help="Tune host's OOM preferences (-1000 to 1000)")
    a("--shm-size", help="Size of /dev/shm")
    a("--stop-signal", help="Signal to stop the container")
    a("--stop-timeout", help="Timeout (in seconds) to stop a container")
    a("--tmpfs", help="Mount a tmpfs directory", **app)
    a("-v", "--volume", help="Bind mount a volume", **app)
    a("--mount", help="Attach a filesystem mount to the container", **app)
    a("--volumes-from", help="Mount volumes from the specified container(s)", **app)
    a("--volume-driver", help="Optional volume driver for the container")
    a("-p", "--publish", help="Publish a container's port(s) to the host", **app)
    p.add_flag("-P", "--publish-all", help="Publish all exposed ports to random ports")
    a("--expose", help="Expose a port or a range of ports", **app)
    a("--network", "--net", help="Connect a container to a network")
    a("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    a("--ip6", help="IPv6 address (e.g., 2001:db8::33)")
    a("--link-local-ip", help="Container IPv4/IPv6 link-local addresses", **app)
    a("--network-alias", help="Add network-scoped alias for the container", **app)
    a("--dns", help="Set custom DNS servers", **app)
    a("--dns-search", help="Set custom DNS search domains", **app)
    a("--dns-option", help="Set DNS options", **app)
    a("--add-host", help="Add a custom host-to-IP mapping (host:ip)", **app)
    a("--mac-address", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)")
    a("--runtime", help="Runtime to use for this container")
    a("--pull", default="missing", help='Pull image before running ("always", "missing", '
      '"never")')
    a("--platform", help="Set platform if server is multi-platform capable")
    a("--cgroup-parent", help="Optional parent cgroup for the container")
    a("--device", help="Add a host device to the container", **app)
    a("--group-add", help="Add additional groups to join", **app)
    a("--sysctl", help="Sysctl options", **app)
    a("--ipc", help="IPC mode to use")
    a("--pid", help="PID namespace to use")
    a("--uts", help="UTS namespace to use")
    a("--userns", help="User namespace to use")
    a("--cgroupns", help="Cgroup namespace to use (host|private)")
    a("--log-driver", help="Logging driver for the container")
    a("--log-opt", help="Log driver options", **app)
    a("--cidfile", help="Write the container ID to the file")
    a("-q", "--quiet", action="store_true", help="Suppress the pull output")


def _flag_name(p: CommandParser, dest: str) -> str:
    for act in p._actions:
        if act.dest == dest:
            shorts = [o for o in act.option_strings if not o.startswith("--")]
            longs = [o for o in act.option_strings if o.startswith("--")]
            return ", ".join(shorts[:1] + longs[:1])
    return "--" + dest.replace("_", "-")


def split_interspersed(p: CommandParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """Docker stops parsing flags at the first positional (`run IMG ls -l`)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return argv[:i], argv[i + 1:]
        if not a.startswith("-") or a == "-":
            return argv[:i], argv[i:]
        if a.startswith("--"):
            name = a.split("=", 1)[0]
            act = next((x for x in p._actions if name in x.option_strings), None)
            i += 2 if act is not None and act.nargs != 0 and "=" not in a else 1
            continue
        step = 1
        for j, ch in enumerate(a[1:]):
            act = next((x for x in p._actions if "-" + ch in x.option_strings), None)
            if act is None:
                break
            if act.nargs != 0:
                if j == len(a) - 2:
                    step = 2
                break
        i += step
    return argv, []


def build_create(p: CommandParser, o: Any, image: str, cmd: list[str],
                 console: tuple[int, int] = (0, 0)) -> dict:
    """Flags -> create body (Config + HostConfig + NetworkingConfig)."""

    def conv(dest: str, fn, value):
        try:
            return fn(value)
        except (ValueError, OSError) as e:
            msg = str(e)
            if isinstance(e, OSError):
                msg = f"open {value}: {(e.strerror or str(e)).lower()}"
            if dest not in _TYPED:
                raise OptionError(msg) from None
            raise FlagError(_flag_name(p, dest), value, msg) from None

    attach = [s.lower() for s in o.attach]
    for s in attach:
        if s not in ("stdin", "stdout", "stderr"):
            raise FlagError("-a, --attach", s, "valid streams are STDIN, STDOUT and STDERR")
    detach = getattr(o, "detach", False)
    if attach:
        att_in, att_out, att_err = ("stdin" in attach, "stdout" in attach, "stderr" in attach)
    elif detach:
        att_in = att_out = att_err = False
    else:
        att_in, att_out, att_err = o.interactive, True, True
    env: list[str] = []
    for f in o.env_file:
        env += conv("env_file", lambda v: read_kv_file(v, "env"), f)
    env += expand_env(o.env)
    labels_list: list[str] = []
    for f in o.label_file:
        labels_list += conv("label_file", lambda v: read_kv_file(v, "label"), f)
    labels_list += o.label
    exposed: dict[str, dict] = {}
    bindings: dict[str, list] = {}
    for spec in o.publish:
        e, b = conv("publish", lambda v: parse_publish([v]), spec)
        exposed.update(e)
        for k, v in b.items():
            bindings.setdefault(k, []).extend(v)
    for spec in o.expose:
        exposed.update(conv("expose", lambda v: parse_expose([v]), spec))
    binds, anon_volumes = [], {}
    for v in o.volume:
        spec = conv("volume", parse_volume, v)
        if ":" in spec:
            binds.append(spec)
        else:
            anon_volumes[spec] = {}   # -v /path: an anonymous volume (Config.Volumes), as docker's
    binds = binds or None
    if o.rm and o.restart.partition(":")[0] not in ("", "no"):
        raise OptionError("conflicting options: cannot specify both --restart and --rm")
    restart = conv("restart", parse_restart, o.restart)
    ulimits = [conv("ulimit", parse_ulimit, u) for u in o.ulimit]

    def intval(dest, v):
        return conv(dest, lambda s: int(s), v) if v not in (None, "") else 0

    memory = conv("memory", ram_in_bytes, o.memory) if o.memory else 0
    swap = conv("memory_swap", ram_in_bytes, o.memory_swap) if o.memory_swap else 0
    mem_res = conv("memory_reservation", ram_in_bytes, o.memory_reservation) \
        if o.memory_reservation else 0
    shm = conv("shm_size", ram_in_bytes, o.shm_size) if o.shm_size else 0
    cpus = conv("cpus", nano_cpus, o.cpus) if o.cpus else 0
    entrypoint = None
    if o.entrypoint is not None:
        entrypoint = [o.entrypoint] if o.entrypoint else [""]
    network = o.network or "default"
    endpoints: dict[str, Any] = {}
    if o.ip or o.ip6 or o.network_alias or o.link_local_ip:
        ep: dict[str, Any] = {}
        if o.ip or o.ip6 or o.link_local_ip:
            ep["IPAMConfig"] = {"IPv4Address": o.ip or "", "IPv6Address": o.ip6 or ""}
            if o.link_local_ip:
                ep["IPAMConfig"]["LinkLocalIPs"] = list(o.link_local_ip)
        if o.network_alias:
            ep["Aliases"] = list(o.network_alias)
        endpoints[network] = ep
    if o.mac_address:
        endpoints.setdefault(network, {})["MacAddress"] = o.mac_address
    sysctls = {}
    for s in o.sysctl:
        k, eq, v = s.partition("=")
        if not eq:
            raise FlagError("--sysctl", s, f"sysctl '{s}' is not allowed")
        sysctls[k] = v
    log_cfg = {}
    for s in o.log_opt:
        k, _, v = s.partition("=")
        log_cfg[k] = v
    devices = []
    for d in o.device:
        parts = d.split(":")
        devices.append({"PathOnHost": parts[0],
                        "PathInContainer": parts[1] if len(parts) > 1 else parts[0],
                        "CgroupPermissions": parts[2] if len(parts) > 2 else "rwm"})
    sec_opts, masked = security_opts(o.security_opt)
    host: dict[str, Any] = {
        "Binds": binds, "ContainerIDFile": "",
        "LogConfig": {"Type": o.log_driver or "", "Config": log_cfg},
        "NetworkMode": network, "PortBindings": bindings, "RestartPolicy": restart,
        "AutoRemove": bool(o.rm), "VolumeDriver": o.volume_driver or "",
        "VolumesFrom": list(o.volumes_from) or None,
        "ConsoleSize": list(console),
        "CapAdd": [normalize_cap(c) for c in o.cap_add] or None,
        "CapDrop": [normalize_cap(c) for c in o.cap_drop] or None,
        "CgroupnsMode": o.cgroupns or "", "Dns": list(o.dns), "DnsOptions": list(o.dns_option),
        "DnsSearch": list(o.dns_search), "ExtraHosts": list(o.add_host) or None,
        "GroupAdd": list(o.group_add) or None, "IpcMode": o.ipc or "", "Cgroup": "",
        "Links": None, "OomScoreAdj": intval("oom_score_adj", o.oom_score_adj),
        "PidMode": o.pid or "", "Privileged": bool(o.privileged),
        "PublishAllPorts": bool(o.publish_all), "ReadonlyRootfs": bool(o.read_only),
        "SecurityOpt": sec_opts or None, "UTSMode": o.uts or "",
        "UsernsMode": o.userns or "", "ShmSize": shm, "Isolation": "",
        "CpuShares": intval("cpu_shares", o.cpu_shares), "Memory": memory, "NanoCpus": cpus,
        "CgroupParent": o.cgroup_parent or "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [],
        "CpuPeriod": intval("cpu_period", o.cpu_period),
        "CpuQuota": intval("cpu_quota", o.cpu_quota), "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": o.cpuset_cpus or "", "CpusetMems": o.cpuset_mems or "",
        "Devices": devices, "DeviceCgroupRules": None, "DeviceRequests": None,
        "MemoryReservation": mem_res, "MemorySwap": swap,
        "MemorySwappiness": -1, "OomKillDisable": bool(o.oom_kill_disable),
        "PidsLimit": intval("pids_limit", o.pids_limit), "Ulimits": ulimits,
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": masked, "ReadonlyPaths": masked,
    }
    if o.tmpfs:
        host["Tmpfs"] = {}
        for t in o.tmpfs:
            host["Tmpfs"].update(conv("tmpfs", lambda v: parse_tmpfs([v]), t))
    if o.runtime:
        host["Runtime"] = o.runtime
    if o.init:
        host["Init"] = True
    if sysctls:
        host["Sysctls"] = sysctls
    if o.mount:
        host["Mounts"] = [conv("mount", parse_mount, m) for m in o.mount]
    body: dict[str, Any] = {
        "Hostname": o.hostname or "", "Domainname": o.domainname or "", "User": o.user or "",
        "AttachStdin": att_in, "AttachStdout": att_out, "AttachStderr": att_err,
        "Tty": bool(o.tty), "OpenStdin": bool(o.interactive),
        "StdinOnce": bool(o.interactive) and not detach and att_in,
        "Env": env or None, "Cmd": cmd or None, "Image": image, "Volumes": anon_volumes,
        "WorkingDir": o.workdir or "", "Entrypoint": entrypoint, "OnBuild": None,
        "Labels": parse_labels(labels_list),
    }
    if exposed:
        body["ExposedPorts"] = exposed
    if o.stop_signal:
        body["StopSignal"] = o.stop_signal
    if o.stop_timeout not in (None, ""):
        body["StopTimeout"] = intval("stop_timeout", o.stop_timeout)
    body["HostConfig"] = host
    body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    return body


def parse_mount(spec: str) -> dict:
    """--mount type=bind,source=/a,target=/b[,readonly,...] -> a Mounts entry (the docker
    CLI's keys)."""
    m: dict[str, Any] = {"Type": "volume"}

    def truth(eq: str, v: str) -> bool:
        if not eq:
            return True
        if v.lower() in ("1", "true"):
            return True
        if v.lower() in ("0", "false"):
            return False
        raise ValueError(f"invalid value for '{k}': {v}")

    for field in spec.split(","):
        k, eq, v = field.partition("=")
        k = k.strip().lower()
        if k == "type":
            m["Type"] = v
        elif k in ("source", "src"):
            m["Source"] = v
        elif k in ("target", "destination", "dst"):
            m["Target"] = v
        elif k in ("readonly", "ro"):
            m["ReadOnly"] = truth(eq, v)
        elif k == "consistency":
            m["Consistency"] = v
        elif k == "bind-propagation":
            m.setdefault("BindOptions", {})["Propagation"] = v
        elif k == "bind-nonrecursive":
            m.setdefault("BindOptions", {})["NonRecursive"] = truth(eq, v)
        elif k == "bind-recursive":
            bo = m.setdefault("BindOptions", {})
            if v == "enabled":
                pass
            elif v == "disabled":
                bo["NonRecursive"] = True
            elif v == "writable":
                bo["ReadOnlyNonRecursive"] = True
            elif v == "readonly":
                bo["ReadOnlyForceRecursive"] = True
            else:
                raise ValueError(f"invalid value for {k}: {v} (must be \"enabled\", "
                                 f"\"disabled\", \"writable\", or \"readonly\")")
        elif k == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = truth(eq, v)
        elif k == "volume-subpath":
            m.setdefault("VolumeOptions", {})["Subpath"] = v
        elif k == "volume-label":
            lk, _, lv = v.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("Labels", {})[lk] = lv
        elif k == "volume-driver":
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})["Name"] = v
        elif k == "volume-opt":
            ok, _, ov = v.partition("=")
            dc = m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})
            dc.setdefault("Options", {})[ok] = ov
        elif k == "tmpfs-size":
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = ram_in_bytes(v)
        elif k == "tmpfs-mode":
            m.setdefault("TmpfsOptions", {})["Mode"] = int(v, 8)
        else:
            raise ValueError(f"unexpected key '{k}' in '{field}'")
    if "Target" not in m:
        raise ValueError("target is required")
    return m
