"""The ``local`` driver's options, as Docker's: ``type``, ``device``, ``o`` (and ``size``
only where the backing store has quotas, which ours has not: refused).

A volume with options is mounted at its ``_data`` when its first container mounts it
and unmounted when its last one stops (tmpfs content goes with it, as with dockerd);
one without is a plain directory.
"""

from __future__ import annotations

import os

from dockyard import errors

VALID_OPTS = ("type", "device", "o")


def validate_opts(opts: dict | None, name: str = "") -> dict:
    """The options as dockerd's local driver checks them at create (its words)."""
    def bad(msg: str) -> errors.InvalidParameter:
        return errors.InvalidParameter(f"create {name}: {msg}")

    opts = dict(opts or {})
    for k, v in opts.items():
        if k not in VALID_OPTS:
            if k == "size":
                raise bad("quota size requested but no quota support")
            raise bad(f'invalid option: "{k}"')
        if not isinstance(v, str):
            raise bad(f"invalid option {k}: expected a string")
    typ, dev, o = opts.get("type", ""), opts.get("device", ""), opts.get("o", "")
    if (typ or o) and not dev:
        raise bad('missing required option: "device"')
    if dev and not typ:
        raise bad('missing required option: "type"')
    if "bind" in o.split(",") and not os.path.isabs(dev):
        raise bad(f"invalid bind device: {dev}: must be an absolute path")
    return opts


def needs_mount(opts: dict) -> bool:
    return bool(opts.get("type") or opts.get("device"))


def mount(opts: dict, target: str) -> None:
    """Apply the options at ``target`` (the volume's ``_data``)."""
    from dockyard.snapshots import mount as snapmount

    typ, dev = opts.get("type", ""), opts.get("device", "")
    o = [x for x in (opts.get("o") or "").split(",") if x]
    try:
        if "bind" in o or "rbind" in o:
            if not os.path.isdir(dev) and not os.path.exists(dev):
                raise errors.DockyardError(f"error while mounting volume '{target}': failed to "
                                           f"mount local volume: mount {dev}:{target}, flags: "
                                           f"0x1000: no such file or directory")
            snapmount.mount_one({"type": "bind", "source": os.path.realpath(dev),
                                 "options": o}, target)
            return
        rest = []
        flags_opts = []
        for x in o:
            if x.startswith(("uid=", "gid=", "mode=", "size=", "nr_inodes=", "addr=")) or "=" in x:
                rest.append(x)
            else:
                flags_opts.append(x)
        snapmount.mount_one({"type": typ, "source": dev, "options": flags_opts + rest}, target)
    except OSError as e:
        raise errors.DockyardError(
            f"error while mounting volume '{target}': failed to mount local volume: "
            f"{e.strerror or e}") from None


def unmount(target: str) -> None:
    from dockyard.snapshots import mount as snapmount

    try:
        snapmount.unmount(target)
    except OSError:
        try:
            snapmount.unmount(target, snapmount.MNT_DETACH)
        except OSError:
            pass
