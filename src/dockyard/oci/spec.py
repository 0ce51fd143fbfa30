"""A container's Docker configuration -> an OCI runtime spec, with Docker's defaults.

Pure: plain dicts in (the API's Config and HostConfig, the image config, paths the
daemon prepared), a config.json dict out. Docker's security defaults live here:
the capability set, masked and read-only paths, the device allowlist, the
mounts every container gets, and the default seccomp profile.
"""

from __future__ import annotations

import os
import signal as _signal

DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

ALL_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]

READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# Devices every container may use (the device cgroup denies the rest).
DEFAULT_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},   # zero
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # null
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},   # urandom
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},   # random
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},   # tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},   # console
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},   # full
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},   # ptmx
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},             # pts
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},  # fuse
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_RLIMITS = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
            "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as"}


class SpecError(ValueError):
    """The container's configuration cannot be turned into a spec (a user error)."""


def normalize_cap(name: str) -> str:
    n = name.strip().upper()
    if n == "ALL":
        return n
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    if n not in ALL_CAPS:
        raise SpecError(f"unknown capability: \"{name}\"")
    return n


def capabilities(cap_add: list[str] | None, cap_drop: list[str] | None,
                 privileged: bool) -> list[str]:
    """Docker's rule: start from the defaults (or all), add, then drop; ALL works both ways."""
    if privileged:
        return list(ALL_CAPS)
    adds = [normalize_cap(c) for c in cap_add or []]
    drops = [normalize_cap(c) for c in cap_drop or []]
    caps = list(ALL_CAPS) if "ALL" in adds else list(DEFAULT_CAPS)
    caps += [c for c in adds if c != "ALL" and c not in caps]
    if "ALL" in drops:
        return [c for c in caps if c in adds and c != "ALL"]
    return [c for c in caps if c not in drops]


def security_options(opts: list[str] | None) -> dict:
    """HostConfig.SecurityOpt, checked: ``no_new_privs`` (bool), ``seccomp`` (None for
    the default profile, ``"unconfined"``, or a Docker-format profile as a dict: the
    docker CLI sends the file's content), ``systempaths_unconfined`` (bool). What this
    daemon cannot apply (an AppArmor profile, SELinux labels) is refused, never dropped."""
    import json

    out: dict = {"no_new_privs": False, "seccomp": None, "systempaths_unconfined": False}
    for opt in opts or []:
        if opt in ("no-new-privileges", "label=disable", "label:disable", "disable"):
            out["no_new_privs"] = out["no_new_privs"] or opt == "no-new-privileges"
            continue
        sep = "=" if "=" in opt else ":"
        key, has, val = opt.partition(sep)
        if not has:
            raise SpecError(f"invalid --security-opt 1: {opt!r}")
        if key == "no-new-privileges":
            if val.lower() not in ("1", "t", "true", "0", "f", "false"):
                raise SpecError(f"invalid --security-opt 2: {opt!r}")
            out["no_new_privs"] = val.lower() in ("1", "t", "true")
        elif key == "seccomp":
            if val == "unconfined":
                out["seccomp"] = "unconfined"
                continue
            try:
                profile = json.loads(val)
            except ValueError as e:
                raise SpecError(f"Decoding seccomp profile failed: {e} (--security-opt seccomp= "
                                f"takes the profile's JSON, which the docker CLI reads from the "
                                f"file named)") from None
            from dockyard.oci import seccomp_default

            try:   # checked now: a bad profile is a 400 at create, not a failed start
                seccomp_default.oci_from_docker(profile, DEFAULT_CAPS)
            except seccomp_default.ProfileError as e:
                raise SpecError(f"Decoding seccomp profile failed: {e}") from None
            out["seccomp"] = profile
        elif key == "apparmor":
            if val != "unconfined":
                raise SpecError(f"invalid --security-opt {opt!r}: Dockyard does not support "
                                f"AppArmor profiles (only apparmor=unconfined)")
        elif key == "label":
            if val != "disable":
                raise SpecError(f"invalid --security-opt {opt!r}: Dockyard does not support "
                                f"SELinux labels (only label=disable)")
        elif key == "systempaths":
            if val != "unconfined":
                raise SpecError(f"invalid --security-opt {opt!r}: systempaths takes only "
                                f"'unconfined'")
            out["systempaths_unconfined"] = True
        else:
            raise SpecError(f"invalid --security-opt 2: {opt!r}")
    return out


def merge_env(image_env: list[str] | None, env: list[str] | None, hostname: str,
              tty: bool) -> list[str]:
    out: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if tty:
        out["TERM"] = "xterm"
    for item in list(image_env or []) + list(env or []):
        key, sep, value = item.partition("=")
        if not key:
            raise SpecError(f"invalid environment variable: {item}")
        if sep:
            out[key] = value
        elif key in os.environ:  # `-e NAME` takes the client's value; the CLI resolves it
            out[key] = os.environ[key]
    order = ["PATH", "HOSTNAME"] + [k for k in out if k not in ("PATH", "HOSTNAME")]
    return [f"{k}={out[k]}" for k in order]


def command(config: dict, image_config: dict) -> list[str]:
    """Entrypoint + Cmd, where the container's Entrypoint resets the image's Cmd."""
    entry = config.get("Entrypoint")
    cmd = config.get("Cmd")
    if entry is None:
        entry = image_config.get("Entrypoint") or []
        if not cmd:
            cmd = image_config.get("Cmd") or []
    elif not cmd:
        cmd = []
    if isinstance(entry, str):
        entry = [entry]
    if isinstance(cmd, str):
        cmd = [cmd]
    args = list(entry) + list(cmd)
    if not args:
        raise SpecError("no command specified")
    return args


def _passwd_lookup(rootfs: str, fname: str, key: str, by_name: bool) -> list[str] | None:
    """The first entry of the container's /etc/<fname> whose name (or id) is ``key``.

    Read through ``runtime.rootfiles``: resolved inside ``rootfs`` without following
    a symlink out of it, a regular file only, bounded (the image is not trusted)."""
    from dockyard.runtime import rootfiles

    for parts in rootfiles.entries(rootfs, f"/etc/{fname}", 4):
        if (parts[0] if by_name else parts[2]) == key:
            return parts
    return None


def resolve_user(user: str, rootfs: str, group_add: list[str] | None = None) -> dict:
    """``user[:group]`` by name or id, against the container's own /etc/passwd and /etc/group."""
    user = user or ""
    name, _, group = user.partition(":")
    uid, gid = 0, 0
    if name:
        if name.isdigit():
            uid = int(name)
            entry = _passwd_lookup(rootfs, "passwd", name, by_name=False)
            gid = int(entry[3]) if entry else 0
        else:
            entry = _passwd_lookup(rootfs, "passwd", name, by_name=True)
            if entry is None:
                raise SpecError(f"unable to find user {name}: no matching entries in passwd file")
            uid, gid = int(entry[2]), int(entry[3])
    if group:
        gid = _group_id(group, rootfs)
    additional = [_group_id(g, rootfs) for g in group_add or []]
    username = name
    if not name or name.isdigit():
        # No USER is uid 0: its name comes from the image's passwd too (runc's GetExecUser),
        # so root gets the groups that list it (busybox's wheel), as under dockerd.
        entry = _passwd_lookup(rootfs, "passwd", name or "0", by_name=False)
        username = entry[0] if entry else ""
    # dockerd's list: the primary group, then (without an explicit group) every group of
    # the image's /etc/group that names the user, then --group-add.
    additional.append(gid)
    if username and not group:
        additional += _member_groups(username, rootfs, exclude=gid)
    return {"uid": uid, "gid": gid, "additionalGids": sorted(set(additional))}


def home_dir(uid: int, rootfs: str) -> str:
    entry = _passwd_lookup(rootfs, "passwd", str(uid), by_name=False)
    return entry[5] if entry and len(entry) > 5 and entry[5] else "/"


def _group_id(group: str, rootfs: str) -> int:
    if group.isdigit():
        return int(group)
    entry = _passwd_lookup(rootfs, "group", group, by_name=True)
    if entry is None:
        raise SpecError(f"unable to find group {group}: no matching entries in group file")
    return int(entry[2])


def _member_groups(user: str, rootfs: str, exclude: int) -> list[int]:
    from dockyard.runtime import rootfiles

    out = []
    for parts in rootfiles.entries(rootfs, "/etc/group", 4):
        if user in parts[3].split(",") and parts[2].isdigit() and int(parts[2]) != exclude:
            out.append(int(parts[2]))
    return out


def parse_signal(sig: str | int | None, default: str = "SIGTERM") -> int:
    if sig is None or sig == "":
        sig = default
    if isinstance(sig, int) or str(sig).isdigit():
        n = int(sig)
        if n <= 0 or n > 64:
            raise SpecError(f"invalid signal: {sig}")
        return n
    name = str(sig).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(_signal, name))
    except AttributeError:
        raise SpecError(f"invalid signal: {sig}") from None


def _default_mounts(shm_size: int) -> list[dict]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
    ]


def parse_bind(spec: str) -> dict:
    """``-v /host:/ctr[:ro|rw|z|Z|...]`` -> an OCI bind mount (named volumes are the daemon's job)."""
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise SpecError(f"invalid volume specification: '{spec}'")
    src, dst = parts[0], parts[1]
    mode = parts[2].split(",") if len(parts) == 3 else []
    if not dst.startswith("/"):
        raise SpecError(f"invalid volume specification: '{spec}': invalid mount config for type "
                        f"\"bind\": invalid mount path: '{dst}' mount path must be absolute")
    if dst == "/":
        raise SpecError(f"invalid volume specification: '{spec}': invalid mount config for type "
                        f"\"bind\": invalid specification: destination can't be '/'")
    opts = ["rbind"]
    known = {"ro", "rw", "z", "Z", "shared", "rshared", "slave", "rslave", "private",
             "rprivate", "nocopy", "consistent", "cached", "delegated"}
    for m in mode:
        if m not in known:
            raise SpecError(f"invalid volume specification: '{spec}': invalid mode: {m}")
    opts.append("ro" if "ro" in mode else "rw")
    prop = next((m for m in mode if m.endswith(("shared", "slave", "private"))), "rprivate")
    opts.append(prop)
    return {"destination": os.path.normpath(dst), "type": "bind", "source": src, "options": opts}


def parse_tmpfs(dest: str, options: str) -> dict:
    if not dest.startswith("/"):
        raise SpecError(f"invalid mount path: '{dest}' mount path must be absolute")
    opts = ["nosuid", "nodev", "noexec"]
    for o in filter(None, (options or "").split(",")):
        if o in ("exec", "suid", "dev"):
            opts.remove("no" + o)
        elif o not in opts:
            opts.append(o)
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts}


def resources(host: dict) -> dict:
    res: dict = {"devices": [dict(r) for r in DEFAULT_DEVICE_RULES]}
    mem: dict = {}
    if host.get("Memory"):
        if host["Memory"] < 6 * 1024 * 1024:
            raise SpecError("Minimum memory limit allowed is 6MB")
        mem["limit"] = int(host["Memory"])
    if host.get("MemoryReservation"):
        mem["reservation"] = int(host["MemoryReservation"])
    swap = host.get("MemorySwap")
    if swap and swap > 0:
        if not host.get("Memory"):
            raise SpecError("You should always set the Memory limit when using Memoryswap limit, "
                            "see usage.")
        if swap < host["Memory"]:
            raise SpecError("Minimum memoryswap limit should be larger than memory limit, "
                            "see usage.")
        mem["swap"] = int(swap)
    elif swap == -1:
        mem["swap"] = -1
    if host.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    sw = host.get("MemorySwappiness")
    if sw is not None and sw != -1:
        if not 0 <= sw <= 100:
            raise SpecError(f"Invalid value: {sw}, valid memory swappiness range is 0-100")
        mem["swappiness"] = int(sw)
    if mem:
        res["memory"] = mem
    cpu: dict = {}
    if host.get("CpuShares"):
        cpu["shares"] = int(host["CpuShares"])
    if host.get("NanoCpus"):
        if host.get("CpuQuota") or host.get("CpuPeriod"):
            raise SpecError("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
        ncpu = os.cpu_count() or 1
        if host["NanoCpus"] > ncpu * 1_000_000_000:
            raise SpecError(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} "
                            f"CPUs available")
        cpu["period"] = 100000
        cpu["quota"] = int(host["NanoCpus"] * 100000 // 1_000_000_000)
    if host.get("CpuQuota"):
        cpu["quota"] = int(host["CpuQuota"])
    if host.get("CpuPeriod"):
        cpu["period"] = int(host["CpuPeriod"])
    if host.get("CpuRealtimeRuntime"):
        cpu["realtimeRuntime"] = int(host["CpuRealtimeRuntime"])
    if host.get("CpuRealtimePeriod"):
        cpu["realtimePeriod"] = int(host["CpuRealtimePeriod"])
    if host.get("CpusetCpus"):
        cpu["cpus"] = host["CpusetCpus"]
    if host.get("CpusetMems"):
        cpu["mems"] = host["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    for rule in host.get("DeviceCgroupRules") or []:
        res["devices"].append(device_cgroup_rule(rule))
    if host.get("PidsLimit") and host["PidsLimit"] > 0:
        res["pids"] = {"limit": int(host["PidsLimit"])}
    bio = block_io(host)
    if bio:
        res["blockIO"] = bio
    return res


_DEVICE_RULE = None


def device_cgroup_rule(rule: str) -> dict:
    """``--device-cgroup-rule 'c 1:3 rwm'`` (``a``/``b``/``c``, ``*`` for any major or
    minor) -> a linux.resources.devices entry allowing it, as dockerd's."""
    import re

    global _DEVICE_RULE
    if _DEVICE_RULE is None:
        _DEVICE_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")
    m = _DEVICE_RULE.match(str(rule))
    if not m:
        raise SpecError(f"invalid device cgroup format '{rule}'")
    kind, major, minor, access = m.groups()
    out: dict = {"allow": True, "type": kind, "access": access}
    if major != "*":
        out["major"] = int(major)
    if minor != "*":
        out["minor"] = int(minor)
    return out


# HostConfig field -> linux.resources.blockIO field, for the --device-{read,write}-{bps,iops}
BLKIO_THROTTLE = (("BlkioDeviceReadBps", "throttleReadBpsDevice"),
                  ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
                  ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
                  ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice"))


def block_io(host: dict) -> dict:
    """linux.resources.blockIO from HostConfig's Blkio* fields; devices by the
    major:minor of the host's device node, as dockerd (a path that is not a block
    device is refused here: the kernel would only refuse it at start)."""
    bio: dict = {}
    weight = host.get("BlkioWeight")
    if weight:
        if not isinstance(weight, int) or not 10 <= weight <= 1000:
            raise SpecError("Range of blkio weight is from 10 to 1000")
        bio["weight"] = weight
    devices = []
    for ent in _device_list(host, "BlkioWeightDevice"):
        w = ent.get("Weight")
        if not isinstance(w, int) or not 10 <= w <= 1000:
            raise SpecError(f"invalid weight for device: {ent.get('Path')}:{w}: "
                            f"weight must be between 10 and 1000")
        major, minor = _block_device(ent.get("Path"))
        devices.append({"major": major, "minor": minor, "weight": w})
    if devices:
        bio["weightDevice"] = devices
    for field, key in BLKIO_THROTTLE:
        out = []
        for ent in _device_list(host, field):
            rate = ent.get("Rate")
            if not isinstance(rate, int) or isinstance(rate, bool) or rate < 0:
                raise SpecError(f"invalid rate for device: {ent.get('Path')}:{rate}: "
                                f"must be a non-negative integer")
            major, minor = _block_device(ent.get("Path"))
            out.append({"major": major, "minor": minor, "rate": rate})
        if out:
            bio[key] = out
    return bio


def _device_list(host: dict, field: str) -> list[dict]:
    value = host.get(field) or []
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise SpecError(f"invalid {field}: expected a list of {{\"Path\": ..., ...}} objects")
    return value


def _block_device(path) -> tuple[int, int]:
    import stat

    if not isinstance(path, str) or not path:
        raise SpecError(f"invalid device path for block I/O limit: {path!r}")
    try:
        st = os.stat(path)
    except OSError as e:
        raise SpecError(f"stat {path}: {(e.strerror or str(e)).lower()}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise SpecError(f"{path} is not a block device: block I/O limits apply to block devices")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def rlimits(host: dict) -> list[dict]:
    """process.rlimits from HostConfig.Ulimits: the container's and every exec's
    (dockerd's exec process starts as a copy of the container's). Unset limits are
    inherited from the daemon, as with dockerd."""
    out: list[dict] = []
    for ul in host.get("Ulimits") or []:
        name = ul.get("Name", "")
        if name not in _RLIMITS:
            raise SpecError(f"invalid ulimit type: {name}")
        out = [r for r in out if r["type"] != f"RLIMIT_{name.upper()}"]
        out.append({"type": f"RLIMIT_{name.upper()}", "hard": int(ul["Hard"]),
                    "soft": int(ul["Soft"])})
    return out


def build_spec(*, container_id: str, config: dict, host_config: dict, image_config: dict,
               rootfs: str, hostname: str, etc_files: dict[str, str] | None = None,
               netns: str | None = None, seccomp: dict | None = None,
               cgroup_parent: str = "/dockyard", resolved_mounts: list[dict] | None = None,
               rootfs_propagation: str = "", pidns: str | None = None) -> dict:
    """The OCI runtime spec for a container.

    ``etc_files`` maps /etc/hosts, /etc/hostname, /etc/resolv.conf to host files to bind.
    ``netns``: path of the network namespace to join; ``"host"`` shares the host's;
    None creates a fresh one (loopback only).
    ``seccomp``: the profile to apply (None = unconfined).
    ``resolved_mounts``: the container's mount points as OCI mounts (volumes, binds, --mount;
    the daemon resolves them: containers/mounts.py); None: HostConfig.Binds parsed here.
    ``rootfs_propagation``: linux.rootfsPropagation (shared/slave bind propagation).
    ``pidns``: path of a PID namespace to join (``--pid container:X``).
    """
    host = host_config or {}
    privileged = bool(host.get("Privileged"))
    tty = bool(config.get("Tty"))
    caps = capabilities(host.get("CapAdd"), host.get("CapDrop"), privileged)
    sec = security_options(host.get("SecurityOpt"))
    no_new_privs = sec["no_new_privs"]
    if sec["seccomp"] == "unconfined":
        seccomp = None
    user = resolve_user(config.get("User") or image_config.get("User") or "", rootfs,
                        host.get("GroupAdd"))
    env = merge_env(image_config.get("Env"), config.get("Env"), hostname, tty)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={home_dir(user['uid'], rootfs)}")  # as runc's init does
    process = {
        "terminal": tty,
        "user": user,
        "args": command(config, image_config),
        "env": env,
        "cwd": config.get("WorkingDir") or image_config.get("WorkingDir") or "/",
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "rlimits": rlimits(host),
        "noNewPrivileges": no_new_privs,
    }
    if not process["cwd"].startswith("/"):
        raise SpecError(f"the working directory '{process['cwd']}' is invalid, "
                        f"it needs to be an absolute path")
    if host.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(host["OomScoreAdj"])
    console = host.get("ConsoleSize") or config.get("ConsoleSize")
    if tty and isinstance(console, list) and len(console) == 2:
        h, w = console
        if h and w:
            process["consoleSize"] = {"height": int(h), "width": int(w)}

    mounts = _default_mounts(int(host.get("ShmSize") or 64 * 1024 * 1024))
    if host.get("IpcMode") == "none":   # a private IPC namespace without /dev/shm (dockerd)
        mounts = [m for m in mounts if m["destination"] != "/dev/shm"]
    if privileged:
        for m in mounts:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    etc_mounts = [{"destination": dest, "type": "bind", "source": src,
                   "options": ["rbind", "rprivate"]} for dest, src in (etc_files or {}).items()]
    user_mounts = list(resolved_mounts) if resolved_mounts is not None else \
        [parse_bind(b) for b in host.get("Binds") or []]
    for dest, opts in (host.get("Tmpfs") or {}).items():
        user_mounts.append(parse_tmpfs(dest, opts))
    seen = set()
    for m in user_mounts:
        if m["destination"] in seen:
            raise SpecError(f"Duplicate mount point: {m['destination']}")
        seen.add(m["destination"])
    # A user mount over a default one replaces it (an /etc file too). The container's own
    # mounts go shallowest first, as dockerd sorts them: /etc/hostname lands on a volume
    # mounted at /etc, not under it.
    etc_mounts = [m for m in etc_mounts if m["destination"] not in seen]
    own = sorted(etc_mounts + user_mounts,
                 key=lambda m: len(os.path.normpath(m["destination"]).split("/")))
    mounts = [m for m in mounts if m["destination"] not in seen] + own

    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if netns == "host":
        pass
    elif netns:
        namespaces.append({"type": "network", "path": netns})
    else:
        namespaces.append({"type": "network"})
    if host.get("PidMode") == "host":
        namespaces = [n for n in namespaces if n["type"] != "pid"]
    elif pidns:
        namespaces = [{"type": "pid", "path": pidns} if n["type"] == "pid" else n
                      for n in namespaces]
    if host.get("CgroupnsMode") == "private":
        namespaces.append({"type": "cgroup"})
    if host.get("IpcMode") == "host":
        namespaces = [n for n in namespaces if n["type"] != "ipc"]
    if host.get("UTSMode") == "host":
        namespaces = [n for n in namespaces if n["type"] != "uts"]

    linux: dict = {
        "namespaces": namespaces,
        "resources": resources(host),
        "cgroupsPath": f"{cgroup_parent.rstrip('/')}/{container_id}",
        "sysctl": {**default_sysctls(netns, host), **dict(host.get("Sysctls") or {})},
    }
    if privileged:
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        linux["devices"] = host_devices()
    else:
        # HostConfig.MaskedPaths/ReadonlyPaths replace the defaults when set ([] is none:
        # the docker CLI's --security-opt systempaths=unconfined)
        masked, ro_paths = host.get("MaskedPaths"), host.get("ReadonlyPaths")
        if sec["systempaths_unconfined"]:
            masked, ro_paths = [], []
        linux["maskedPaths"] = list(MASKED_PATHS if masked is None else masked)
        linux["readonlyPaths"] = list(READONLY_PATHS if ro_paths is None else ro_paths)
        if seccomp is not None:
            linux["seccomp"] = seccomp
    devices = []
    for dev in host.get("Devices") or []:
        devices.append(_device(dev))
    if devices:
        linux["devices"] = [*linux.get("devices", ()), *(d for d, _ in devices)]
        linux["resources"]["devices"] += [r for _, r in devices]
    if rootfs_propagation:
        linux["rootfsPropagation"] = rootfs_propagation

    spec = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": bool(host.get("ReadonlyRootfs"))},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if config.get("Domainname") and host.get("UTSMode") != "host":
        spec["domainname"] = config["Domainname"]   # of the container's own UTS namespace
    if host.get("Annotations"):
        spec["annotations"] = {str(k): str(v) for k, v in host["Annotations"].items()}
    if host.get("Init"):
        spec["process"]["args"] = ["/sbin/docker-init", "--"] + spec["process"]["args"]
    return spec


def default_sysctls(netns: str | None, host: dict) -> dict:
    """dockerd's sysctls for a container with a network namespace of its own (not
    ``host``, not ``container:X``): unprivileged ICMP echo sockets for every group.
    HostConfig.Sysctls override them."""
    if netns == "host" or str(host.get("NetworkMode") or "").startswith("container:"):
        return {}
    return {"net.ipv4.ping_group_range": "0 2147483647"}


# Directories under the host's /dev a privileged container does not get (containerd's
# HostDevices skips them: they are mounts the container has of its own).
_HOST_DEV_SKIP = frozenset(("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"))


def host_devices(root: str = "/dev") -> list[dict]:
    """Every character and block device under the host's /dev, as linux.devices entries
    with the host node's mode and owner (what a --privileged container gets under
    dockerd); symlinks and /dev/console (the runtime's) are left out."""
    import stat

    out: list[dict] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return out
    for e in entries:
        try:
            st = os.lstat(e.path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if e.name not in _HOST_DEV_SKIP:
                out += host_devices(e.path)
            continue
        if e.name == "console" and root == "/dev":
            continue
        if stat.S_ISCHR(st.st_mode):
            kind = "c"
        elif stat.S_ISBLK(st.st_mode):
            kind = "b"
        else:
            continue
        out.append({"path": e.path, "type": kind, "major": os.major(st.st_rdev),
                    "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
                    "uid": st.st_uid, "gid": st.st_gid})
    return out


def _device(dev: dict) -> tuple[dict, dict]:
    path = dev.get("PathOnHost", "")
    try:
        st = os.stat(path)
    except OSError:
        raise SpecError(f"error gathering device information while adding custom device "
                        f"\"{path}\": no such file or directory") from None
    import stat

    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise SpecError(f"error gathering device information while adding custom device "
                        f"\"{path}\": not a device node")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    access = dev.get("CgroupPermissions") or "rwm"
    node = {"path": dev.get("PathInContainer") or path, "type": kind, "major": major,
            "minor": minor, "fileMode": stat.S_IMODE(st.st_mode), "uid": 0, "gid": 0}
    rule = {"allow": True, "type": kind, "major": major, "minor": minor, "access": access}
    return node, rule
