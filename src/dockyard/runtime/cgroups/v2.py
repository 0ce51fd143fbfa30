"""The cgroup v2 driver: one directory in the unified hierarchy.

v2 has a single tree in which a controller is usable in a cgroup only if the
parent lists it in ``cgroup.subtree_control``; so before writing a limit we
make sure the controller is enabled on the way down from the root, and if the
hierarchy does not offer it at all we say so by name. The freezer and
``cgroup.kill`` are core features of every v2 cgroup. Device access has no
controller files on v2: it is an eBPF program attached to the cgroup
(see devices_ebpf.py).
"""

from __future__ import annotations

from dockyard.runtime import fastos as os
import _signal as signal  # not `signal`: it builds enums at import
import time

from ._common import (
    CgroupError,
    blkio_weight_to_io_weight,
    hierarchy_dir,
    warn,
    mkdir_p,
    own_cgroups,
    procs_recursive,
    read_file,
    read_int,
    read_kv,
    rmdir_tree,
    shares_to_weight,
    signal_pids,
    swap_to_v2,
    v2_mount,
    validate_resources,
    write_file,
)


# enabled for every container; hugetlb, rdma and misc only when a limit asks
_DEFAULT_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")


def available_controllers(directory: str) -> list[str]:
    try:
        return read_file(os.path.join(directory, "cgroup.controllers")).split()
    except OSError:
        return []


def enable_controllers(root: str, directory: str, controllers: list[str], what: str) -> None:
    """Make ``controllers`` usable in ``directory`` by enabling them in the
    ``cgroup.subtree_control`` of every ancestor from the hierarchy root down.

    Raises a CgroupError naming the resource when the hierarchy does not have
    the controller at all, or an ancestor refuses (v2's "no internal
    processes" rule: a non-root cgroup holding processes cannot delegate).
    """
    have = available_controllers(root)
    missing = [c for c in controllers if c not in have]
    if missing:
        raise CgroupError(
            f"{what}: the cgroup v2 '{missing[0]}' controller is not available in the cgroup2 hierarchy at "
            f"{root} (available controllers: {', '.join(have) or 'none'})")
    if set(controllers) <= set(available_controllers(directory)):
        return
    chain = []
    d = os.path.dirname(directory)
    while d.startswith(root) and len(d) >= len(root):
        chain.append(d)
        if d == root:
            break
        d = os.path.dirname(d)
    for d in reversed(chain):
        enabled = read_file(os.path.join(d, "cgroup.subtree_control")).split()
        todo = [c for c in controllers if c not in enabled]
        if todo:
            write_file(d, "cgroup.subtree_control", " ".join("+" + c for c in todo),
                       f"{what} (enabling the {', '.join(todo)} controller in {d})")


def write_unified(directory: str, root: str | None, unified: dict) -> None:
    """Raw cgroup v2 key/values (OCI linux.resources.unified)."""
    for key, value in unified.items():
        ctrl = key.split(".", 1)[0]
        if not os.path.exists(os.path.join(directory, key)):
            if ctrl != "cgroup" and root is not None and ctrl not in available_controllers(directory):
                enable_controllers(root, directory, [ctrl], f"unified key {key}")
            if not os.path.exists(os.path.join(directory, key)):
                raise CgroupError(f"unified key {key}: no such cgroup file in {directory}")
        write_file(directory, key, value, f"unified key {key}")


class V2Manager:
    driver = "v2"

    def __init__(self, container_id: str, cgroups_path: str, path: str, root: str):
        self.container_id = container_id
        self.cgroups_path = cgroups_path
        self.dir = path      # the container's cgroup directory
        self.root = root     # mountpoint of the cgroup2 hierarchy
        self.warnings: list[str] = []

    @classmethod
    def open(cls, container_id: str, relative: bool, path: str) -> "V2Manager":
        mount = v2_mount()
        if mount is None:
            raise CgroupError("no cgroup2 hierarchy is mounted on this host")
        _own_v1, own_v2 = own_cgroups()
        return cls(container_id, path, hierarchy_dir(mount[0], mount[1], own_v2, relative, path), mount[0])

    def dirs_by_mountpoint(self) -> dict[str, str]:
        """The container's directory, keyed by the hierarchy's mountpoint."""
        return {self.root: self.dir}

    def to_dict(self) -> dict:
        return {"driver": "v2", "container_id": self.container_id, "cgroups_path": self.cgroups_path,
                "path": self.dir, "root": self.root}

    @classmethod
    def from_dict(cls, d: dict) -> "V2Manager":
        return cls(d["container_id"], d["cgroups_path"], d["path"], d["root"])

    def path(self, controller: str | None = None) -> str:
        return self.dir

    def create(self) -> None:
        created: list[str] = []
        try:
            mkdir_p(self.dir, created)
        except OSError as e:
            for d in reversed(created):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise CgroupError(f"cannot create cgroup {self.dir}: {e.strerror}") from None
        # Like runc, make the accounting controllers usable at once, so that
        # `docker stats` works for containers that were given no limits.
        # Best effort: apply() reports what a requested limit lacks.
        wanted = [c for c in _DEFAULT_CONTROLLERS if c in available_controllers(self.root)]
        for c in wanted:
            try:
                enable_controllers(self.root, self.dir, [c], f"enabling the {c} controller")
            except CgroupError:
                pass

    def add(self, pid: int) -> None:
        write_file(self.dir, "cgroup.procs", pid, f"adding process {pid} to cgroup")

    def destroy(self) -> None:
        rmdir_tree(self.dir)

    # ---------------------------------------------------------------- resources

    def _need(self, controller: str, what: str) -> None:
        enable_controllers(self.root, self.dir, [controller], what)

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)
        warn(msg)

    def apply(self, resources: dict | None) -> None:
        validate_resources(resources)
        if not resources:
            return
        d = self.dir
        mem = resources.get("memory") or {}
        limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
        if limit or swap or mem.get("reservation"):
            self._need("memory", "memory limit" if limit else "memory settings")
            if mem.get("checkBeforeUpdate") and limit > 0:
                usage = read_int(os.path.join(d, "memory.current"), 0) or 0
                if usage > limit:
                    raise CgroupError(f"memory limit {limit} is below the container's current usage {usage}")
            v2swap = swap_to_v2(swap, limit)
            if v2swap is not None:
                if not os.path.exists(os.path.join(d, "memory.swap.max")):
                    if swap != -1 and not (limit == -1 and swap == 0):
                        raise CgroupError("memory swap limit: this host has no swap accounting "
                                          "(memory.swap.max is missing)")
                else:
                    write_file(d, "memory.swap.max", "max" if v2swap == -1 else v2swap, "memory swap limit")
            if limit:
                write_file(d, "memory.max", "max" if limit == -1 else limit, "memory limit")
            if mem.get("reservation"):
                r = mem["reservation"]
                write_file(d, "memory.low", "max" if r == -1 else r, "memory reservation")
        if mem.get("kernel"):
            self._warn("memory.kernel (kernel memory limit) is not supported on cgroup v2 and is ignored")
        if mem.get("kernelTCP"):
            self._warn("memory.kernelTCP is not supported on cgroup v2 and is ignored")
        sw = mem.get("swappiness")
        if sw is not None and 0 <= sw <= 100:
            raise CgroupError("memory swappiness is not supported on cgroup v2")
        if mem.get("disableOOMKiller"):
            raise CgroupError("disabling the OOM killer is not supported on cgroup v2")

        cpu = resources.get("cpu") or {}
        if cpu.get("shares"):
            self._need("cpu", "cpu shares")
            write_file(d, "cpu.weight", shares_to_weight(cpu["shares"]), "cpu shares (as cpu.weight)")
        quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
        if quota or period:
            self._need("cpu", "cpu quota/period")
            value = str(quota) if quota > 0 else "max"
            if period:
                value += f" {period}"
            write_file(d, "cpu.max", value, "cpu quota/period")
        if cpu.get("burst"):
            self._need("cpu", "cpu burst")
            write_file(d, "cpu.max.burst", cpu["burst"], "cpu burst")
        if cpu.get("idle"):
            self._need("cpu", "cpu idle")
            write_file(d, "cpu.idle", cpu["idle"], "cpu idle")
        if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
            raise CgroupError("cpu realtime runtime/period is not supported on cgroup v2")
        for key in ("cpus", "mems"):
            if cpu.get(key):
                self._need("cpuset", f"cpuset {key}")
                try:
                    write_file(d, f"cpuset.{key}", cpu[key], f"cpuset {key}")
                except CgroupError as e:
                    try:
                        avail = read_file(os.path.join(os.path.dirname(d), f"cpuset.{key}.effective")).strip()
                    except OSError:
                        avail = "?"
                    raise CgroupError(f"{e}; this host offers {key} {avail}") from None

        pids = resources.get("pids") or {}
        if pids.get("limit"):
            self._need("pids", "pids limit")
            write_file(d, "pids.max", pids["limit"] if pids["limit"] > 0 else "max", "pids limit")

        self._io(resources.get("blockIO") or {})

        for h in resources.get("hugepageLimits") or []:
            self._need("hugetlb", "hugepage limits")
            fname = f"hugetlb.{h['pageSize']}.max"
            if not os.path.exists(os.path.join(d, fname)):
                raise CgroupError(f"hugepage limit: page size {h['pageSize']} is not supported here")
            write_file(d, fname, h["limit"], f"hugepage limit {h['pageSize']}")

        for dev, lim in (resources.get("rdma") or {}).items():
            self._need("rdma", "rdma limits")
            parts = [dev]
            if lim.get("hcaHandles") is not None:
                parts.append(f"hca_handle={lim['hcaHandles']}")
            if lim.get("hcaObjects") is not None:
                parts.append(f"hca_object={lim['hcaObjects']}")
            write_file(d, "rdma.max", " ".join(parts), f"rdma limit for {dev}")

        net = resources.get("network") or {}
        if net.get("classID") is not None or net.get("priorities"):
            raise CgroupError("network classID/priorities (net_cls, net_prio) do not exist on cgroup v2")

        if resources.get("devices") is not None:
            self._devices(resources["devices"])

        if resources.get("unified"):
            write_unified(d, self.root, resources["unified"])

    def _io(self, bio: dict) -> None:
        d = self.dir
        if not any(bio.get(k) for k in ("weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
                                       "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                                       "throttleWriteIOPSDevice")):
            return
        self._need("io", "block I/O settings")
        bfq = os.path.exists(os.path.join(d, "io.bfq.weight"))
        if bio.get("weight"):
            if bfq:
                write_file(d, "io.bfq.weight", bio["weight"], "block I/O weight")
            elif os.path.exists(os.path.join(d, "io.weight")):
                write_file(d, "io.weight", blkio_weight_to_io_weight(bio["weight"]), "block I/O weight")
            else:
                raise CgroupError("block I/O weight: this host has neither io.bfq.weight nor io.weight")
        if bio.get("leafWeight"):
            self._warn("blockIO.leafWeight has no cgroup v2 equivalent and is ignored")
        for ent in bio.get("weightDevice") or []:
            if ent.get("weight"):
                dev = f"{ent['major']}:{ent['minor']}"
                if bfq:
                    write_file(d, "io.bfq.weight", f"{dev} {ent['weight']}", f"block I/O weight for {dev}")
                else:
                    write_file(d, "io.weight", f"{dev} {blkio_weight_to_io_weight(ent['weight'])}",
                               f"block I/O weight for {dev}")
        for key, knob in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                          ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
            for ent in bio.get(key) or []:
                rate = ent["rate"] or "max"
                write_file(d, "io.max", f"{ent['major']}:{ent['minor']} {knob}={rate}", f"block I/O {key}")

    def _devices(self, rules: list[dict]) -> None:
        from . import devices_ebpf
        devices_ebpf.apply(self.dir, rules)

    # ---------------------------------------------------------------- freezer

    def _wait_frozen(self, want: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            if read_kv(os.path.join(self.dir, "cgroup.events")).get("frozen") == want:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def freeze(self, timeout: float = 10.0) -> None:
        write_file(self.dir, "cgroup.freeze", 1, "pause")
        if not self._wait_frozen(1, timeout):
            write_file(self.dir, "cgroup.freeze", 0, "pause")
            raise CgroupError("pause: the container's processes did not freeze in time")

    def thaw(self) -> None:
        write_file(self.dir, "cgroup.freeze", 0, "resume")
        self._wait_frozen(0, 10.0)

    def is_frozen(self) -> bool:
        try:
            return read_file(os.path.join(self.dir, "cgroup.freeze")).strip() == "1"
        except OSError:
            return False

    # ---------------------------------------------------------------- processes

    def fast_paths(self) -> tuple[list[str], str | None, str | None, str]:
        """As V1Manager.fast_paths: the one directory, its freeze file, "1"."""
        return [self.dir], self.dir, os.path.join(self.dir, "cgroup.freeze"), "1"

    def pids(self) -> list[int]:
        if not os.path.isdir(self.dir):
            return []
        return procs_recursive(self.dir)

    def kill_all(self, sig: int) -> bool:
        """cgroup.kill kills the whole subtree atomically (no fork race, works
        on frozen cgroups); for other signals, or older kernels, freeze,
        signal each process, then restore. False: there was nothing to signal."""
        if not os.path.isdir(self.dir) or not self.pids():
            return False   # nothing to signal, and nothing left that could fork
        if sig == signal.SIGKILL and os.path.exists(os.path.join(self.dir, "cgroup.kill")):
            write_file(self.dir, "cgroup.kill", 1, "killing the container's processes")
            return True
        was_frozen = self.is_frozen()
        if not was_frozen:
            self.freeze()
        try:
            signal_pids(self.pids(), sig)
        finally:
            if not was_frozen or sig == signal.SIGKILL:
                self.thaw()
        return True

    # ---------------------------------------------------------------- stats

    def stats(self) -> dict:
        d = self.dir
        out: dict = {}
        if os.path.exists(os.path.join(d, "memory.current")):
            events = read_kv(os.path.join(d, "memory.events"))
            out["memory"] = {
                "usage": read_int(os.path.join(d, "memory.current"), 0),
                "max_usage": read_int(os.path.join(d, "memory.peak"), 0),
                "limit": read_int(os.path.join(d, "memory.max")),
                "failcnt": events.get("max", 0),
                "oom_kill": events.get("oom_kill", 0),
                "stat": read_kv(os.path.join(d, "memory.stat")),
            }
            if os.path.exists(os.path.join(d, "memory.swap.current")):
                out["memory"]["swap_usage"] = read_int(os.path.join(d, "memory.swap.current"), 0)
                out["memory"]["swap_limit"] = read_int(os.path.join(d, "memory.swap.max"))
        st = read_kv(os.path.join(d, "cpu.stat"))
        if st:
            out["cpu"] = {
                "usage_ns": st.get("usage_usec", 0) * 1000,
                "user_ns": st.get("user_usec", 0) * 1000,
                "system_ns": st.get("system_usec", 0) * 1000,
                "periods": st.get("nr_periods", 0),
                "throttled_periods": st.get("nr_throttled", 0),
                "throttled_ns": st.get("throttled_usec", 0) * 1000,
                "throttled": st.get("nr_throttled", 0),
            }
        if os.path.exists(os.path.join(d, "pids.current")):
            out["pids"] = {"current": read_int(os.path.join(d, "pids.current"), 0),
                           "limit": read_int(os.path.join(d, "pids.max"))}
        if os.path.exists(os.path.join(d, "io.stat")):
            out["blkio"] = _io_stats(d)
        return out

    def oom_killed(self) -> bool:
        ev = read_kv(os.path.join(self.dir, "memory.events"))
        return ev.get("oom_kill", 0) > 0 or ev.get("oom_group_kill", 0) > 0


def _io_stats(d: str) -> dict:
    """io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...") in the same shape as
    the v1 blkio stats, so `docker stats` code has one format to read."""
    service_bytes, serviced = [], []
    try:
        text = read_file(os.path.join(d, "io.stat"))
    except OSError:
        text = ""
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        maj, mnr = (int(x) for x in parts[0].split(":"))
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, lst, op in (("rbytes", service_bytes, "Read"), ("wbytes", service_bytes, "Write"),
                             ("rios", serviced, "Read"), ("wios", serviced, "Write")):
            if key in kv:
                lst.append({"major": maj, "minor": mnr, "op": op, "value": int(kv[key])})
    return {"io_service_bytes": service_bytes, "io_serviced": serviced}
