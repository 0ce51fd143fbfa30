"""Changes of a snapshot and layer tars made from them (``docker diff``/``commit``).

* ``changes(upper, lowers)``: from an overlay upper directory; 0:0 character
  devices are deletions, ``trusted.overlay.opaque=y`` directories hide what the
  lowers hold below them.
* ``naive_changes(new, old)``: by comparing two full trees (copy snapshotter).
* ``write_layer(upper, out)``: a layer tar from an upper directory, whiteouts
  written as ``.wh.NAME`` and opaque directories as ``.wh..wh..opq``; returns the
  diffID (sha256 of the tar).

Kinds are Docker's: 0 modified, 1 added, 2 deleted. Paths start with ``/``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

MODIFY, ADD, DELETE = 0, 1, 2
OPAQUE_XATTR = "trusted.overlay.opaque"


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lexists_in(lowers: list[Path], rel: str) -> bool:
    """Whether ``rel`` is visible in the merged lowers (nearest first)."""
    parts = rel.strip("/").split("/")
    for lower in lowers:
        # a whiteout or opaque dir in a nearer lower hides farther ones
        p = str(lower)
        hidden = False
        for i, comp in enumerate(parts):
            p = os.path.join(p, comp)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                break
            if _is_whiteout(st):
                hidden = True
                break
            if i == len(parts) - 1:
                return True
            if not stat.S_ISDIR(st.st_mode):
                break
            if _is_opaque(p):
                # children below are only what this lower holds
                rest = os.path.join(p, *parts[i + 1:])
                return os.path.lexists(rest) and not _is_whiteout(os.lstat(rest))
        if hidden:
            return False
    return False


def changes(upper: str | os.PathLike, lowers: list) -> list[dict]:
    lowers = [Path(x) for x in lowers]
    out: list[dict] = []

    def walk(dirpath: str, rel: str) -> None:
        for name in sorted(os.listdir(dirpath)):
            p = os.path.join(dirpath, name)
            r = f"{rel}/{name}"
            st = os.lstat(p)
            if _is_whiteout(st):
                if _lexists_in(lowers, r):
                    out.append({"Path": r, "Kind": DELETE})
                continue
            existed = _lexists_in(lowers, r)
            out.append({"Path": r, "Kind": MODIFY if existed else ADD})
            if stat.S_ISDIR(st.st_mode):
                if existed and _is_opaque(p):
                    mine = set(os.listdir(p))
                    for lower in lowers:
                        lp = os.path.join(lower, r.lstrip("/"))
                        if os.path.isdir(lp) and not os.path.islink(lp):
                            for child in os.listdir(lp):
                                if child not in mine:
                                    out.append({"Path": f"{r}/{child}", "Kind": DELETE})
                                    mine.add(child)
                walk(p, r)

    walk(str(upper), "")
    out.sort(key=lambda c: c["Path"])
    return out


def _same_time(a: os.stat_result, b: os.stat_result) -> bool:
    """Docker's sameFsTime: equal seconds, and equal nanoseconds unless one is 0."""
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    return sa == sb and (na == nb or na == 0 or nb == 0)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode == b.st_mode and a.st_uid == b.st_uid and a.st_gid == b.st_gid
            and a.st_rdev == b.st_rdev and _same_time(a, b)
            and (stat.S_ISDIR(a.st_mode) or a.st_size == b.st_size))


def naive_changes(new: str | os.PathLike, old: str | os.PathLike | None) -> list[dict]:
    out: list[dict] = []

    def walk(rel: str) -> None:
        npath = os.path.join(new, rel.lstrip("/"))
        opath = os.path.join(old, rel.lstrip("/")) if old else None
        names = set(os.listdir(npath))
        onames = set(os.listdir(opath)) if opath and os.path.isdir(opath) \
            and not os.path.islink(opath) else set()
        for name in sorted(names | onames):
            r = f"{rel}/{name}"
            if name not in names:
                out.append({"Path": r, "Kind": DELETE})
                continue
            st = os.lstat(os.path.join(npath, name))
            if name not in onames:
                out.append({"Path": r, "Kind": ADD})
            else:
                ost = os.lstat(os.path.join(opath, name))
                if stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(ost.st_mode):
                    if not _same(st, ost):
                        out.append({"Path": r, "Kind": MODIFY})
                elif not _same(st, ost) or (stat.S_ISLNK(st.st_mode) and os.readlink(
                        os.path.join(npath, name)) != os.readlink(os.path.join(opath, name))):
                    out.append({"Path": r, "Kind": MODIFY})
            if stat.S_ISDIR(st.st_mode):
                walk(r)

    walk("")
    out.sort(key=lambda c: c["Path"])
    return out


class _HashingWriter:
    def __init__(self, out: BinaryIO):
        self.out = out
        self.hash = hashlib.sha256()
        self.count = 0

    def write(self, b: bytes) -> int:
        self.hash.update(b)
        self.count += len(b)
        self.out.write(b)
        return len(b)


def _tarinfo(name: str, st: os.stat_result, path: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = st.st_mtime
    try:
        for x in os.listxattr(path, follow_symlinks=False):
            if x.startswith("trusted.overlay."):
                continue
            v = os.getxattr(path, x, follow_symlinks=False)
            ti.pax_headers["SCHILY.xattr." + x] = v.decode("utf-8", "surrogateescape")
    except OSError:
        pass
    return ti


def write_layer(upper: str | os.PathLike, out: BinaryIO, whiteouts: bool = True) -> tuple[str, int]:
    """Write a layer tar of ``upper`` to ``out``; return (diffID, tar size)."""
    hw = _HashingWriter(out)
    tf = tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT)
    links: dict[tuple[int, int], str] = {}

    def walk(dirpath: str, rel: str) -> None:
        for name in sorted(os.listdir(dirpath)):
            p = os.path.join(dirpath, name)
            r = f"{rel}{name}"
            st = os.lstat(p)
            if _is_whiteout(st) and whiteouts:
                ti = tarfile.TarInfo(f"{rel}.wh.{name}")
                ti.mode = 0o644
                ti.mtime = st.st_mtime
                tf.addfile(ti)
                continue
            ti = _tarinfo(r, st, p)
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                ti.name = r + "/"
                tf.addfile(ti)
                if whiteouts and _is_opaque(p):
                    o = tarfile.TarInfo(f"{r}/.wh..wh..opq")
                    o.mode = 0o644
                    o.mtime = st.st_mtime
                    tf.addfile(o)
                walk(p, r + "/")
                continue
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in links:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = links[key]
                    tf.addfile(ti)
                    continue
                links[key] = r
            if stat.S_ISREG(st.st_mode):
                ti.size = st.st_size
                with open(p, "rb") as f:
                    tf.addfile(ti, f)
            elif stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(p)
                tf.addfile(ti)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tf.addfile(ti)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
                tf.addfile(ti)
            # sockets are skipped, as Docker does

    walk(str(upper), "")
    tf.close()
    return "sha256:" + hw.hash.hexdigest(), hw.count


def write_changes(root: str | os.PathLike, change_list: list[dict], out: BinaryIO) -> tuple[str, int]:
    """A layer tar holding the paths of ``change_list`` taken from the full tree ``root``
    (deletions as ``.wh.`` entries); for snapshotters without an upper directory."""
    hw = _HashingWriter(out)
    tf = tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT)
    links: dict[tuple[int, int], str] = {}
    for c in sorted(change_list, key=lambda c: c["Path"]):
        rel = c["Path"].lstrip("/")
        if c["Kind"] == DELETE:
            d, _, base = rel.rpartition("/")
            ti = tarfile.TarInfo(f"{d + '/' if d else ''}.wh.{base}")
            ti.mode = 0o644
            tf.addfile(ti)
            continue
        p = os.path.join(root, rel)
        st = os.lstat(p)
        ti = _tarinfo(rel, st, p)
        if stat.S_ISDIR(st.st_mode):
            ti.type = tarfile.DIRTYPE
            ti.name = rel + "/"
            tf.addfile(ti)
        elif st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
            ti.type = tarfile.LNKTYPE
            ti.linkname = links[(st.st_dev, st.st_ino)]
            tf.addfile(ti)
        elif stat.S_ISREG(st.st_mode):
            if st.st_nlink > 1:
                links[(st.st_dev, st.st_ino)] = rel
            ti.size = st.st_size
            with open(p, "rb") as f:
                tf.addfile(ti, f)
        elif stat.S_ISLNK(st.st_mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(p)
            tf.addfile(ti)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            tf.addfile(ti)
        elif stat.S_ISFIFO(st.st_mode):
            ti.type = tarfile.FIFOTYPE
            tf.addfile(ti)
    tf.close()
    return "sha256:" + hw.hash.hexdigest(), hw.count
