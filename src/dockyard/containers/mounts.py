"""A container's mount points: parsed from ``-v`` (Binds), ``--mount`` (HostConfig.Mounts),
``--tmpfs``, ``Config.Volumes`` (``-v /path`` and the image's VOLUMEs) and
``--volumes-from``, with dockerd's precedence and errors (pure: no volume is made here);
then, at start, turned into the OCI mounts the runtime makes.

A mount point is plain data, kept in the container's record (``MountPoints``)::

    {"Type": "volume"|"bind"|"tmpfs", "Name", "Source", "Destination", "Driver", "Mode",
     "RW", "Propagation", "CopyData", "Subpath", "Recursive", "ReadOnlyRecursive",
     "CreateSource", "Anonymous", "VolumeOptions", "Tmpfs": [options]}

``Mounts`` in inspect is its public part (``view``).
"""

from __future__ import annotations

import os

from dockyard import errors
from dockyard.volumes import names as volnames

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_MODES = {"ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated"} | set(PROPAGATIONS)
_CONSISTENCY = ("", "default", "consistent", "cached", "delegated")
PUBLIC = ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation")


def _spec_error(spec: str, why: str) -> errors.InvalidParameter:
    return errors.InvalidParameter(f"invalid volume specification: '{spec}'" + (f": {why}" if why else ""))


def _mount_error(typ: str, why: str) -> errors.InvalidParameter:
    return errors.InvalidParameter(f'invalid mount config for type "{typ}": {why}')


def _check_dest(dest: str, typ: str, spec: str | None = None) -> str:
    if not dest.startswith("/"):
        why = f"invalid mount path: '{dest}' mount path must be absolute"
        raise _spec_error(spec, _mount_error(typ, why).args[0]) if spec else _mount_error(typ, why)
    dest = os.path.normpath(dest)
    if dest == "/":
        why = "invalid specification: destination can't be '/'"
        raise _spec_error(spec, _mount_error(typ, why).args[0]) if spec else _mount_error(typ, why)
    return dest


def _point(**kw) -> dict:
    base = {"Type": "volume", "Name": "", "Source": "", "Destination": "", "Driver": "",
            "Mode": "", "RW": True, "Propagation": "", "CopyData": False, "Subpath": "",
            "Recursive": True, "ReadOnlyRecursive": False, "CreateSource": False,
            "Anonymous": False, "VolumeOptions": None, "Tmpfs": None}
    base.update(kw)
    return base


def parse_bind(spec: str, ro_non_recursive: bool = False) -> dict:
    """One ``-v`` string: ``/host:/ctr[:mode]``, ``name:/ctr[:mode]`` or ``/ctr``.
    ``ro_non_recursive``: a read-only bind is read-only non-recursively (API < 1.44)."""
    if not isinstance(spec, str) or not spec:
        raise _spec_error(str(spec), "")
    parts = spec.split(":")
    if len(parts) == 1:
        dest = _check_dest(parts[0], "volume", spec)
        return _point(Destination=dest, Driver="local", Anonymous=True, CopyData=True)
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise _spec_error(spec, "")
    src, dst = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    for m in modes:
        if m not in _MODES:
            raise _spec_error(spec, f"invalid mode: {parts[2]}")
    if sum(m in ("ro", "rw") for m in modes) > 1 or sum(m in PROPAGATIONS for m in modes) > 1:
        raise _spec_error(spec, f"invalid mode: {parts[2]}")
    rw = "ro" not in modes
    prop = next((m for m in modes if m in PROPAGATIONS), "")
    if src.startswith("/"):
        dest = _check_dest(dst, "bind", spec)
        if "nocopy" in modes:
            raise _spec_error(spec, _mount_error("bind", "field VolumeOptions must not be "
                                                         "specified").args[0])
        return _point(Type="bind", Source=os.path.normpath(src), Destination=dest,
                      Mode=parts[2] if len(parts) == 3 else "", RW=rw,
                      Propagation=prop or "rprivate", CreateSource=True,
                      ReadOnlyRecursive=not rw and not ro_non_recursive)   # Docker 25+: recursively ro
    dest = _check_dest(dst, "volume", spec)
    if prop:
        raise _spec_error(spec, _mount_error("volume", "field BindOptions must not be "
                                                       "specified").args[0])
    volnames.validate(src)
    mode = parts[2] if len(parts) == 3 else "z"
    return _point(Name=src, Destination=dest, Driver="local", Mode=mode, RW=rw,
                  CopyData="nocopy" not in modes)


def parse_mount(m: dict, ro_non_recursive: bool = False) -> dict:
    """One HostConfig.Mounts entry (``--mount``); ``ro_non_recursive`` as parse_bind's."""
    if not isinstance(m, dict):
        raise errors.InvalidParameter("invalid mount: expected an object")
    typ = m.get("Type") or ""
    if typ in ("image", "npipe", "cluster"):
        raise _mount_error(typ, f"{typ} mounts are not supported by this daemon (bind, "
                                f"volume and tmpfs are)")
    if typ not in ("bind", "volume", "tmpfs"):
        raise _mount_error(typ, "mount type unknown")
    target = m.get("Target") or ""
    if not target:
        raise _mount_error(typ, "field Target must not be empty")
    dest = _check_dest(target, typ)
    if (m.get("Consistency") or "") not in _CONSISTENCY:
        raise _mount_error(typ, f"invalid consistency: {m['Consistency']}")
    for field, owner in (("BindOptions", "bind"), ("VolumeOptions", "volume"),
                         ("TmpfsOptions", "tmpfs")):
        if m.get(field) and typ != owner:
            raise _mount_error(typ, f"field {field} must not be specified")
    ro = bool(m.get("ReadOnly"))
    src = m.get("Source") or ""
    if typ == "bind":
        if not src:
            raise _mount_error(typ, "field Source must not be empty")
        if not src.startswith("/"):
            raise _mount_error(typ, f"invalid mount path: '{src}' mount path must be absolute")
        bo = m.get("BindOptions") or {}
        prop = bo.get("Propagation") or "rprivate"
        if prop not in PROPAGATIONS:
            raise _mount_error(typ, f"invalid propagation mode: {prop}")
        if (bo.get("ReadOnlyNonRecursive") or bo.get("ReadOnlyForceRecursive")) and not ro:
            raise _mount_error(typ, "option ReadOnlyNonRecursive and ReadOnlyForceRecursive "
                                    "require ReadOnly to be set")
        if bo.get("ReadOnlyNonRecursive") and bo.get("ReadOnlyForceRecursive"):
            raise _mount_error(typ, "cannot set both ReadOnlyNonRecursive and "
                                    "ReadOnlyForceRecursive")
        if bo.get("NonRecursive") and bo.get("ReadOnlyForceRecursive"):
            raise _mount_error(typ, "cannot set both NonRecursive and ReadOnlyForceRecursive")
        src = os.path.normpath(src)
        if not bo.get("CreateMountpoint") and not os.path.exists(src):
            raise _mount_error(typ, f"bind source path does not exist: {src}")
        return _point(Type="bind", Source=src, Destination=dest, RW=not ro, Propagation=prop,
                      Recursive=not bo.get("NonRecursive"),
                      ReadOnlyRecursive=ro and not bo.get("ReadOnlyNonRecursive") and not (
                          ro_non_recursive and not bo.get("ReadOnlyForceRecursive")),
                      CreateSource=bool(bo.get("CreateMountpoint")))
    if typ == "tmpfs":
        if src:
            raise _mount_error(typ, "field Source must not be specified")
        to = m.get("TmpfsOptions") or {}
        opts = []
        size = to.get("SizeBytes") or 0
        if size < 0:
            raise _mount_error(typ, "invalid tmpfs size")
        if size:
            opts.append(f"size={size}")
        if to.get("Mode"):
            opts.append(f"mode={int(to['Mode']) & 0o7777:o}")
        for o in to.get("Options") or []:
            if not isinstance(o, list) or not 1 <= len(o) <= 2:
                raise _mount_error(typ, f"invalid tmpfs option {o!r}")
            key = o[0]
            if key not in ("exec", "noexec", "suid", "nosuid", "dev", "nodev", "nr_inodes",
                           "uid", "gid", "mode", "size"):
                raise _mount_error(typ, f"invalid tmpfs option {o!r}")
            opts.append(key if len(o) == 1 else f"{key}={o[1]}")
        if ro:
            opts.append("ro")
        return _point(Type="tmpfs", Destination=dest, RW=not ro, Tmpfs=opts)
    vo = m.get("VolumeOptions") or {}
    if src:
        volnames.validate(src)
    driver_cfg = vo.get("DriverConfig") or {}
    sub = vo.get("Subpath") or ""
    if sub:
        if not src:
            raise _mount_error(typ, "must not set Subpath when using anonymous volumes")
        clean = os.path.normpath(sub)
        if sub.startswith("/") or clean == ".." or clean.startswith("../"):   # Go's IsLocal
            raise _mount_error(typ, "subpath must be a relative path within the volume")
    return _point(Name=src, Destination=dest, Driver=driver_cfg.get("Name") or "local",
                  Mode="z", RW=not ro, CopyData=not vo.get("NoCopy") and not sub,
                  Subpath=os.path.normpath(sub) if sub else "", Anonymous=not src,
                  VolumeOptions={"Labels": vo.get("Labels") or None,
                                 "DriverOpts": driver_cfg.get("Options") or None})


def parse_all(host: dict, config: dict, others: dict[str, dict],
              ro_non_recursive: bool = False) -> list[dict]:
    """Every mount point of a container being created, in dockerd's order and
    precedence: --volumes-from, then -v (which replace those), Config.Volumes
    (skipped where something else is mounted), --mount, --tmpfs. ``others``: the
    records of the --volumes-from containers by reference; ``ro_non_recursive``: read-only
    binds stay non-recursively read-only (dockerd's rule for API < 1.44)."""
    points: dict[str, dict] = {}
    vd = host.get("VolumeDriver") or ""
    if vd not in ("", "local"):
        raise errors.NotFound(f"error looking up volume plugin {vd}: plugin \"{vd}\" not found")
    for ref in host.get("VolumesFrom") or []:
        name, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise errors.InvalidParameter(f"invalid mode for volumes-from: {mode}")
        for mp in others[name].get("MountPoints") or []:
            mp = dict(mp)
            mp["CopyData"] = False
            if mode:
                mp["RW"] = mode == "rw"
            points[mp["Destination"]] = mp
    seen = set()
    for b in host.get("Binds") or []:
        mp = parse_bind(b, ro_non_recursive)
        if mp["Destination"] in seen:
            raise errors.InvalidParameter(f"Duplicate mount point: {mp['Destination']}")
        seen.add(mp["Destination"])
        points[mp["Destination"]] = mp
    for m in host.get("Mounts") or []:
        mp = parse_mount(m, ro_non_recursive)
        if mp["Destination"] in seen:
            raise errors.InvalidParameter(f"Duplicate mount point: {mp['Destination']}")
        seen.add(mp["Destination"])
        points[mp["Destination"]] = mp
    tmpfs = set()
    for dest in host.get("Tmpfs") or {}:
        d = os.path.normpath(dest) if dest.startswith("/") else dest
        if d in seen:
            raise errors.InvalidParameter(f"Duplicate mount point: {d}")
        tmpfs.add(d)
        points.pop(d, None)   # --tmpfs over a --volumes-from mount point replaces it
    for dest in (config.get("Volumes") or {}):
        d = _check_dest(dest, "volume", dest)
        if d in points or d in tmpfs:
            continue
        points[d] = _point(Destination=d, Driver="local", Anonymous=True, CopyData=True)
    return sorted(points.values(), key=lambda p: p["Destination"])


def view(mp: dict) -> dict:
    """The ``Mounts`` entry of inspect (and of ps)."""
    out = {"Type": mp["Type"]}
    if mp["Type"] == "volume":
        out["Name"] = mp["Name"]
    out["Source"] = mp["Source"]
    out["Destination"] = mp["Destination"]
    if mp["Type"] == "volume":
        out["Driver"] = mp["Driver"]
    out.update(Mode=mp["Mode"], RW=mp["RW"], Propagation=mp["Propagation"])
    return out


def oci_mount(mp: dict, source: str) -> dict:
    """The OCI mount of a mount point whose content is at host path ``source``."""
    if mp["Type"] == "tmpfs":
        opts = ["nosuid", "nodev", "noexec"]
        for o in mp.get("Tmpfs") or []:
            if o in ("exec", "suid", "dev"):
                opts = [x for x in opts if x != "no" + o]
            elif o not in opts:
                opts.append(o)
        return {"destination": mp["Destination"], "type": "tmpfs", "source": "tmpfs",
                "options": opts}
    opts = ["rbind" if mp.get("Recursive", True) else "bind"]
    if mp["RW"]:
        opts.append("rw")
    else:
        opts.append("rro" if mp.get("ReadOnlyRecursive") and mp.get("Recursive", True) else "ro")
    opts.append(mp.get("Propagation") or "rprivate")
    return {"destination": mp["Destination"], "type": "bind", "source": source, "options": opts}


def root_propagation(points: list[dict]) -> str:
    """The rootfs propagation a set of bind propagations needs (dockerd's rule: shared
    mounts need an rshared root, slave ones an rslave one)."""
    props = {mp.get("Propagation") for mp in points if mp["Type"] == "bind"}
    if props & {"shared", "rshared"}:
        return "rshared"
    if props & {"slave", "rslave"}:
        return "rslave"
    return ""


def source_propagation(path: str) -> tuple[str, str]:
    """(mount point, "shared" | "slave" | "private"): the host mount holding ``path``."""
    best, kind = "", "private"
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ")[0].split()
            mp = fields[4].encode().decode("unicode_escape")
            if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                opt = fields[6:]
                best = mp
                kind = ("shared" if any(o.startswith("shared:") for o in opt) else
                        "slave" if any(o.startswith("master:") for o in opt) else "private")
    return best, kind
