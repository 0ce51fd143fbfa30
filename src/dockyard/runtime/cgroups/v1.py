"""The cgroup v1 driver: one directory per mounted hierarchy.

On v1 every controller (or group of co-mounted controllers such as
``cpu,cpuacct``) is its own tree, so a container is a set of directories, one
per hierarchy. We join every mounted hierarchy, including named ones like
``name=systemd``, as runc does: tools that look a process up in any hierarchy
then find the container. On a hybrid host the container also joins the
cgroup2 tree mounted at /sys/fs/cgroup/unified, where controllers missing from
v1 (here: hugetlb) and eBPF attachments live.
"""

from __future__ import annotations

from dockyard.runtime import fastos as os
import _signal as signal  # not `signal`: it builds enums at import
import time

from ._common import (
    CgroupError,
    device_rule_line,
    hierarchy_dir,
    warn,
    mkdir_p,
    own_cgroups,
    procs_recursive,
    read_file,
    read_int,
    read_mountinfo,
    read_kv,
    rmdir_tree,
    signal_pids,
    v1_mounts,
    v2_mount,
    validate_resources,
    write_file,
)

UNLIMITED_V1 = 2**62  # v1 reports "no limit" as PAGE_COUNTER_MAX pages in bytes (~2**63)

class V1Manager:
    driver = "v1"

    def __init__(self, container_id: str, cgroups_path: str, paths: dict[str, str],
                 roots: dict[str, str], unified: str | None = None, unified_root: str | None = None):
        self.container_id = container_id
        self.cgroups_path = cgroups_path
        self.paths = paths          # controller -> container directory
        self.roots = roots          # controller -> mountpoint (hierarchy root dir)
        self.unified = unified      # hybrid: container directory in the cgroup2 tree
        self.unified_root = unified_root
        self.warnings: list[str] = []

    # ---------------------------------------------------------------- setup

    @classmethod
    def open(cls, container_id: str, relative: bool, path: str, join_unified: bool = True) -> "V1Manager":
        mountinfo = read_mountinfo()
        mounts = v1_mounts(mountinfo)
        if not mounts:
            raise CgroupError("no cgroup v1 hierarchies are mounted on this host")
        own_v1, own_v2 = own_cgroups()
        paths, roots = {}, {}
        for ctrl, (mountpoint, mroot) in mounts.items():
            paths[ctrl] = hierarchy_dir(mountpoint, mroot, own_v1.get(ctrl), relative, path)
            roots[ctrl] = mountpoint
        unified = unified_root = None
        if join_unified:
            v2 = v2_mount(mountinfo)
            if v2 is not None:
                unified_root = v2[0]
                unified = hierarchy_dir(v2[0], v2[1], own_v2, relative, path)
        return cls(container_id, path, paths, roots, unified, unified_root)

    def dirs_by_mountpoint(self) -> dict[str, str]:
        """The container's directory in each hierarchy, keyed by its mountpoint."""
        out = {self.roots[c]: d for c, d in self.paths.items() if c in self.roots}
        if self.unified and self.unified_root:
            out[self.unified_root] = self.unified
        return out

    def to_dict(self) -> dict:
        return {
            "driver": "v1",
            "container_id": self.container_id,
            "cgroups_path": self.cgroups_path,
            "paths": dict(self.paths),
            "roots": dict(self.roots),
            "unified": self.unified,
            "unified_root": self.unified_root,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "V1Manager":
        return cls(d["container_id"], d["cgroups_path"], dict(d["paths"]), dict(d["roots"]),
                   d.get("unified"), d.get("unified_root"))

    def _dirs(self) -> list[str]:
        seen = []
        for p in self.paths.values():
            if p not in seen:
                seen.append(p)
        if self.unified and self.unified not in seen:
            seen.append(self.unified)
        return seen

    def path(self, controller: str) -> str | None:
        """The container's directory for a controller (None if not mounted)."""
        return self.paths.get(controller)

    def create(self) -> None:
        created: list[str] = []
        try:
            for d in self._dirs():
                mkdir_p(d, created)
            if "cpuset" in self.paths:
                self._init_cpuset(self.paths["cpuset"], self.roots["cpuset"])
        except OSError as e:
            self._undo(created)
            raise CgroupError(f"cannot create cgroup: {e}") from None
        except CgroupError:
            self._undo(created)
            raise

    @staticmethod
    def _undo(created: list[str]) -> None:
        for d in reversed(created):
            try:
                os.rmdir(d)
            except OSError:
                pass

    @staticmethod
    def _init_cpuset(directory: str, root: str) -> None:
        """A new v1 cpuset starts with empty cpus/mems, and a process cannot
        join a cpuset without both; copy them down from the parent at every
        level we (or someone) left empty."""
        levels = []
        d = directory
        while d != root and d.startswith(root):
            levels.append(d)
            d = os.path.dirname(d)
        for d in reversed(levels):
            parent = os.path.dirname(d)
            for f in ("cpuset.cpus", "cpuset.mems"):
                try:
                    if read_file(os.path.join(d, f)).strip() == "":
                        value = read_file(os.path.join(parent, f)).strip()
                        write_file(d, f, value, f"cpuset {f}")
                except FileNotFoundError:
                    pass

    def add(self, pid: int) -> None:
        for d in self._dirs():
            write_file(d, "cgroup.procs", pid, f"adding process {pid} to cgroup")

    def destroy(self) -> None:
        errors = []
        for d in self._dirs():
            try:
                rmdir_tree(d)
            except CgroupError as e:
                errors.append(str(e))
        if errors:
            raise CgroupError("; ".join(errors))

    # ---------------------------------------------------------------- resources

    def _need(self, controller: str, what: str) -> str:
        d = self.paths.get(controller)
        if d is None:
            raise CgroupError(f"{what} needs the cgroup v1 '{controller}' controller, which is not mounted on this host")
        return d

    def apply(self, resources: dict | None) -> None:
        """Write OCI linux.resources into the hierarchies. Only fields present
        are touched, so the same call serves ``update``."""
        validate_resources(resources)
        if not resources:
            return
        self._memory(resources.get("memory") or {})
        self._cpu(resources.get("cpu") or {})
        self._pids(resources.get("pids") or {})
        if resources.get("devices") is not None:
            self._devices(resources["devices"])
        self._blkio(resources.get("blockIO") or {})
        self._hugetlb(resources.get("hugepageLimits") or [])
        self._network(resources.get("network") or {})
        self._rdma(resources.get("rdma") or {})
        if resources.get("unified"):
            self._unified(resources["unified"])

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)
        warn(msg)

    def _memory(self, mem: dict) -> None:
        sw = mem.get("swappiness")
        if not any(mem.get(k) for k in ("limit", "reservation", "swap", "kernel", "kernelTCP", "disableOOMKiller")) \
                and not (sw is not None and 0 <= sw <= 100) and mem.get("disableOOMKiller") is None:
            return
        limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
        reservation = mem.get("reservation") or 0
        d = self._need("memory", "memory limit" if limit else "memory settings")
        if mem.get("checkBeforeUpdate") and limit > 0:
            usage = read_int(os.path.join(d, "memory.usage_in_bytes"), 0) or 0
            if usage > limit:
                raise CgroupError(f"memory limit {limit} is below the container's current usage {usage}")
        has_memsw = os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes"))
        if swap and not has_memsw:
            raise CgroupError(
                "memory swap limit: this host has no swap accounting (memory.memsw.limit_in_bytes is missing; "
                "the kernel needs swapaccount=1)")
        if limit and swap:
            # memsw must stay >= memory at every moment: raise the larger one first
            current = read_int(os.path.join(d, "memory.limit_in_bytes"), 0) or 0
            if swap == -1 or current < swap:
                write_file(d, "memory.memsw.limit_in_bytes", swap, "memory swap limit")
                write_file(d, "memory.limit_in_bytes", limit, "memory limit")
            else:
                write_file(d, "memory.limit_in_bytes", limit, "memory limit")
                write_file(d, "memory.memsw.limit_in_bytes", swap, "memory swap limit")
        elif limit:
            if has_memsw and limit != -1:
                memsw = read_int(os.path.join(d, "memory.memsw.limit_in_bytes"), 0) or 0
                if 0 < memsw < limit:
                    raise CgroupError(
                        f"memory limit {limit} is above the current memory+swap limit {memsw}; "
                        "give a swap limit too")
            write_file(d, "memory.limit_in_bytes", limit, "memory limit")
        elif swap:
            write_file(d, "memory.memsw.limit_in_bytes", swap, "memory swap limit")
        if reservation:
            write_file(d, "memory.soft_limit_in_bytes", reservation, "memory reservation")
        if mem.get("kernel"):
            self._warn("memory.kernel (kernel memory limit) is deprecated and ignored")
        if mem.get("kernelTCP"):
            if os.path.exists(os.path.join(d, "memory.kmem.tcp.limit_in_bytes")):
                write_file(d, "memory.kmem.tcp.limit_in_bytes", mem["kernelTCP"], "kernel TCP memory limit")
            else:
                self._warn("memory.kernelTCP is not supported by this kernel and is ignored")
        if sw is not None and 0 <= sw <= 100:
            write_file(d, "memory.swappiness", sw, "memory swappiness")
        if mem.get("disableOOMKiller") is True:
            write_file(d, "memory.oom_control", 1, "disabling the OOM killer")
        elif mem.get("disableOOMKiller") is False:
            if read_kv(os.path.join(d, "memory.oom_control")).get("oom_kill_disable") == 1:
                write_file(d, "memory.oom_control", 0, "enabling the OOM killer")

    def _cpu(self, cpu: dict) -> None:
        shares = cpu.get("shares") or 0
        quota = cpu.get("quota") or 0
        period = cpu.get("period") or 0
        if shares:
            d = self._need("cpu", "cpu shares")
            write_file(d, "cpu.shares", shares, "cpu shares")
            got = read_int(os.path.join(d, "cpu.shares"))
            if got != shares:
                raise CgroupError(f"cpu shares {shares} is out of range: the kernel set {got} (range 2-262144)")
        if quota or period:
            d = self._need("cpu", "cpu quota/period")
            writes = []
            if period:
                writes.append(("cpu.cfs_period_us", period, "cpu period"))
            if quota:
                writes.append(("cpu.cfs_quota_us", quota, "cpu quota"))
            try:
                for name, v, what in writes:
                    write_file(d, name, v, what)
            except CgroupError:
                # the kernel checks quota against the current period (and the
                # hierarchy); the other order may be the valid one
                for name, v, what in reversed(writes):
                    write_file(d, name, v, what)
        if cpu.get("burst"):
            write_file(self._need("cpu", "cpu burst"), "cpu.cfs_burst_us", cpu["burst"], "cpu burst")
        if cpu.get("idle"):
            write_file(self._need("cpu", "cpu idle"), "cpu.idle", cpu["idle"], "cpu idle")
        rt_period, rt_runtime = cpu.get("realtimePeriod") or 0, cpu.get("realtimeRuntime") or 0
        if rt_period:
            write_file(self._need("cpu", "cpu realtime period"), "cpu.rt_period_us", rt_period, "cpu realtime period")
        if rt_runtime:
            write_file(self._need("cpu", "cpu realtime runtime"), "cpu.rt_runtime_us", rt_runtime,
                       "cpu realtime runtime")
        for key, fname in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
            v = cpu.get(key)
            if v:
                d = self._need("cpuset", f"cpuset {key}")
                try:
                    write_file(d, fname, v, f"cpuset {key}")
                except CgroupError as e:
                    avail = read_file(os.path.join(os.path.dirname(d), fname)).strip()
                    raise CgroupError(f"{e}; this host offers {key} {avail}") from None

    def _pids(self, pids: dict) -> None:
        limit = pids.get("limit") or 0
        if limit:
            d = self._need("pids", "pids limit")
            write_file(d, "pids.max", limit if limit > 0 else "max", "pids limit")

    def _devices(self, rules: list[dict]) -> None:
        d = self.paths.get("devices")
        if d is None:
            if rules:
                raise CgroupError("device rules need the cgroup v1 'devices' controller, which is not mounted")
            return
        if _devices_state_matches(rules, read_file(os.path.join(d, "devices.list"))):
            # ``update`` passes the same rules again: rewriting them would briefly
            # deny every device to the running container
            return
        for rule in rules:
            fname = "devices.allow" if rule.get("allow") else "devices.deny"
            write_file(d, fname, device_rule_line(rule), "device rule")

    def _blkio(self, bio: dict) -> None:
        if not any(bio.get(k) for k in ("weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
                                       "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                                       "throttleWriteIOPSDevice")):
            return
        d = self._need("blkio", "block I/O settings")

        def weight_file(base: str) -> str:
            for name in (f"blkio.{base}", f"blkio.bfq.{base}"):
                if os.path.exists(os.path.join(d, name)):
                    return name
            raise CgroupError(
                f"block I/O {base.replace('_', ' ')}: this host has neither blkio.{base} nor blkio.bfq.{base} "
                "(needs the CFQ or BFQ I/O scheduler)")

        if bio.get("weight"):
            write_file(d, weight_file("weight"), bio["weight"], "block I/O weight")
        if bio.get("leafWeight"):
            if not os.path.exists(os.path.join(d, "blkio.leaf_weight")):
                raise CgroupError("block I/O leaf weight: this host has no blkio.leaf_weight")
            write_file(d, "blkio.leaf_weight", bio["leafWeight"], "block I/O leaf weight")
        for ent in bio.get("weightDevice") or []:
            dev = f"{ent['major']}:{ent['minor']}"
            if ent.get("weight"):
                write_file(d, weight_file("weight_device"), f"{dev} {ent['weight']}", f"block I/O weight for {dev}")
            if ent.get("leafWeight"):
                write_file(d, "blkio.leaf_weight_device", f"{dev} {ent['leafWeight']}",
                           f"block I/O leaf weight for {dev}")
        for key, fname in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                           ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                           ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                           ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
            for ent in bio.get(key) or []:
                write_file(d, fname, f"{ent['major']}:{ent['minor']} {ent['rate']}", f"block I/O {key}")

    def _hugetlb(self, limits: list[dict]) -> None:
        if not limits:
            return
        d = self.paths.get("hugetlb")
        suffix = "limit_in_bytes"
        if d is None and self.unified and self.unified_root:
            # hybrid hosts may have hugetlb bound to the cgroup2 tree instead
            from .v2 import available_controllers, enable_controllers
            if "hugetlb" in available_controllers(self.unified_root):
                enable_controllers(self.unified_root, self.unified, ["hugetlb"], "hugepage limits")
                d, suffix = self.unified, "max"
        if d is None:
            raise CgroupError("hugepage limits need the 'hugetlb' cgroup controller, which is not available")
        for h in limits:
            fname = f"hugetlb.{h['pageSize']}.{suffix}"
            if not os.path.exists(os.path.join(d, fname)):
                sizes = sorted({f.split(".")[1] for f in os.listdir(d) if f.startswith("hugetlb.")})
                raise CgroupError(f"hugepage limit: page size {h['pageSize']} is not supported here "
                                  f"(supported: {', '.join(sizes) or 'none'})")
            write_file(d, fname, h["limit"], f"hugepage limit {h['pageSize']}")

    def _network(self, net: dict) -> None:
        if net.get("classID") is not None:
            d = self._need("net_cls", "network class id")
            write_file(d, "net_cls.classid", net["classID"], "network class id")
        for p in net.get("priorities") or []:
            d = self._need("net_prio", "network priorities")
            write_file(d, "net_prio.ifpriomap", f"{p['name']} {p['priority']}", "network priority")

    def _rdma(self, rdma: dict) -> None:
        for dev, lim in rdma.items():
            d = self._need("rdma", "rdma limits")
            parts = [dev]
            if lim.get("hcaHandles") is not None:
                parts.append(f"hca_handle={lim['hcaHandles']}")
            if lim.get("hcaObjects") is not None:
                parts.append(f"hca_object={lim['hcaObjects']}")
            write_file(d, "rdma.max", " ".join(parts), f"rdma limit for {dev}")

    def _unified(self, unified: dict) -> None:
        if not self.unified:
            raise CgroupError("linux.resources.unified needs cgroup v2, and this host has no cgroup2 hierarchy")
        from .v2 import write_unified
        write_unified(self.unified, self.unified_root, unified)

    # ---------------------------------------------------------------- freezer

    def freeze(self, timeout: float = 10.0) -> None:
        d = self._need("freezer", "pause")
        deadline = time.monotonic() + timeout
        delay, tries = 0.001, 0
        while True:
            write_file(d, "freezer.state", "FROZEN", "pause")
            if read_file(os.path.join(d, "freezer.state")).strip() == "FROZEN":
                return
            tries += 1
            if tries % 50 == 0:
                # a task stuck in an uninterruptible wait can keep the cgroup
                # FREEZING forever; thawing and retrying gets past it
                write_file(d, "freezer.state", "THAWED", "pause")
            if time.monotonic() > deadline:
                write_file(d, "freezer.state", "THAWED", "pause")
                raise CgroupError("pause: the container's processes did not freeze in time")
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def thaw(self) -> None:
        d = self._need("freezer", "resume")
        write_file(d, "freezer.state", "THAWED", "resume")

    def is_frozen(self) -> bool:
        d = self.paths.get("freezer")
        if d is None:
            return False
        try:
            return read_file(os.path.join(d, "freezer.state")).strip() == "FROZEN"
        except OSError:
            return False

    # ---------------------------------------------------------------- processes

    def _procs_dir(self) -> str | None:
        for c in ("pids", "freezer", "memory", "cpu", "devices"):
            if c in self.paths:
                return self.paths[c]
        dirs = self._dirs()
        return dirs[0] if dirs else None

    def fast_paths(self) -> tuple[list[str], str | None, str | None, str]:
        """(directories to remove, the one whose cgroup.procs ``pids`` reads, the
        freezer's state file or None, its text when frozen): for the launcher's
        sh fast path (runtime/fastfile.py), which must read what this class does."""
        frz = self.paths.get("freezer")
        return (self._dirs(), self._procs_dir(),
                os.path.join(frz, "freezer.state") if frz else None, "FROZEN")

    def pids(self) -> list[int]:
        d = self._procs_dir()
        if d is None or not os.path.isdir(d):
            return []
        return procs_recursive(d)

    def kill_all(self, sig: int) -> bool:
        """Signal every process. The cgroup is frozen meanwhile so that a
        process cannot fork a child we have not seen yet (a fork bomb would
        otherwise outrun us); SIGKILL also thaws a paused container so the
        processes can die, as runc does. False: there was nothing to signal."""
        if not self.pids():
            return False   # nothing to signal, and nothing left that could fork
        can_freeze = "freezer" in self.paths and os.path.isdir(self.paths["freezer"])
        was_frozen = self.is_frozen() if can_freeze else False
        if can_freeze and not was_frozen:
            self.freeze()
        try:
            signal_pids(self.pids(), sig)
        finally:
            if can_freeze and (not was_frozen or sig == signal.SIGKILL):
                self.thaw()
        return True

    # ---------------------------------------------------------------- stats

    def stats(self) -> dict:
        out: dict = {}
        d = self.paths.get("memory")
        if d and os.path.isdir(d):
            limit = read_int(os.path.join(d, "memory.limit_in_bytes"))
            out["memory"] = {
                "usage": read_int(os.path.join(d, "memory.usage_in_bytes"), 0),
                "max_usage": read_int(os.path.join(d, "memory.max_usage_in_bytes"), 0),
                "limit": None if limit is None or limit >= UNLIMITED_V1 else limit,
                "failcnt": read_int(os.path.join(d, "memory.failcnt"), 0),
                "oom_kill": read_kv(os.path.join(d, "memory.oom_control")).get("oom_kill", 0),
                "stat": read_kv(os.path.join(d, "memory.stat")),
            }
            swl = read_int(os.path.join(d, "memory.memsw.limit_in_bytes"))
            if os.path.exists(os.path.join(d, "memory.memsw.usage_in_bytes")):
                out["memory"]["swap_usage"] = read_int(os.path.join(d, "memory.memsw.usage_in_bytes"), 0)
                out["memory"]["swap_limit"] = None if swl is None or swl >= UNLIMITED_V1 else swl
        cpu: dict = {}
        d = self.paths.get("cpuacct")
        if d and os.path.isdir(d):
            cpu["usage_ns"] = read_int(os.path.join(d, "cpuacct.usage"), 0)
            user = read_int(os.path.join(d, "cpuacct.usage_user"))
            system = read_int(os.path.join(d, "cpuacct.usage_sys"))
            if user is None or system is None:
                ticks = read_kv(os.path.join(d, "cpuacct.stat"))
                hz = os.sysconf("SC_CLK_TCK")
                user = ticks.get("user", 0) * 1_000_000_000 // hz
                system = ticks.get("system", 0) * 1_000_000_000 // hz
            cpu["user_ns"], cpu["system_ns"] = user, system
            try:
                cpu["percpu_ns"] = [int(x) for x in read_file(os.path.join(d, "cpuacct.usage_percpu")).split()]
            except OSError:
                pass
        d = self.paths.get("cpu")
        if d and os.path.isdir(d):
            st = read_kv(os.path.join(d, "cpu.stat"))
            cpu["periods"] = st.get("nr_periods", 0)
            cpu["throttled_periods"] = st.get("nr_throttled", 0)
            cpu["throttled_ns"] = st.get("throttled_time", 0)
            cpu["throttled"] = cpu["throttled_periods"]
        if cpu:
            out["cpu"] = cpu
        d = self.paths.get("pids")
        if d and os.path.isdir(d):
            out["pids"] = {"current": read_int(os.path.join(d, "pids.current"), 0),
                           "limit": read_int(os.path.join(d, "pids.max"))}
        d = self.paths.get("blkio")
        if d and os.path.isdir(d):
            out["blkio"] = _blkio_stats(d)
        return out

    def oom_killed(self) -> bool:
        d = self.paths.get("memory")
        if not d:
            return False
        return read_kv(os.path.join(d, "memory.oom_control")).get("oom_kill", 0) > 0


def _blkio_stats(d: str) -> dict:
    """{"io_service_bytes": [{"major","minor","op","value"}], "io_serviced": [...]}
    from whichever of the throttle / bfq counters the kernel provides (the
    throttle ones count every I/O whatever the scheduler)."""
    out = {}
    for key in ("io_service_bytes", "io_serviced"):
        entries = []
        for prefix in ("blkio.throttle.", "blkio.bfq.", "blkio."):
            path = os.path.join(d, f"{prefix}{key}_recursive")
            try:
                text = read_file(path)
            except OSError:
                continue
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3 and ":" in parts[0]:
                    maj, mnr = parts[0].split(":")
                    entries.append({"major": int(maj), "minor": int(mnr), "op": parts[1], "value": int(parts[2])})
            break
        out[key] = entries
    return out


def _devices_state_matches(rules: list[dict], listing: str) -> bool:
    """Whether devices.list already shows what ``rules`` would produce.

    We replay the rules the way the v1 kernel controller does (a wildcard rule
    resets the default and clears the exceptions; other rules add or remove
    exceptions) and compare with the listing. Only a default-deny result can
    be compared: with default-allow the kernel prints just "a *:* rwm".
    """
    default_allow = True
    exc: dict[tuple[str, str, str], set[str]] = {}
    for r in rules:
        line = device_rule_line(r)
        t, num, acc = line.split()
        if t == "a":
            default_allow = bool(r.get("allow"))
            exc = {}
            continue
        maj, mnr = num.split(":")
        key = (t, maj, mnr)
        if bool(r.get("allow")) != default_allow:
            exc.setdefault(key, set()).update(acc)
        elif key in exc:
            exc[key] -= set(acc)
            if not exc[key]:
                del exc[key]
    lines = [ln.split() for ln in listing.splitlines() if ln.strip()]
    if default_allow:
        return not exc and lines == [["a", "*:*", "rwm"]]
    current = {}
    for ln in lines:
        if len(ln) != 3 or ln[0] == "a":
            return False
        maj, mnr = ln[1].split(":")
        current[(ln[0], maj, mnr)] = set(ln[2])
    return current == exc
