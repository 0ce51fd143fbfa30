"""Pieces shared by the cgroup v1 and v2 drivers: host discovery, path rules,
file I/O with user-facing errors, and the pure validation of OCI resources.

Everything here is plain ``os`` work so that importing the cgroup package costs
almost nothing at runtime start (the runtime is started once per container
operation, its start-up time is user-visible).
"""

from __future__ import annotations

import errno
from dockyard.runtime import fastos as os
import time

from dockyard.errors import DockyardError



def warn(msg: str) -> None:
    """Log a warning; logging is imported only when there is one (it costs
    several milliseconds of runtime start-up)."""
    import logging
    logging.getLogger("dockyard.runtime.cgroups").warning("%s", msg)

CGROUP_ROOT = "/sys/fs/cgroup"


class CgroupError(DockyardError):
    """A cgroup operation failed; the message is meant for the user.

    It names the resource that was asked for and what the host lacks or what
    the kernel refused, because "write error" alone is useless to someone
    running ``docker run --memory``.
    """


# --------------------------------------------------------------------------
# host discovery


def read_mountinfo() -> list[tuple[str, str, str, list[str]]]:
    """Cgroup mounts of this mount namespace: (fstype, mountpoint, root, superopts)."""
    mounts = []
    for line in read_file("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        rparts = right.split()
        if not rparts or rparts[0] not in ("cgroup", "cgroup2"):
            continue
        lparts = left.split()
        mountpoint = _unescape(lparts[4])
        root = _unescape(lparts[3])
        superopts = rparts[2].split(",") if len(rparts) > 2 else []
        mounts.append((rparts[0], mountpoint, root, superopts))
    return mounts


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040)
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and all(d in "01234567" for d in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def v1_controller_names() -> set[str]:
    """Names of the v1 subsystems the kernel knows (from /proc/cgroups)."""
    names = set()
    try:
        text = read_file("/proc/cgroups")
    except OSError:
        return names
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split()
        if parts:
            names.add(parts[0])
    return names


def v1_mounts(mountinfo: list | None = None) -> dict[str, tuple[str, str]]:
    """Map every mounted v1 controller (and named hierarchy like
    ``name=systemd``) to (mountpoint, mount root).

    Co-mounted controllers (``cpu,cpuacct``) map to the same mountpoint, so
    callers that want each directory once must deduplicate. ``mountinfo``:
    :func:`read_mountinfo`'s result, if the caller has it.
    """
    known = v1_controller_names()
    result: dict[str, tuple[str, str]] = {}
    for fstype, mountpoint, root, opts in mountinfo or read_mountinfo():
        if fstype != "cgroup":
            continue
        ctrls = [o for o in opts if o in known or o.startswith("name=")]
        for c in ctrls:
            prev = result.get(c)
            # a hierarchy can be bind-mounted several times; prefer the
            # canonical location under /sys/fs/cgroup
            if prev is None or (
                not prev[0].startswith(CGROUP_ROOT + "/") and mountpoint.startswith(CGROUP_ROOT + "/")
            ):
                result[c] = (mountpoint, root)
    return result


def v2_mount(mountinfo: list | None = None) -> tuple[str, str] | None:
    """(mountpoint, root) of the cgroup2 hierarchy, preferring /sys/fs/cgroup
    (pure v2 host) then /sys/fs/cgroup/unified (hybrid host)."""
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return CGROUP_ROOT, _root_of(CGROUP_ROOT)
    found = None
    for fstype, mountpoint, root, _ in mountinfo or read_mountinfo():
        if fstype != "cgroup2":
            continue
        if mountpoint == CGROUP_ROOT + "/unified":
            return mountpoint, root
        if found is None:
            found = (mountpoint, root)
    return found


def _root_of(mountpoint: str) -> str:
    for fstype, mp, root, _ in read_mountinfo():
        if mp == mountpoint and fstype == "cgroup2":
            return root
    return "/"


def own_cgroups() -> tuple[dict[str, str], str | None]:
    """The caller's cgroup per v1 controller and its v2 cgroup, from
    /proc/self/cgroup. Relative cgroupsPath values are resolved against these."""
    v1: dict[str, str] = {}
    v2 = None
    for line in read_file("/proc/self/cgroup").splitlines():
        if not line:
            continue
        hid, ctrls, path = line.split(":", 2)
        if hid == "0" and ctrls == "":
            v2 = path
            continue
        for c in ctrls.split(","):
            if c:
                v1[c] = path
    return v1, v2


def host_layout() -> str:
    """"v2" (unified only), "hybrid" (v1 controllers plus a cgroup2 mount) or "v1"."""
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return "v2"
    has_v2 = any(m[0] == "cgroup2" for m in read_mountinfo())
    return "hybrid" if has_v2 else "v1"


# --------------------------------------------------------------------------
# paths


SYSTEMD_ERROR = "systemd cgroup paths need --systemd-cgroup, which dockyard-runc does not support"


def normalize_cgroups_path(cgroups_path: str | None, container_id: str) -> tuple[bool, str]:
    """Return (relative, path) for an OCI ``linux.cgroupsPath``.

    Absolute paths are taken relative to each hierarchy's root, relative ones
    relative to the caller's own cgroup. ``..`` can never climb above that
    base: a config must not be able to point the runtime at a cgroup it does
    not own.
    """
    if cgroups_path is None or cgroups_path == "":
        cgroups_path = "/dockyard/" + container_id
    if not isinstance(cgroups_path, str):
        raise CgroupError(f"cgroupsPath must be a string, not {type(cgroups_path).__name__}")
    if "\0" in cgroups_path:
        raise CgroupError("cgroupsPath contains a NUL byte")
    if not cgroups_path.startswith("/") and cgroups_path.count(":") == 2:
        # runc's systemd driver syntax "slice:prefix:name"
        raise CgroupError(SYSTEMD_ERROR)
    relative = not cgroups_path.startswith("/")
    # normalize as if rooted, so that ".." stops at the base
    clean = os.path.normpath("/" + cgroups_path.lstrip("/"))
    if clean == "/":
        raise CgroupError(f"cgroupsPath {cgroups_path!r} names the root cgroup itself; give a container cgroup")
    return relative, clean


def join_under(mountpoint: str, mount_root: str, cgroup: str) -> str:
    """Directory of ``cgroup`` (a path in the hierarchy) under its mountpoint.

    A hierarchy can be mounted from a sub-directory (inside a container with a
    cgroup namespace the root field of mountinfo is not "/"); strip it.
    """
    if mount_root not in ("", "/") and (cgroup == mount_root or cgroup.startswith(mount_root + "/")):
        cgroup = cgroup[len(mount_root):] or "/"
    return mountpoint.rstrip("/") + (cgroup if cgroup != "/" else "")


def hierarchy_dir(mountpoint: str, mount_root: str, own: str | None, relative: bool, path: str) -> str:
    base = own if (relative and own) else "/"
    cgroup = os.path.normpath(os.path.join(base, path.lstrip("/"))) if base != "/" else path
    return join_under(mountpoint, mount_root, cgroup)


# --------------------------------------------------------------------------
# file I/O


def read_file(path: str) -> str:
    return os.read_bytes(path).decode()


def read_int(path: str, default: int | None = None) -> int | None:
    try:
        text = read_file(path).strip()
    except OSError:
        return default
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return default


def read_kv(path: str) -> dict[str, int]:
    """Parse "key value" lines (memory.stat, cpu.stat, memory.events ...)."""
    result = {}
    try:
        text = read_file(path)
    except OSError:
        return result
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                result[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return result


def write_file(directory: str, name: str, value, what: str) -> None:
    """Write one value into a cgroup control file.

    The kernel reports bad values only as errno (usually EINVAL), so the
    error says what was being set, to which file, and what was refused.
    """
    path = os.path.join(directory, name)
    data = str(value)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not os.path.isdir(directory):
            raise CgroupError(f"{what}: the cgroup {directory} does not exist (not created, or already removed)") \
                from None
        raise CgroupError(f"{what}: this host has no {name} in {directory}") from None
    except OSError as e:
        raise CgroupError(f"{what}: cannot open {path}: {e.strerror}") from None
    try:
        os.write(fd, data.encode())
    except OSError as e:
        hint = ""
        if e.errno == errno.EINVAL:
            hint = " (value out of range or not supported by this host)"
        elif e.errno == errno.EBUSY:
            hint = " (the cgroup is in use, e.g. the limit is below current usage)"
        raise CgroupError(f"{what}: the kernel refused {data!r} for {name}: {e.strerror}{hint}") from None
    finally:
        os.close(fd)


def procs_recursive(directory: str) -> list[int]:
    """All pids in a cgroup directory and its descendants."""
    pids: list[int] = []
    seen = set()
    for dirpath, _dirnames, _files in os.walk(directory):
        try:
            text = read_file(os.path.join(dirpath, "cgroup.procs"))
        except OSError:
            continue
        for tok in text.split():
            pid = int(tok)
            if pid not in seen:
                seen.add(pid)
                pids.append(pid)
    return pids


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def mkdir_p(directory: str, created: list[str]) -> None:
    """mkdir -p that records which directories it made (to undo on failure)."""
    missing = []
    d = directory
    while not os.path.isdir(d):
        missing.append(d)
        d = os.path.dirname(d)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
            created.append(d)
        except FileExistsError:
            pass


def rmdir_tree(directory: str, timeout: float = 5.0) -> None:
    """Remove a cgroup directory and any sub-cgroups, deepest first.

    cgroup directories can only be removed with rmdir (their files are
    virtual) and only once empty of processes; processes that were just
    killed may take a moment to leave, hence EBUSY retries.
    """
    try:
        os.rmdir(directory)   # the common case: no sub-cgroups, no processes left
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    if not os.path.isdir(directory):
        return
    subdirs = []
    for dirpath, dirnames, _ in os.walk(directory):
        for d in dirnames:
            subdirs.append(os.path.join(dirpath, d))
    subdirs.sort(key=lambda p: p.count("/"), reverse=True)
    deadline = time.monotonic() + timeout
    for d in subdirs + [directory]:
        delay = 0.001
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    left = procs_recursive(d) if os.path.isdir(d) else []
                    raise CgroupError(
                        f"cannot remove cgroup {d}: {e.strerror}"
                        + (f" (processes still inside: {left})" if left else "")
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)


# --------------------------------------------------------------------------
# validation of OCI linux.resources (pure, no host access)


_CPUSET_RE = r"^\s*(\d+(-\d+)?)(\s*,\s*\d+(-\d+)?)*\s*$"
_PAGESIZE_RE = r"^\d+(B|KB|MB|GB|TB|PB)$"


def _matches(pattern: str, text: str) -> bool:
    import re   # only for the rare cpuset/hugetlb values: `re` costs ~7 ms to import
    return re.match(pattern, text) is not None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_field(errors: list[str], section: dict, key: str, where: str, minimum: int | None = None,
               allow_minus_one: bool = False) -> None:
    if key not in section or section[key] is None:
        return
    v = section[key]
    if not _is_int(v):
        errors.append(f"{where}.{key} must be an integer, not {v!r}")
        return
    if allow_minus_one and v == -1:
        return
    if minimum is not None and v < minimum:
        errors.append(f"{where}.{key} must be >= {minimum}" + (" or -1 (unlimited)" if allow_minus_one else "")
                      + f", not {v}")


def validate_resources(resources: dict | None) -> None:
    """Check the shape and obvious ranges of OCI ``linux.resources``.

    Pure: touches nothing on the host, so the runtime can reject a bad
    config before it creates any cgroup. What only the kernel can judge
    (a cpuset outside this machine's CPUs, a limit below current usage) is
    reported by ``apply``.
    """
    if resources is None:
        return
    if not isinstance(resources, dict):
        raise CgroupError("linux.resources must be an object")
    errors: list[str] = []

    mem = resources.get("memory")
    if mem is not None:
        if not isinstance(mem, dict):
            errors.append("linux.resources.memory must be an object")
        else:
            for k in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
                _int_field(errors, mem, k, "memory", minimum=0, allow_minus_one=True)
            sw = mem.get("swappiness")
            if sw is not None and (not _is_int(sw) or not (0 <= sw <= 100 or sw == -1 or sw >= 2**63)):
                errors.append(f"memory.swappiness must be between 0 and 100, not {sw!r}")
            for k in ("disableOOMKiller", "useHierarchy", "checkBeforeUpdate"):
                if mem.get(k) is not None and not isinstance(mem[k], bool):
                    errors.append(f"memory.{k} must be a boolean")
            lim, swap = mem.get("limit"), mem.get("swap")
            if _is_int(lim) and _is_int(swap) and lim > 0 and swap > 0 and swap < lim:
                errors.append(f"memory.swap ({swap}) is memory+swap and must be >= memory.limit ({lim})")

    cpu = resources.get("cpu")
    if cpu is not None:
        if not isinstance(cpu, dict):
            errors.append("linux.resources.cpu must be an object")
        else:
            _int_field(errors, cpu, "shares", "cpu", minimum=0)
            _int_field(errors, cpu, "quota", "cpu", minimum=0, allow_minus_one=True)
            _int_field(errors, cpu, "burst", "cpu", minimum=0)
            _int_field(errors, cpu, "period", "cpu", minimum=0)
            _int_field(errors, cpu, "realtimeRuntime", "cpu", minimum=-1)
            _int_field(errors, cpu, "realtimePeriod", "cpu", minimum=0)
            _int_field(errors, cpu, "idle", "cpu", minimum=0)
            for k in ("cpus", "mems"):
                v = cpu.get(k)
                if v is None or v == "":
                    continue
                if not isinstance(v, str) or not _matches(_CPUSET_RE, v):
                    errors.append(f"cpu.{k} must be a list like '0-2,4', not {v!r}")
                    continue
                for part in v.split(","):
                    a, _, b = part.strip().partition("-")
                    if b and int(b) < int(a):
                        errors.append(f"cpu.{k} range {part.strip()!r} is reversed")

    pids = resources.get("pids")
    if pids is not None:
        if not isinstance(pids, dict):
            errors.append("linux.resources.pids must be an object")
        else:
            _int_field(errors, pids, "limit", "pids", minimum=-1)

    devices = resources.get("devices")
    if devices is not None:
        if not isinstance(devices, list):
            errors.append("linux.resources.devices must be a list")
        else:
            for i, d in enumerate(devices):
                where = f"devices[{i}]"
                if not isinstance(d, dict):
                    errors.append(f"{where} must be an object")
                    continue
                if not isinstance(d.get("allow"), bool):
                    errors.append(f"{where}.allow must be true or false")
                t = d.get("type")
                if t not in (None, "a", "c", "b"):
                    errors.append(f"{where}.type must be a, c or b, not {t!r}")
                for k in ("major", "minor"):
                    v = d.get(k)
                    if v is not None and (not _is_int(v) or v < -1):
                        errors.append(f"{where}.{k} must be a device number or -1 (any), not {v!r}")
                acc = d.get("access")
                if acc is not None and (not isinstance(acc, str) or not acc or set(acc) - set("rwm")):
                    errors.append(f"{where}.access must combine r, w and m, not {acc!r}")

    bio = resources.get("blockIO")
    if bio is not None:
        if not isinstance(bio, dict):
            errors.append("linux.resources.blockIO must be an object")
        else:
            for k in ("weight", "leafWeight"):
                v = bio.get(k)
                if v is not None and v != 0 and (not _is_int(v) or not 10 <= v <= 1000):
                    errors.append(f"blockIO.{k} must be between 10 and 1000, not {v!r}")
            for k in ("weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                      "throttleReadIOPSDevice", "throttleWriteIOPSDevice"):
                lst = bio.get(k)
                if lst is None:
                    continue
                if not isinstance(lst, list):
                    errors.append(f"blockIO.{k} must be a list")
                    continue
                for i, ent in enumerate(lst):
                    where = f"blockIO.{k}[{i}]"
                    if not isinstance(ent, dict) or not _is_int(ent.get("major")) or not _is_int(ent.get("minor")):
                        errors.append(f"{where} needs integer major and minor")
                        continue
                    if k == "weightDevice":
                        for wk in ("weight", "leafWeight"):
                            v = ent.get(wk)
                            if v is not None and v != 0 and (not _is_int(v) or not 10 <= v <= 1000):
                                errors.append(f"{where}.{wk} must be between 10 and 1000, not {v!r}")
                    else:
                        v = ent.get("rate")
                        if not _is_int(v) or v < 0:
                            errors.append(f"{where}.rate must be a non-negative integer, not {v!r}")

    huge = resources.get("hugepageLimits")
    if huge is not None:
        if not isinstance(huge, list):
            errors.append("linux.resources.hugepageLimits must be a list")
        else:
            for i, h in enumerate(huge):
                if not isinstance(h, dict) or not isinstance(h.get("pageSize"), str) \
                        or not _matches(_PAGESIZE_RE, h["pageSize"]):
                    errors.append(f"hugepageLimits[{i}].pageSize must look like '2MB'")
                elif not _is_int(h.get("limit")) or h["limit"] < 0:
                    errors.append(f"hugepageLimits[{i}].limit must be a non-negative integer")

    unified = resources.get("unified")
    if unified is not None:
        if not isinstance(unified, dict):
            errors.append("linux.resources.unified must be an object")
        else:
            for k, v in unified.items():
                if not isinstance(k, str) or "/" in k or k in ("", ".", "..") or "." not in k:
                    errors.append(f"unified key {k!r} must be a cgroup file name like 'memory.high'")
                if not isinstance(v, str):
                    errors.append(f"unified value for {k!r} must be a string")

    if errors:
        raise CgroupError("invalid linux.resources: " + "; ".join(errors))


def device_rule_line(d: dict) -> str:
    """The v1 devices.allow/deny syntax for one OCI device rule: "c 1:3 rwm"."""
    t = d.get("type") or "a"
    maj = d.get("major")
    mnr = d.get("minor")
    maj_s = "*" if maj is None or maj == -1 else str(maj)
    mnr_s = "*" if mnr is None or mnr == -1 else str(mnr)
    return f"{t} {maj_s}:{mnr_s} {d.get('access') or 'rwm'}"


def is_allow_all(devices: list[dict] | None) -> bool:
    """True when a device rule list leaves every device allowed (the
    effective result of an empty list, or of a final "allow a *:* rwm")."""
    if not devices:
        return True
    last_wild = None
    for d in devices:
        if (d.get("type") in (None, "a")) and d.get("major") in (None, -1) and d.get("minor") in (None, -1):
            last_wild = d
    return bool(last_wild and last_wild.get("allow") and devices[-1] is last_wild)


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] mapped linearly onto v2 cpu.weight
    [1, 10000], the same mapping runc and systemd use so that a container gets
    the same relative share under either driver."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] onto io.weight [1, 10000] (linear)."""
    if weight == 0:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(swap: int | None, limit: int | None) -> int | None:
    """OCI memory.swap is memory+swap (the v1 memsw semantics); cgroup v2's
    memory.swap.max is swap alone. Returns None (leave alone), -1 (max) or a
    byte count."""
    swap = swap or 0
    limit = limit or 0
    if limit == -1 and swap == 0:
        return -1  # "unlimited memory" implies unlimited swap, as on v1
    if swap == -1:
        return -1
    if swap == 0:
        return None
    if limit in (0, -1):
        raise CgroupError("memory swap limit needs a memory limit too (OCI swap is memory+swap)")
    if swap < limit:
        raise CgroupError(f"memory swap limit ({swap}) must be >= the memory limit ({limit}): it counts memory+swap")
    return swap - limit
