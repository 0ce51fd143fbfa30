"""The snapshotter interface and the index every snapshotter shares.

A snapshotter never mounts. ``prepare``/``view`` return mount records (plain
dicts ``{"type", "source", "target", "options"}``; ``target`` is left empty
for the caller) and :mod:`dockyard.snapshots.mount` applies them.

Kinds: *active* (writable, made by ``prepare``), *view* (read-only, made by
``view``) and *committed* (made by ``commit`` from an active one; named by the
caller, for layers the chain ID). Only committed snapshots can be parents.

Directories live at ``<root>/snapshots/<name>/<sid>/`` where ``sid`` is the
index row's id. They are built in ``<root>/snapshots/<name>/tmp-*`` and renamed
into place inside the transaction that inserts the row, so a crash leaves either
nothing or an unknown directory, which :meth:`Snapshotter.cleanup` removes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dockyard import statefiles
from dockyard.errors import Conflict, InvalidParameter, NotFound
from dockyard.metadata.store import Store

Mount = dict  # {"type": str, "source": str, "target": str, "options": list[str]}

_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def mark_topdir(path: str | os.PathLike) -> bool:
    """Mark ``path`` as the top of directory hierarchies (``chattr +T``), where the
    filesystem knows the hint (ext2/3/4): each snapshot made in it is then placed in a
    block group of its own choosing (Orlov), not in the group of the snapshots before
    it. Their files are created there: on ext4, creating a file in a group full of
    recently deleted inodes (the snapshots removed a moment ago) scans past every one of
    them, which made creating a layer's files ten times slower. Best effort: False where
    the flag is not known (other filesystems, no permission)."""
    import fcntl
    import struct
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = struct.unpack("I", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8))[:4])[0]
        if not flags & _FS_TOPDIR_FL:
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("I", flags | _FS_TOPDIR_FL) + bytes(4))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Info:
    key: str
    kind: str            # "active" | "view" | "committed"
    parent: str | None
    sid: int
    created: float
    labels: dict = field(default_factory=dict)


def mount(type_: str, source: str, options: list[str]) -> Mount:
    return {"type": type_, "source": source, "target": "", "options": list(options)}


def dir_usage(path: str | os.PathLike) -> dict:
    """Docker's directory size: sizes of non-directories, each inode counted once. The
    tree may be a running container's: it is walked by fds (fsroot), never entering a
    symlink, whatever the container renames meanwhile."""
    import stat

    from dockyard.fsroot.nodes import open_root, walk

    size = 0
    inodes = 1
    seen: set[tuple[int, int]] = set()
    fd = open_root(path)
    try:
        for _, node in walk(fd):
            st = node.st
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            inodes += 1
            if not stat.S_ISDIR(st.st_mode):
                size += st.st_size
    finally:
        os.close(fd)
    return {"size": size, "inodes": inodes}


class Snapshotter:
    """Base class: the index (a table in the metadata store) and directory bookkeeping."""

    name = "base"
    #: how layer whiteouts are applied into ``writable_dir``: "overlay" or "delete"
    whiteout_mode = "delete"
    #: whether a snapshot's directory holds only its own changes, independent of its
    #: parent's (then layers can be unpacked side by side and chained when committed)
    independent_layers = False

    def __init__(self, root: str | os.PathLike, store: Store):
        self.root = Path(root) / "snapshots" / self.name
        statefiles.makedirs(self.root)   # each snapshot's directory 0700 too: layers hold setuid files
        mark_topdir(self.root)
        self.store = store

    # -- index -----------------------------------------------------------------------
    def _row(self, key: str):
        return self.store.query_one(
            "SELECT * FROM snapshots WHERE snapshotter = ? AND key = ?", (self.name, key))

    @staticmethod
    def _info(row) -> Info:
        return Info(row["key"], row["kind"], row["parent"], row["sid"], row["created"],
                    json.loads(row["labels"] or "{}"))

    def stat(self, key: str) -> Info:
        row = self._row(key)
        if row is None:
            raise NotFound(f"snapshot {key} does not exist")
        return self._info(row)

    def exists(self, key: str) -> bool:
        return self._row(key) is not None

    def list(self) -> list[Info]:
        return [self._info(r) for r in self.store.query(
            "SELECT * FROM snapshots WHERE snapshotter = ? ORDER BY sid", (self.name,))]

    def children(self, key: str) -> list[str]:
        return [r["key"] for r in self.store.query(
            "SELECT key FROM snapshots WHERE snapshotter = ? AND parent = ?", (self.name, key))]

    def _dir(self, sid: int) -> Path:
        return self.root / str(sid)

    def chain(self, key: str) -> list[Info]:
        """The snapshot and its ancestors, nearest first."""
        out = []
        info = self.stat(key)
        while True:
            out.append(info)
            if not info.parent:
                return out
            info = self.stat(info.parent)

    # -- lifecycle -------------------------------------------------------------------
    def _create(self, kind: str, key: str, parent: str | None, labels: dict | None) -> Info:
        if not key:
            raise InvalidParameter("snapshot key must not be empty")
        tmp = self.root / f"tmp-{uuid.uuid4().hex}"
        tmp.mkdir(statefiles.DIR_MODE)

        def check(db=None):
            if self._row(key) is not None:
                raise Conflict(f"snapshot {key} already exists")
            if not parent:
                return None
            prow = self._row(parent)
            if prow is None:
                raise NotFound(f"parent snapshot {parent} does not exist")
            if prow["kind"] != "committed":
                raise InvalidParameter(f"parent snapshot {parent} is not committed")
            return self._info(prow)

        placed = None
        try:
            # build outside the transaction (a copy can take a while), then publish
            self._build(tmp, kind, check())
            with self.store.tx() as db:
                check()
                cur = db.execute(
                    "INSERT INTO snapshots (snapshotter, key, kind, parent, labels, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (self.name, key, kind, parent, json.dumps(labels or {}), time.time()))
                sid = cur.lastrowid
                d = self._dir(sid)
                if d.exists():
                    # no row owns it (we just took the id): the leftover of an id whose
                    # transaction was rolled back after its directory was placed
                    shutil.rmtree(d)
                os.rename(tmp, d)
                placed = d
            placed = None   # committed
        finally:
            if placed is not None:   # the transaction failed (a full disk): undone
                shutil.rmtree(placed, ignore_errors=True)
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self.stat(key)

    def prepare(self, key: str, parent: str | None = None, labels: dict | None = None) -> list[Mount]:
        """Create an active (writable) snapshot on ``parent``; return its mounts."""
        self._create("active", key, parent, labels)
        return self.mounts(key)

    def view(self, key: str, parent: str | None = None, labels: dict | None = None) -> list[Mount]:
        """Create a read-only view of ``parent``; return its mounts."""
        self._create("view", key, parent, labels)
        return self.mounts(key)

    def commit(self, name: str, key: str, labels: dict | None = None,
               parent: str | None = None) -> Info:
        """Turn active snapshot ``key`` into committed snapshot ``name``.

        ``parent``: with a snapshotter whose layers are independent
        (:attr:`independent_layers`), an active snapshot prepared without a parent can
        be committed onto committed snapshot ``parent`` (a layer unpacked before its
        parent was there)."""
        with self.store.tx() as db:
            row = self._row(key)
            if row is None:
                raise NotFound(f"snapshot {key} does not exist")
            if row["kind"] != "active":
                raise InvalidParameter(f"snapshot {key} is not active")
            if self._row(name) is not None:
                raise Conflict(f"snapshot {name} already exists")
            new_parent = row["parent"]
            if parent is not None and parent != row["parent"]:
                prow = self._row(parent)
                if prow is None:
                    raise NotFound(f"parent snapshot {parent} does not exist")
                if prow["kind"] != "committed":
                    raise InvalidParameter(f"parent snapshot {parent} is not committed")
                if row["parent"] is not None:
                    raise InvalidParameter(f"snapshot {key} already has parent {row['parent']}")
                if not self.independent_layers:
                    raise InvalidParameter(f"the {self.name} snapshotter cannot give snapshot "
                                           f"{key} a parent after it was prepared")
                new_parent = parent
            merged = json.loads(row["labels"] or "{}")
            merged.update(labels or {})
            self._on_commit(self._dir(row["sid"]))
            db.execute("UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, "
                       "parent = ? WHERE sid = ?",
                       (name, json.dumps(merged), new_parent, row["sid"]))
        return self.stat(name)

    def remove(self, key: str) -> None:
        """Remove a snapshot (Conflict while it has children). On a full disk, where the
        index cannot be written, its content is freed first and the row removed after."""
        import sqlite3

        try:
            self._remove(key)
        except sqlite3.OperationalError as e:
            if "full" not in str(e):
                raise
            row = self._row(key)
            if row is None or self.children(key):
                raise
            d = self._dir(row["sid"])
            if d.is_dir() and not _is_mountpoint_under(d):
                for entry in os.listdir(d):
                    p = d / entry
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
            self._remove(key)

    def _remove(self, key: str) -> None:
        moved = None
        try:
            with self.store.tx() as db:
                row = self._row(key)
                if row is None:
                    raise NotFound(f"snapshot {key} does not exist")
                if self.children(key):
                    raise Conflict(f"cannot remove snapshot {key}: it has children")
                db.execute("DELETE FROM snapshots WHERE sid = ?", (row["sid"],))
                d = self._dir(row["sid"])
                trash = self.root / f"tmp-rm-{row['sid']}-{uuid.uuid4().hex[:8]}"
                if d.exists():
                    os.rename(d, trash)
                    moved = (trash, d)
        except BaseException:
            if moved is not None:   # the row stays: so does its directory
                os.rename(*moved)
            raise
        shutil.rmtree(trash, ignore_errors=True)

    def cleanup(self) -> list[str]:
        """Remove directories the index does not know (crash leftovers)."""
        known = {str(r["sid"]) for r in self.store.query(
            "SELECT sid FROM snapshots WHERE snapshotter = ?", (self.name,))}
        removed = []
        with self.store.locked():
            for name in os.listdir(self.root):
                if name not in known:
                    p = self.root / name
                    if _is_mountpoint_under(p):
                        continue
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(name)
        return removed

    # -- to implement ----------------------------------------------------------------
    def _build(self, tmp: Path, kind: str, parent: Info | None) -> None:
        raise NotImplementedError

    def _on_commit(self, d: Path) -> None:
        pass

    def mounts(self, key: str) -> list[Mount]:
        raise NotImplementedError

    def writable_dir(self, key: str) -> Path:
        """The directory a layer is applied into for active snapshot ``key``."""
        raise NotImplementedError

    def layer_dir(self, key: str) -> Path:
        """The directory holding what ``key`` adds over its parent (overlay) or all of it (copy)."""
        raise NotImplementedError

    def usage(self, key: str) -> dict:
        """{"size": bytes, "inodes": n} of what the snapshot itself holds."""
        raise NotImplementedError


def _is_mountpoint_under(p: Path) -> bool:
    s = str(p)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mnt = line.split()[4]
                if mnt == s or mnt.startswith(s + "/"):
                    return True
    except OSError:
        pass
    return False
