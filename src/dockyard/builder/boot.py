"""What a build that the daemon's death interrupted leaves, cleared at the next start.

* :func:`sweep_tmp` (a boot hook, before the image service's recovery): snapshots a step
  had mounted under ``<data-root>/builder/tmp`` are unmounted, then the directory (context
  spools, mount points) is removed, and so are the context sessions' kept spools; the
  snapshots themselves carry the image service's
  extract prefix and are removed by its recovery.
* :func:`remove_containers` (after the containers are restored): RUN step containers
  (labelled :data:`LABEL`) are removed, except a failed step's, which dockerd keeps too.
"""

from __future__ import annotations

import logging
import os
import shutil

LABEL = "com.dockyard.build.step"

log = logging.getLogger(__name__)


def tmp_dir(data_root) -> str:
    return os.path.join(os.fspath(data_root), "builder", "tmp")


def sweep_tmp(data_root) -> None:
    from dockyard.snapshots.mount import mounts_under, unmount
    # context sessions' kept spools do not outlive the daemon (builder/sessions.py)
    shutil.rmtree(os.path.join(os.fspath(data_root), "builder", "sessions"),
                  ignore_errors=True)
    tmp = tmp_dir(data_root)
    if not os.path.isdir(tmp):
        return
    for m in reversed(mounts_under(tmp)):
        try:
            unmount(m, 2)    # MNT_DETACH
        except OSError as e:
            log.warning("builder: cannot unmount %s: %s", m, e)
    if mounts_under(tmp):
        log.warning("builder: mounts left under %s: not removing it", tmp)
        return
    shutil.rmtree(tmp, ignore_errors=True)


async def remove_containers(containers) -> None:
    for c in containers.list(all=True):
        labels = c.get("Labels") or {}
        if LABEL not in labels:
            continue
        if c.get("State") == "exited" and " (0)" not in (c.get("Status") or " (0)"):
            continue    # a failed step's container: kept, as dockerd does
        try:
            await containers.remove(c["Id"], force=True, volumes=True)
        except Exception as e:  # noqa: BLE001 - reported; the rest still go
            log.warning("builder: cannot remove step container %s: %s", c["Id"][:12], e)
