"""Overlay snapshotter: each snapshot is one overlayfs layer.

``<root>/snapshots/overlay/<sid>/fs`` holds the snapshot's own files (the upper
directory while active, a lower directory once committed) and ``work`` is
overlayfs' work directory for active snapshots.
"""

from __future__ import annotations

import os
from pathlib import Path

from dockyard.errors import InvalidParameter
from dockyard.snapshots.base import Info, Mount, Snapshotter, dir_usage, mount


def _index_off() -> list[str]:
    return ["index=off"] if os.path.exists("/sys/module/overlay/parameters/index") else []


class OverlaySnapshotter(Snapshotter):
    name = "overlay"
    whiteout_mode = "overlay"
    independent_layers = True

    def _build(self, tmp: Path, kind: str, parent: Info | None) -> None:
        (tmp / "fs").mkdir(parents=True, mode=0o755)
        if kind == "active":
            (tmp / "work").mkdir(mode=0o700)

    def fs(self, key: str) -> Path:
        return self._dir(self.stat(key).sid) / "fs"

    def mounts(self, key: str) -> list[Mount]:
        info = self.stat(key)
        own = self._dir(info.sid)
        lowers = [str(self._dir(i.sid) / "fs") for i in self.chain(info.parent)] if info.parent else []
        if info.kind == "active":
            if not lowers:
                return [mount("bind", str(own / "fs"), ["rbind", "rw"])]
            return [mount("overlay", "overlay", [
                *_index_off(), f"workdir={own / 'work'}", f"upperdir={own / 'fs'}",
                f"lowerdir={':'.join(lowers)}"])]
        if info.kind == "committed":
            lowers = [str(own / "fs")] + lowers
        if not lowers:
            return [mount("bind", str(own / "fs"), ["rbind", "ro"])]
        if len(lowers) == 1:
            return [mount("bind", lowers[0], ["rbind", "ro"])]
        return [mount("overlay", "overlay", ["ro", *_index_off(), f"lowerdir={':'.join(lowers)}"])]

    def writable_dir(self, key: str) -> Path:
        info = self.stat(key)
        if info.kind != "active":
            raise InvalidParameter(f"snapshot {key} is not active")
        return self._dir(info.sid) / "fs"

    def layer_dir(self, key: str) -> Path:
        return self.fs(key)

    def lower_dirs(self, key: str) -> list[Path]:
        """fs directories of the parents of ``key``, nearest first."""
        info = self.stat(key)
        return [self._dir(i.sid) / "fs" for i in self.chain(info.parent)] if info.parent else []

    def chain_dirs(self, key: str) -> list[Path]:
        """fs directories of ``key`` and its parents, nearest first."""
        return [self._dir(i.sid) / "fs" for i in self.chain(key)]

    def usage(self, key: str) -> dict:
        return dir_usage(self.fs(key))


def overlay_supported(root: str | os.PathLike) -> bool:
    """Try a real overlay mount in ``root`` (filesystems like overlay-on-overlay fail)."""
    import shutil
    import tempfile

    from dockyard.snapshots import mount as m

    try:
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                return False
    except OSError:
        return False
    from dockyard import statefiles

    statefiles.makedirs(root)
    d = Path(tempfile.mkdtemp(prefix="overlay-check-", dir=root))
    try:
        for n in ("l1", "l2", "up", "work", "merged"):
            (d / n).mkdir()
        try:
            m.mount_all([mount("overlay", "overlay", [
                f"lowerdir={d / 'l1'}:{d / 'l2'}", f"upperdir={d / 'up'}",
                f"workdir={d / 'work'}"])], d / "merged")
        except OSError:
            return False
        m.unmount(d / "merged")
        return True
    finally:
        shutil.rmtree(d, ignore_errors=True)
