"""The network and block I/O parts of a container's stats, in dockerd's shapes.

``networks``: per interface of the container's network namespace (its loopback left
out, as dockerd lists only its endpoints' interfaces), read from ``/proc/<pid>/net/dev``,
which the kernel answers for the namespace of that process.

``blkio_stats``: from the container's cgroup. cgroup v1 as containerd reads it: the
``blkio.io_*_recursive`` files (CFQ/BFQ), falling back to ``blkio.throttle.*`` for the
two the throttle policy has, entries ``{major, minor, op, value}`` with the kernel's op
names (Read, Write, Sync, Async, Discard, Total); cgroup v2: ``io.stat`` as dockerd
converts it (``io_service_bytes_recursive`` read/write from rbytes/wbytes,
``io_serviced_recursive`` from rios/wios), the other fields null.
"""

from __future__ import annotations

import os

_NET_FIELDS = ("bytes", "packets", "errors", "dropped")
_EMPTY_BLKIO = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
                "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                "io_time_recursive", "sectors_recursive")
# v1: blkio_stats field -> files to try, in containerd's order
_V1_FILES = (
    ("io_service_bytes_recursive", ("blkio.io_service_bytes_recursive",
                                    "blkio.throttle.io_service_bytes_recursive")),
    ("io_serviced_recursive", ("blkio.io_serviced_recursive", "blkio.throttle.io_serviced_recursive")),
    ("io_queue_recursive", ("blkio.io_queued_recursive",)),
    ("io_service_time_recursive", ("blkio.io_service_time_recursive",)),
    ("io_wait_time_recursive", ("blkio.io_wait_time_recursive",)),
    ("io_merged_recursive", ("blkio.io_merged_recursive",)),
    ("io_time_recursive", ("blkio.time_recursive",)),
    ("sectors_recursive", ("blkio.sectors_recursive",)),
)


def network_stats(pid: int) -> dict:
    """{ifname: {rx_bytes, rx_packets, rx_errors, rx_dropped, tx_...}} of ``pid``'s netns."""
    try:
        with open(f"/proc/{int(pid)}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except (OSError, ValueError):
        return {}
    out = {}
    for line in lines:
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or name == "lo":
            continue
        v = rest.split()
        if len(v) < 12:
            continue
        # receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets errs drop ...
        rx, tx = v[0:4], v[8:12]
        entry = {f"rx_{k}": int(x) for k, x in zip(_NET_FIELDS, rx)}
        entry.update({f"tx_{k}": int(x) for k, x in zip(_NET_FIELDS, tx)})
        out[name] = entry
    return out


def blkio_stats(cgroup_path: str) -> dict:
    """dockerd's blkio_stats for the cgroup at ``cgroup_path`` (relative to the hierarchy)."""
    empty = {k: None for k in _EMPTY_BLKIO}
    try:
        from dockyard.runtime import cgroups
        from dockyard.runtime.cgroups._common import v1_mounts, v2_mount

        if cgroups.host_info()["driver"] == "v2":
            mount = v2_mount()
            return _v2(os.path.join(mount[0], cgroup_path.lstrip("/")), empty) if mount else empty
        mount = v1_mounts().get("blkio")
        if mount is None:
            return empty
        return _v1(_v1_dir(mount, cgroup_path), empty)
    except Exception:  # noqa: BLE001 - stats are best effort
        return empty


def _v1_dir(mount: tuple[str, str], cgroup_path: str) -> str:
    point, root = mount
    rel = cgroup_path
    if root not in ("", "/") and rel.startswith(root):
        rel = rel[len(root):]
    return os.path.join(point, rel.lstrip("/"))


def _v1(d: str, out: dict) -> dict:
    out = dict(out)
    for field, names in _V1_FILES:
        for name in names:
            entries = _v1_entries(os.path.join(d, name))
            if entries:
                out[field] = entries
                break
    return out


def _v1_entries(path: str) -> list[dict]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "Total":
            continue
        if len(parts) == 2:   # sectors/time files: "maj:min value"
            dev, op, value = parts[0], "", parts[1]
        elif len(parts) == 3:
            dev, op, value = parts
        else:
            continue
        major, sep, minor = dev.partition(":")
        if not sep or not major.isdigit() or not minor.isdigit() or not value.isdigit():
            continue
        out.append({"major": int(major), "minor": int(minor), "op": op, "value": int(value)})
    return out


def _v2(d: str, out: dict) -> dict:
    try:
        with open(os.path.join(d, "io.stat")) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    service_bytes, serviced = [], []
    for line in lines:
        dev, *kvs = line.split()
        major, sep, minor = dev.partition(":")
        if not sep or not major.isdigit() or not minor.isdigit():
            continue
        vals = dict(kv.split("=", 1) for kv in kvs if "=" in kv)
        for key, op, target in (("rbytes", "read", service_bytes), ("wbytes", "write", service_bytes),
                                ("rios", "read", serviced), ("wios", "write", serviced)):
            if vals.get(key, "").isdigit():
                target.append({"major": int(major), "minor": int(minor), "op": op,
                               "value": int(vals[key])})
    out = dict(out)
    out["io_service_bytes_recursive"] = service_bytes
    out["io_serviced_recursive"] = serviced
    return out
