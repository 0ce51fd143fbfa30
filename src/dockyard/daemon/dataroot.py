"""The daemon's data root on disk: who may reach what, and the start-up pass that
brings a data root made by an older version to these modes.

Nothing under the data root is for other local users: it holds image content
(setuid-root binaries among it), containers' configurations with their
environment, their logs and the runtime's state. So every directory is 0700 and
every file 0600, owned by root, unless noted::

    <data-root>/                      0700 (Docker's 0710 root:root serves its
                                      userns-remap; we have no remapping: only root
                                      ever walks these paths)
      bin/dockyard-runc               0700, the runtime launcher (run by root only)
      metadata.db, -wal, -shm         0600 (SQLite gives -wal/-shm the db's mode)
      content/                        blobs 0400, ingests 0600
      snapshots/<snapshotter>/<sid>/  0700; its fs/ is layer content and keeps the
                                      modes the layer gives it
      containers/<id>/                0700: bundle/config.json 0600, <id>-json.log* 0600,
                                      rootfs/ (mount point: the image's / when mounted);
                                      hostname, hosts, resolv.conf 0644: bind-mounted into
                                      the container, whose non-root users read them; the
                                      0700 directory keeps everyone else out (Docker's way)
      volumes/<name>/                 0700: volume.json 0600; _data/ is the volume's
                                      content and keeps the modes the mount point gave it
      cpviews/                        0700: docker cp's views of containers (mounts, for
                                      the duration of a copy)
      mounts/<id>/<n>                 0700: volume subpaths staged (mounted) between a
                                      start's spec and the runtime's create
      supervisor/                     supervisor.sock 0600, supervisor.log, tasks/<id>/*
      runtime/                        the runtime's --root: <id>/state.json 0600 and,
                                      until start, exec.fifo 0622 (as runc's)
      distribution/, tmp/             0700 / 0600
      network.json, engine-id, dockyard.lock, dockyard.pid (private data roots)   0600

An API socket placed in the data root keeps its own mode (0660 + group) but is
unreachable for the group: put it elsewhere.

The writers set these modes explicitly (:mod:`dockyard.statefiles`): no umask,
since the same processes create files inside containers' root filesystems that
must keep exactly the modes the image or the user asked for.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dockyard import statefiles

#: directories whose entries are per-object top directories (each one 0700); the
#: objects' content (a snapshot's fs/, a container's rootfs/) is never touched
_PER_OBJECT = ("containers", "snapshots/*", "supervisor/tasks", "runtime", "volumes")


def prepare(root: str | os.PathLike) -> list[str]:
    """Make the data root (its parents with the default mode) or bring an existing one
    to the modes above: the root, its top-level entries, the launcher and every
    snapshot's, container's, task's and runtime state's top directory (and files
    beside those). Symlinks, sockets and everything inside those directories are left
    alone (a snapshot's content must keep its modes). Returns the paths whose mode
    changed (relative to the root)."""
    root = Path(root).absolute()
    os.makedirs(root.parent, exist_ok=True)
    try:
        os.mkdir(root, statefiles.DIR_MODE)
    except FileExistsError:
        pass
    changed = []

    def fix(p, dir_mode=statefiles.DIR_MODE, file_mode=statefiles.FILE_MODE,
            st: os.stat_result | None = None) -> None:
        if st is not None:      # from the listing: most entries are right already
            want = (dir_mode if stat.S_ISDIR(st.st_mode) else
                    file_mode if stat.S_ISREG(st.st_mode) else None)
            if want is None or stat.S_IMODE(st.st_mode) == want:
                return
        if statefiles.restrict(p, dir_mode=dir_mode, file_mode=file_mode):
            changed.append(os.path.relpath(p, root))

    fix(root, file_mode=None)
    for e in _scan(root):
        fix(e.path, st=e.stat(follow_symlinks=False))
    fix(root / "bin" / "dockyard-runc", dir_mode=None, file_mode=0o700)
    for pattern in _PER_OBJECT:
        for parent in (root.glob(pattern) if "*" in pattern else [root / pattern]):
            if parent.is_symlink():
                continue
            fix(parent, file_mode=None)
            for e in _scan(parent):
                fix(e.path, st=e.stat(follow_symlinks=False))
    return changed


def _scan(d: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []
