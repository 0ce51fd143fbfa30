"""Copy snapshotter: the fallback where overlayfs is not available.

Each active snapshot is a full copy of its parent (``cp -a``, reflinks where the
filesystem has them) and is bind-mounted; layers delete what their whiteouts
name instead of recording overlay whiteouts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from dockyard.errors import InvalidParameter, SystemError_
from dockyard.snapshots.base import Info, Mount, Snapshotter, dir_usage, mount


class CopySnapshotter(Snapshotter):
    name = "copy"
    whiteout_mode = "delete"

    def _build(self, tmp: Path, kind: str, parent: Info | None) -> None:
        (tmp / "fs").mkdir(parents=True, mode=0o755)
        if kind == "active" and parent is not None:
            src = self._dir(parent.sid) / "fs"
            r = subprocess.run(["cp", "-a", "--reflink=auto", f"{src}/.", str(tmp / "fs")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemError_(f"copying snapshot {parent.key} failed: {r.stderr.strip()}")

    def fs(self, key: str) -> Path:
        return self._dir(self.stat(key).sid) / "fs"

    def mounts(self, key: str) -> list[Mount]:
        info = self.stat(key)
        own = self._dir(info.sid) / "fs"
        if info.kind == "active":
            return [mount("bind", str(own), ["rbind", "rw"])]
        if info.kind == "view" and info.parent:
            return [mount("bind", str(self.fs(info.parent)), ["rbind", "ro"])]
        return [mount("bind", str(own), ["rbind", "ro"])]

    def writable_dir(self, key: str) -> Path:
        info = self.stat(key)
        if info.kind != "active":
            raise InvalidParameter(f"snapshot {key} is not active")
        return self._dir(info.sid) / "fs"

    def layer_dir(self, key: str) -> Path:
        return self.fs(key)

    def lower_dirs(self, key: str) -> list[Path]:
        info = self.stat(key)
        return [self.fs(info.parent)] if info.parent else []

    def usage(self, key: str) -> dict:
        return dir_usage(self.fs(key))
