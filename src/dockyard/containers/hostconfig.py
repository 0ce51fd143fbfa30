"""HostConfig checks made at create and update (restart policy, resources, cpusets,
block I/O and memory settings this host cannot enforce, --storage-opt, fields this
daemon does not implement)."""

from __future__ import annotations

import os

from dockyard import errors

def _validate_host_config(host: dict) -> None:
    policy = host.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if name not in ("no", "always", "unless-stopped", "on-failure", ""):
        raise errors.InvalidParameter(f"invalid restart policy '{name}'")
    if name != "on-failure" and policy.get("MaximumRetryCount"):
        raise errors.InvalidParameter(
            f"invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if host.get("AutoRemove") and name not in ("no", ""):
        raise errors.InvalidParameter("can't create 'AutoRemove' container with restart policy")
    for k in ("Memory", "MemorySwap", "CpuShares", "NanoCpus", "PidsLimit"):
        v = host.get(k)
        if v is not None and not isinstance(v, int):
            raise errors.InvalidParameter(f"invalid value for {k}: {v!r}")
    if (host.get("Memory") or 0) < 0:
        raise errors.InvalidParameter("invalid memory limit")
    if (host.get("CpuShares") or 0) < 0:
        raise errors.InvalidParameter(f"invalid CPU shares: {host['CpuShares']}: must be positive")
    # dockerd's create-time checks (verifyPlatformContainerSettings): bad values are a 400
    # here, not an OCI runtime failure (500) at start
    oom = host.get("OomScoreAdj") or 0
    if not -1000 <= oom <= 1000:
        raise errors.InvalidParameter(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    if (host.get("ShmSize") or 0) < 0:
        raise errors.InvalidParameter("SHM size can not be less than 0")
    period = host.get("CpuPeriod") or 0
    if period and not 1000 <= period <= 1000000:
        raise errors.InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                                      "than 1 second (i.e. 1000000)")
    rt_period, rt_runtime = host.get("CpuRealtimePeriod") or 0, host.get("CpuRealtimeRuntime") or 0
    if rt_period and rt_runtime and rt_runtime > rt_period:
        raise errors.InvalidParameter("cpu real-time runtime cannot be higher than cpu real-time period")
    if 0 < (host.get("CpuQuota") or 0) < 1000:
        raise errors.InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    for h in host.get("ExtraHosts") or []:
        name, sep, addr = str(h).partition(":")
        if not sep or not name or not addr:
            raise errors.InvalidParameter(f'invalid extra host "{h}": the form is host:IP')
    for key, online in (("CpusetCpus", "/sys/devices/system/cpu/online"),
                        ("CpusetMems", "/sys/devices/system/node/online")):
        if host.get(key):
            want = _parse_cpuset(host[key])
            if want is None:
                raise errors.InvalidParameter(f"Invalid value {host[key]} for cpuset {key[6:].lower()}")
            try:
                with open(online) as f:
                    avail_s = f.read().strip()
            except OSError:
                continue
            avail = _parse_cpuset(avail_s) or set()
            if not want <= avail:
                what = "CPUs" if key == "CpusetCpus" else "memory nodes"
                raise errors.InvalidParameter(
                    f"Requested {what} are not available - requested {host[key]}, available: {avail_s}")


def _unsupported(field: str, value, why: str = "") -> errors.InvalidParameter:
    return errors.InvalidParameter(f"{field}={value!r}: Dockyard does not support it"
                                   + (f" ({why})" if why else ""))


def _refuse_unsupported(host: dict, config: dict) -> None:
    """Fields of the Engine API's create this daemon does not implement: a value other
    than the zero one is refused (400) rather than silently dropped. docker-compose and
    docker-py send many of them empty on every create; those pass."""
    for field in ("IOMaximumIOps", "IOMaximumBandwidth"):
        if host.get(field):   # dockerd's words (it answers 500)
            what = "IOPs" if field == "IOMaximumIOps" else "bandwidth"
            raise errors.InvalidParameter(
                f"Invalid QoS settings: linux does not support configuration of maximum {what}")
    iso = host.get("Isolation") or ""
    if iso not in ("", "default"):
        raise errors.InvalidParameter(f'Invalid isolation: "{iso}" - linux only supports '
                                      f"'default'")
    for field in ("CpuCount", "CpuPercent"):
        if host.get(field):
            raise _unsupported(field, host[field], "a Windows setting; use NanoCpus or "
                               "CpuQuota/CpuPeriod")
    if host.get("DeviceRequests"):
        raise _unsupported("DeviceRequests", host["DeviceRequests"],
                           "no device drivers (--gpus) are available")
    if host.get("Cgroup"):
        raise _unsupported("Cgroup", host["Cgroup"], "sharing another container's cgroup")
    parent = host.get("CgroupParent") or ""
    if parent and (not parent.startswith("/") or parent.endswith(".slice")
                   or any(p in ("", ".", "..") for p in parent.strip("/").split("/"))):
        raise _unsupported("CgroupParent", parent, "only an absolute cgroupfs path such as "
                           "'/mygroup' is (no systemd slices, no relative paths)")
    cgns = host.get("CgroupnsMode") or ""
    if cgns not in ("", "host", "private"):
        raise errors.InvalidParameter(f"invalid cgroup namespace mode: {cgns}")
    ipc = host.get("IpcMode") or ""
    if ipc.startswith("container:"):
        raise _unsupported("IpcMode", ipc, "joining another container's IPC namespace "
                           "and /dev/shm")
    if ipc not in ("", "private", "shareable", "host", "none"):
        raise errors.InvalidParameter(f"invalid IPC mode: {ipc}")
    pid = host.get("PidMode") or ""
    if pid not in ("", "host") and not (pid.startswith("container:") and pid[10:]):
        raise errors.InvalidParameter(f"invalid PID mode: {pid}")
    uts = host.get("UTSMode") or ""
    if uts not in ("", "host"):
        raise errors.InvalidParameter(f"invalid UTS mode: {uts}")
    userns = host.get("UsernsMode") or ""
    if userns not in ("", "host"):
        raise _unsupported("UsernsMode", userns, "user namespaces; only 'host' is known")
    if config.get("NetworkDisabled"):
        raise _unsupported("NetworkDisabled", True, 'use HostConfig.NetworkMode "none"')
    _check_network_mode(host, config)


def _check_network_mode(host: dict, config: dict) -> None:
    """dockerd's conflicts between the network mode and what it makes moot (runconfig's
    validateNetMode, its words, 400): a container sharing another's network namespace
    has that one's name, /etc/hosts, resolv.conf, MAC and ports."""
    mode = host.get("NetworkMode") or ""
    shared = mode.startswith("container:")
    if shared and not mode[len("container:"):]:
        raise errors.InvalidParameter("Invalid network mode: invalid container format "
                                      "container:<name|id>")
    conflict = None
    if shared and config.get("Hostname"):
        conflict = "hostname and the network mode"
    elif shared and host.get("Links"):
        conflict = ("container type network can't be used with links. This would result in "
                    "undefined behavior")
    elif shared and host.get("Dns"):
        conflict = "dns and the network mode"
    elif shared and host.get("ExtraHosts"):
        conflict = "custom host-to-IP mapping and the network mode"
    elif (shared or mode == "host") and config.get("MacAddress"):
        conflict = "mac-address and the network mode"
    elif shared and (host.get("PortBindings") or host.get("PublishAllPorts")):
        conflict = "port publishing and the container type network mode"
    elif shared and config.get("ExposedPorts"):
        conflict = "port exposing and the container type network mode"
    elif mode == "host" and host.get("Links"):
        conflict = ("host type networking can't be used with links. This would result in "
                    "undefined behavior")
    if conflict:
        raise errors.InvalidParameter(f"conflicting options: {conflict}")


# container.Resources' fields (what an update may carry besides RestartPolicy)
_RESOURCES = (
    "CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight", "BlkioWeightDevice",
    "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
    "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus",
    "CpusetMems", "Devices", "DeviceCgroupRules", "DeviceRequests", "KernelMemory",
    "KernelMemoryTCP", "MemoryReservation", "MemorySwap", "MemorySwappiness", "OomKillDisable",
    "PidsLimit", "Ulimits", "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth")


def _refuse_unsupported_update(body: dict, applied: tuple[str, ...]) -> None:
    """POST /containers/{id}/update: a resource field the update does not apply (as
    dockerd's, which silently keeps the old value) is refused unless it holds its zero
    value (the docker CLI sends every field, zero when not asked for)."""
    for field in _RESOURCES:
        if field in applied or field not in body:
            continue
        v = body[field]
        if v in (None, 0, "", [], {}, False) or (field == "MemorySwappiness" and v == -1):
            continue
        raise errors.InvalidParameter(f"{field}: Dockyard cannot update it on an existing "
                                      f"container (recreate the container to change it)")


def _check_platform(ref: str, wanted: str, image: dict) -> None:
    """``POST /containers/create?platform=``: the image found must be of that platform
    (dockerd's 404 and words; the docker CLI then pulls the platform's image)."""
    from dockyard.images.pull import parse_platform, platform_string

    os_, arch, variant = parse_platform(wanted)
    have = (image.get("os") or "linux", image.get("architecture") or "", image.get("variant"))
    if have[0] != os_ or have[1] != arch or (variant and have[2] and have[2] != variant):
        raise errors.NotFound(f"image with reference {ref} was found but does not match the "
                              f"specified platform: wanted {platform_string(os_, arch, variant)}"
                              f", actual: {platform_string(*have)}")


def _network_mode_warnings(host: dict) -> list[str]:
    """dockerd's warning for published ports on the host's network (they are moot)."""
    if host.get("NetworkMode") == "host" and host.get("PortBindings"):
        return ["Published ports are discarded when using host network mode"]
    return []


def _discard_unsupported_memory(host: dict) -> list[str]:
    """dockerd's rule for memory settings the host cannot enforce (this daemon's
    ``KernelMemory``/``KernelMemoryTCP``: never; swappiness: only with cgroup v1's
    memory.swappiness): reset, with dockerd's warnings in the answer."""
    warnings = []
    if host.get("KernelMemory"):
        warnings += ["Specifying a kernel memory limit is deprecated and will be removed in a "
                     "future release.",
                     "Your kernel does not support kernel memory limit capabilities or the "
                     "cgroup is not mounted. Limitation discarded."]
        host["KernelMemory"] = 0
    if host.get("KernelMemoryTCP"):
        warnings.append("Your kernel does not support kernel memory TCP limit capabilities or "
                        "the cgroup is not mounted. Limitation discarded.")
        host["KernelMemoryTCP"] = 0
    sw = host.get("MemorySwappiness")
    if sw is not None and sw != -1 and not _has_swappiness():
        warnings.append("Your kernel does not support memory swappiness capabilities or the "
                        "cgroup is not mounted. Memory swappiness discarded.")
        host["MemorySwappiness"] = None
    return warnings


def _has_swappiness() -> bool:
    from dockyard.runtime import cgroups
    from dockyard.runtime.cgroups._common import v1_mounts

    if cgroups.host_info()["driver"] == "v2":
        return False
    mount = v1_mounts().get("memory")
    return mount is not None and os.path.exists(os.path.join(mount[0], "memory.swappiness"))


# HostConfig field, blkio_support() key, dockerd's warning when the host cannot enforce it
_BLKIO_SUPPORT = (
    ("BlkioWeight", "weight", "Your kernel does not support Block I/O weight or the cgroup is not "
     "mounted. Weight discarded."),
    ("BlkioWeightDevice", "weight_device", "Your kernel does not support Block I/O weight_device or "
     "the cgroup is not mounted. Weight-device discarded."),
    ("BlkioDeviceReadBps", "read_bps", "Your kernel does not support BPS Block I/O read limit or the "
     "cgroup is not mounted. Block I/O BPS read limit discarded."),
    ("BlkioDeviceWriteBps", "write_bps", "Your kernel does not support BPS Block I/O write limit or "
     "the cgroup is not mounted. Block I/O BPS write limit discarded."),
    ("BlkioDeviceReadIOps", "read_iops", "Your kernel does not support IOPS Block read limit or the "
     "cgroup is not mounted. Block I/O IOPS read limit discarded."),
    ("BlkioDeviceWriteIOps", "write_iops", "Your kernel does not support IOPS Block write limit or the "
     "cgroup is not mounted. Block I/O IOPS write limit discarded."),
)


def _discard_unsupported_blkio(host: dict) -> list[str]:
    """dockerd's rule for block I/O settings this host cannot enforce: the field is
    reset (inspect shows it unset) and the create/update answer carries a warning,
    which the CLI prints; what the host supports goes to the spec and is applied."""
    wanted = [(f, k, w) for f, k, w in _BLKIO_SUPPORT if host.get(f)]
    if not wanted:
        return []
    from dockyard.runtime import cgroups

    support = cgroups.blkio_support()
    warnings = []
    for field, key, warning in wanted:
        if not support.get(key):
            host[field] = 0 if field == "BlkioWeight" else []
            warnings.append(warning)
    return warnings


def _discard_unsupported_realtime(host: dict) -> list[str]:
    """dockerd's rule for CpuRealtimePeriod/Runtime on a host without the v1 cpu
    controller's rt files (cgroup v2 has none): reset, with its warnings. Where the
    files exist the values go to the spec and the kernel judges them (EINVAL when the
    parent cgroup has no realtime budget, as under dockerd)."""
    wanted = [f for f in ("CpuRealtimePeriod", "CpuRealtimeRuntime") if host.get(f)]
    if not wanted:
        return []
    from dockyard.runtime import cgroups
    from dockyard.runtime.cgroups._common import v1_mounts

    mount = None if cgroups.host_info()["driver"] == "v2" else v1_mounts().get("cpu")
    if mount is not None and os.path.exists(os.path.join(mount[0], "cpu.rt_period_us")):
        return []
    words = {"CpuRealtimePeriod": "Your kernel does not support cgroup cpu real-time period",
             "CpuRealtimeRuntime": "Your kernel does not support cgroup cpu real-time runtime"}
    for f in wanted:
        host[f] = 0
    return [words[f] for f in wanted]


def _check_storage_opt(host: dict, snapshot_root: str) -> None:
    """--storage-opt: dockerd's overlay2 takes only ``size``, and only on xfs mounted
    with project quotas; anywhere else it refuses rather than ignore the limit. We
    have no project-quota support, so a size is refused on every backing fs."""
    opts = host.get("StorageOpt")
    if not opts:
        return
    if not isinstance(opts, dict):
        raise errors.InvalidParameter("invalid StorageOpt: expected an object of strings")
    if not any(k.lower() == "size" for k in opts):
        raise errors.DockyardError(f"Unknown option {sorted(opts)[0]}")
    if not _xfs_with_pquota(snapshot_root):
        raise errors.DockyardError("--storage-opt is supported only for overlay over xfs with "
                                   "'pquota' mount option")
    raise errors.DockyardError("--storage-opt size: xfs project quotas are not implemented by "
                               "this daemon's snapshotter")


def _xfs_with_pquota(path: str) -> bool:
    """Whether ``path`` lies on an xfs mount with project quotas (the mount whose
    mount point is the longest prefix of its real path, from mountinfo)."""
    real = os.path.realpath(path)
    best: tuple[int, bool] = (-1, False)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fields, tail = pre.split(), post.split()
                if len(fields) < 5 or len(tail) < 3:
                    continue
                mnt = fields[4].encode().decode("unicode_escape")
                if real == mnt or real.startswith(mnt.rstrip("/") + "/"):
                    if len(mnt) >= best[0]:
                        opts = set(tail[2].split(",")) | set(fields[5].split(","))
                        best = (len(mnt), tail[0] == "xfs" and bool(
                            opts & {"prjquota", "pquota", "pqnoenforce"}))
    except OSError:
        return False
    return best[1]


def _parse_cpuset(spec: str) -> set[int] | None:
    """'0-2,4' -> {0, 1, 2, 4}; None when malformed (Docker's parsers.ParseUintList)."""
    out: set[int] = set()
    for part in str(spec).split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            return None
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            return None
        out.update(range(a, b + 1))
    return out
