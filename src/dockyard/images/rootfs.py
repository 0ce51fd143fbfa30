"""Container root filesystems: snapshots on an image's layers (with the init layer of
mount points), their usage, changes and layer tars."""

from __future__ import annotations

from typing import BinaryIO


class Rootfs:
    """Part of ImageService (images/service.py): see the module's docstring."""

    # -- container root filesystems --------------------------------------------------
    def prepare_rootfs(self, image_id: str, key: str, init: bool = False) -> list[dict]:
        """A writable snapshot for a container on the image's layers; its mounts.

        With ``init``, an init layer (``<key>-init``, as Docker's ``-init`` layer)
        sits between the image and the container's own layer: it holds the mount
        points every container gets (/etc/hosts, /dev, ...), so they show in
        neither ``diff`` nor ``commit``.
        """
        iid = self.resolve(image_id)
        row = self._row(iid)
        with self._lock:
            parent = row["top_chain"]
            if init:
                ikey = f"{key}-init"
                if not self.snapshotter.exists(ikey):
                    active = f"{ikey}-active"
                    if self.snapshotter.exists(active):
                        self.snapshotter.remove(active)
                    self.snapshotter.prepare(active, parent, labels={"dockyard.image": iid})
                    _make_init_layer(self.snapshotter.writable_dir(active),
                                     self.snapshotter.lower_dirs(active)
                                     if hasattr(self.snapshotter, "lower_dirs") else [])
                    self.snapshotter.commit(ikey, active)
                parent = ikey
            return self.snapshotter.prepare(key, parent, labels={"dockyard.image": iid})

    def rootfs_mounts(self, key: str) -> list[dict]:
        return self.snapshotter.mounts(key)

    def rootfs_usage(self, key: str) -> int:
        """Bytes a container's snapshot holds of its own (SizeRw)."""
        if self.snapshotter.whiteout_mode == "overlay":
            return int(self.snapshotter.usage(key)["size"])
        # a full copy: count only what changed against the image
        from dockyard.images import diff
        return diff.naive_size(self.snapshotter.layer_dir(key),
                               (self.snapshotter.lower_dirs(key) or [None])[0])

    def remove_rootfs(self, key: str) -> None:
        with self._lock:
            for k in (key, f"{key}-init"):
                if self.snapshotter.exists(k):
                    self.snapshotter.remove(k)

    def changes(self, key: str) -> list[dict]:
        """``docker diff`` of a container's snapshot: [{"Path", "Kind"}] (names that are
        not UTF-8 shown with U+FFFD, as dockerd)."""
        from dockyard.images import diff
        return diff.display(self._raw_changes(key))

    def _raw_changes(self, key: str) -> list[dict]:
        """The changes of snapshot ``key``, paths with their exact bytes (surrogate
        escapes)."""
        from dockyard.images import diff
        self.snapshotter.stat(key)   # NotFound for an unknown snapshot
        if self.snapshotter.whiteout_mode == "overlay":
            return diff.changes(self.snapshotter.layer_dir(key), self.snapshotter.lower_dirs(key))
        lower = self.snapshotter.lower_dirs(key)
        return diff.naive_changes(self.snapshotter.layer_dir(key), lower[0] if lower else None)

    def layer_tar(self, key: str, out: BinaryIO, clamp_mtime: int | None = None
                  ) -> tuple[str, int]:
        """Write the changes of snapshot ``key`` as a layer tar; return (diffID, size).
        ``clamp_mtime``: no time later than it in the tar (SOURCE_DATE_EPOCH)."""
        from dockyard.images import diff
        if self.snapshotter.whiteout_mode == "overlay":
            return diff.write_layer(self.snapshotter.layer_dir(key), out,
                                    clamp_mtime=clamp_mtime)
        return diff.write_changes(self.snapshotter.layer_dir(key), self._raw_changes(key), out,
                                  clamp_mtime=clamp_mtime)


# Mount points the runtime needs in every container, made in the init layer.
_INIT_DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc")


_INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerenv")


def _make_init_layer(upper, lowers) -> None:
    """Create the standard mount points in ``upper`` where no lower layer has a non-directory."""
    import os as _os

    def blocked(rel: str) -> bool:
        # a lower layer with a symlink or file at this path (or a parent): leave it be
        parts = rel.split("/")
        for low in lowers:
            for i in range(1, len(parts) + 1):
                p = _os.path.join(str(low), *parts[:i])
                if _os.path.islink(p) or (_os.path.exists(p) and i < len(parts)
                                          and not _os.path.isdir(p)):
                    return True
        return False

    for d in _INIT_DIRS:
        if not blocked(d):
            _os.makedirs(_os.path.join(str(upper), d), mode=0o755, exist_ok=True)
    for f in _INIT_FILES:
        if not blocked(f):
            path = _os.path.join(str(upper), f)
            _os.makedirs(_os.path.dirname(path), exist_ok=True)
            if not _os.path.exists(path):
                with open(path, "w"):
                    pass
                _os.chmod(path, 0o755 if f == ".dockerenv" else 0o644)
