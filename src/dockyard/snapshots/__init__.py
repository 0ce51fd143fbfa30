"""Snapshotters: overlay (default) and copy (fallback). They return mount records and
never mount; :mod:`dockyard.snapshots.mount` applies them."""

from __future__ import annotations

import os

from dockyard.snapshots.base import Info, Mount, Snapshotter, dir_usage


def new_snapshotter(root: str | os.PathLike, store, kind: str = "auto") -> Snapshotter:
    """``kind``: "overlay", "copy" or "auto" (overlay when a test mount works)."""
    from dockyard.snapshots.copy import CopySnapshotter
    from dockyard.snapshots.overlay import OverlaySnapshotter, overlay_supported

    if kind == "auto":
        kind = "overlay" if overlay_supported(os.path.join(root, "snapshots")) else "copy"
    if kind == "overlay":
        return OverlaySnapshotter(root, store)
    if kind == "copy":
        return CopySnapshotter(root, store)
    raise ValueError(f"unknown snapshotter {kind!r}")


__all__ = ["Info", "Mount", "Snapshotter", "dir_usage", "new_snapshotter"]
