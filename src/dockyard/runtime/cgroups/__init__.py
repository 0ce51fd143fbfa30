"""Resource limits, freezing and accounting through cgroups (v1, hybrid and v2).

The runtime core uses only this module's functions and the manager they
return::

    mgr = open_manager(cgroups_path, container_id)   # chooses the driver for this host
    mgr.create(); mgr.apply(resources); mgr.add(pid)
    mgr.dirs_by_mountpoint()                         # {mountpoint: container's dir}
    mgr.freeze(); mgr.thaw(); mgr.is_frozen()
    mgr.pids(); mgr.kill_all(sig) -> bool; mgr.stats(); mgr.oom_killed()
    mgr.destroy()
    state["cgroup"] = mgr.to_dict(); mgr = manager_from_dict(state["cgroup"])

Also: ``validate_resources(resources)`` (pure, call it before creating
anything), ``host_info()`` (for ``features`` and the daemon's /info),
``mgr.path(controller)`` (the container's directory for a controller) and
``mgr.warnings`` (settings that were ignored, e.g. memory.kernel).

Driver choice: a host whose /sys/fs/cgroup is cgroup2 gets the v2 driver;
otherwise the v1 driver, which also joins the cgroup2 tree of a hybrid host
(as runc does). ``DOCKYARD_CGROUP_DRIVER=v1|v2`` forces one; forcing v2 on a
hybrid host uses the tree at /sys/fs/cgroup/unified, which is how the v2 code
is exercised on a v1 machine.

Every failure is a :class:`CgroupError` whose message names the resource and
what the host lacks or the kernel refused.
"""

from __future__ import annotations

from dockyard.runtime import fastos as os

from ._common import CgroupError, normalize_cgroups_path, validate_resources

__all__ = ["CgroupError", "open_manager", "manager_from_dict", "host_info", "validate_resources",
           "blkio_support"]


def _forced_driver() -> str | None:
    forced = os.environ.get("DOCKYARD_CGROUP_DRIVER", "").strip().lower()
    if not forced:
        return None
    if forced not in ("v1", "v2"):
        raise CgroupError(f"DOCKYARD_CGROUP_DRIVER must be v1 or v2, not {forced!r}")
    return forced


def open_manager(cgroups_path: str | None, container_id: str):
    """A manager for the container's cgroup(s). Creates nothing (see create())."""
    relative, path = normalize_cgroups_path(cgroups_path, container_id)
    forced = _forced_driver()
    if forced == "v2" or (forced is None and os.path.exists("/sys/fs/cgroup/cgroup.controllers")):
        from .v2 import V2Manager
        return V2Manager.open(container_id, relative, path)
    from .v1 import V1Manager
    return V1Manager.open(container_id, relative, path)


def manager_from_dict(d: dict):
    """Rebuild a manager from ``to_dict()`` output (the runtime's state.json),
    so later commands act on the exact directories chosen at create time."""
    driver = d.get("driver")
    if driver == "v2":
        from .v2 import V2Manager
        return V2Manager.from_dict(d)
    if driver == "v1":
        from .v1 import V1Manager
        return V1Manager.from_dict(d)
    raise CgroupError(f"unknown cgroup driver {driver!r} in saved state")


def host_info() -> dict:
    """What this host offers, for ``dockyard-runc features`` and the daemon's /info.

    ``driver`` is "v1", "v2" or "hybrid" (v1 controllers plus a cgroup2 tree);
    when DOCKYARD_CGROUP_DRIVER forces v2, "v2". ``controllers`` is what
    containers can be limited by under that driver.
    """
    from ._common import host_layout, v1_mounts, v2_mount
    from .v2 import available_controllers

    layout = host_layout()
    forced = _forced_driver()
    v1 = {} if layout == "v2" else v1_mounts()
    v2 = v2_mount()
    v2_ctrls = available_controllers(v2[0]) if v2 else []
    v1_ctrls = sorted(c for c in v1 if not c.startswith("name="))
    driver = forced or layout
    if forced == "v1" and layout == "hybrid":
        driver = "hybrid"
    if driver == "v2":
        controllers = sorted(set(v2_ctrls) | {"freezer", "devices"})  # core features / eBPF
    else:
        controllers = sorted(set(v1_ctrls) | (set(v2_ctrls) if driver == "hybrid" else set()))
    swap = False
    if driver == "v2":
        swap = "memory" in v2_ctrls and _v2_swap_accounting(v2[0])
    elif "memory" in v1:
        swap = os.path.exists(os.path.join(v1["memory"][0], "memory.memsw.limit_in_bytes"))
    return {
        "driver": driver,
        "layout": layout,
        "controllers": controllers,
        "v1_controllers": v1_ctrls,
        "v2_controllers": v2_ctrls,
        "v2_mount": v2[0] if v2 else None,
        "memory_swap": swap,
        "cgroup_kill": bool(v2) and driver == "v2",
    }


def blkio_support() -> dict[str, bool]:
    """Which block I/O settings this host's containers can be given (Docker's
    sysinfo): ``weight``, ``weight_device``, ``read_bps``, ``write_bps``,
    ``read_iops``, ``write_iops``. Weights need the CFQ or BFQ scheduler's files
    (v1 ``blkio.weight``/``blkio.bfq.weight``, v2 ``io.weight``/``io.bfq.weight``);
    throttling needs v1's ``blkio.throttle.*`` or v2's ``io`` controller."""
    info = host_info()
    if info["driver"] == "v2":
        io = "io" in info["v2_controllers"]
        weight = io and bool(info["v2_mount"]) and (
            _v2_child_has(info["v2_mount"], "io.weight") or _v2_child_has(info["v2_mount"], "io.bfq.weight"))
        return {"weight": weight, "weight_device": weight, "read_bps": io, "write_bps": io,
                "read_iops": io, "write_iops": io}
    from ._common import v1_mounts

    mount = v1_mounts().get("blkio")

    def has(*names: str) -> bool:
        return mount is not None and any(os.path.exists(os.path.join(mount[0], n)) for n in names)

    return {"weight": has("blkio.weight", "blkio.bfq.weight"),
            "weight_device": has("blkio.weight_device", "blkio.bfq.weight_device"),
            "read_bps": has("blkio.throttle.read_bps_device"),
            "write_bps": has("blkio.throttle.write_bps_device"),
            "read_iops": has("blkio.throttle.read_iops_device"),
            "write_iops": has("blkio.throttle.write_iops_device")}


def _v2_child_has(root: str, name: str) -> bool:
    # per-cgroup files exist only in non-root cgroups; look at one
    try:
        for entry in os.scandir(root):
            if entry.is_dir(follow_symlinks=False):
                return os.path.exists(os.path.join(entry.path, name))
    except OSError:
        pass
    return False


def _v2_swap_accounting(root: str) -> bool:
    # memory.swap.max exists only in non-root cgroups; look at one
    try:
        for entry in os.scandir(root):
            if entry.is_dir(follow_symlinks=False):
                return os.path.exists(os.path.join(entry.path, "memory.swap.max"))
    except OSError:
        pass
    return False
