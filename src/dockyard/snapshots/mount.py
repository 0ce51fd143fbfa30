"""Apply and remove mount records (the only place snapshots get mounted).

Mount records are ``{"type", "source", "target", "options"}`` dicts as returned by
snapshotters. ``mount_all(mounts, target)`` mounts them in order onto ``target``
(a record's own non-empty ``target`` is taken relative to it); ``unmount_all``
detaches everything at and below a path. Errors are ``OSError`` with the errno
and a message naming the mount.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

_FLAGS = {
    "ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True), "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True), "exec": (MS_NOEXEC, False),
    "sync": (MS_SYNCHRONOUS, True), "async": (MS_SYNCHRONOUS, False),
    "noatime": (MS_NOATIME, True), "atime": (MS_NOATIME, False),
    "nodiratime": (MS_NODIRATIME, True), "diratime": (MS_NODIRATIME, False),
    "relatime": (MS_RELATIME, True), "strictatime": (MS_STRICTATIME, True),
    "bind": (MS_BIND, True), "rbind": (MS_BIND | MS_REC, True),
    "defaults": (0, True),
}

_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return _libc


def _sys_mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    r = _lib().mount(source.encode() if source else None, target.encode(),
                     fstype.encode() if fstype else None, flags,
                     data.encode() if data else None)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {source} on {target} ({fstype or 'bind'}, {data or ''}): "
                         f"{os.strerror(e)}")


def parse_options(options: list[str]) -> tuple[int, list[str]]:
    flags = 0
    data = []
    for o in options:
        if o in _FLAGS:
            bit, on = _FLAGS[o]
            flags = flags | bit if on else flags & ~bit
        else:
            data.append(o)
    return flags, data


_PAGE = os.sysconf("SC_PAGESIZE")


def mount_one(m: dict, target: str | os.PathLike) -> None:
    target = str(target)
    flags, data = parse_options(m.get("options") or [])
    typ = m.get("type") or ""
    if typ == "bind" or flags & MS_BIND:
        _sys_mount(m["source"], target, None, flags & (MS_BIND | MS_REC), None)
        rest = flags & ~(MS_BIND | MS_REC)
        if rest:
            _sys_mount("", target, None, MS_BIND | MS_REMOUNT | rest, None)
        return
    joined = ",".join(data)
    if len(joined) >= _PAGE - 1 and typ == "overlay":
        _mount_overlay_relative(m["source"], target, flags, data)
        return
    _sys_mount(m["source"], target, typ, flags, joined or None)


def _mount_overlay_relative(source: str, target: str, flags: int, data: list[str]) -> None:
    """Long lowerdir lists: mount from a helper process whose cwd is the common
    parent, with relative paths (keeps the option string under a page)."""
    paths = []
    for o in data:
        k, _, v = o.partition("=")
        if k in ("lowerdir", "upperdir", "workdir"):
            paths.extend(v.split(":"))
    common = os.path.commonpath(paths) if paths else "/"
    rel = []
    for o in data:
        k, _, v = o.partition("=")
        if k in ("lowerdir", "upperdir", "workdir"):
            v = ":".join(os.path.relpath(p, common) for p in v.split(":"))
            rel.append(f"{k}={v}")
        else:
            rel.append(o)
    opts = ",".join(rel)
    if flags & MS_RDONLY:
        opts = "ro," + opts
    if len(opts) >= _PAGE - 1:
        raise OSError(7, f"overlay mount options too long ({len(opts)} bytes)")
    r = subprocess.run(["mount", "-t", "overlay", "-o", opts, source, os.path.abspath(target)],
                       cwd=common, capture_output=True, text=True)
    if r.returncode != 0:
        raise OSError(5, f"mount overlay on {target}: {r.stderr.strip()}")


def mount_all(mounts: list[dict], target: str | os.PathLike) -> None:
    """Mount every record onto ``target``; on failure undo what was mounted."""
    done = []
    try:
        for m in mounts:
            t = str(target)
            if m.get("target"):
                t = os.path.join(t, m["target"].lstrip("/"))
            mount_one(m, t)
            done.append(t)
    except BaseException:
        for t in reversed(done):
            try:
                unmount(t)
            except OSError:
                pass
        raise


def unmount(target: str | os.PathLike, flags: int = 0) -> None:
    r = _lib().umount2(str(target).encode(), flags | UMOUNT_NOFOLLOW)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"unmount {target}: {os.strerror(e)}")


def mounts_under(path: str | os.PathLike) -> list[str]:
    """Mount points at or below ``path`` (deepest last in mount order)."""
    p = os.path.realpath(str(path))
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4]
            mnt = mnt.encode().decode("unicode_escape")
            if mnt == p or mnt.startswith(p.rstrip("/") + "/"):
                out.append(mnt)
    return out


def unmount_all(path: str | os.PathLike, detach: bool = True) -> None:
    """Unmount everything at and below ``path`` (deepest first)."""
    for _ in range(8):
        mnts = mounts_under(path)
        if not mnts:
            return
        for mnt in sorted(mnts, key=lambda s: s.count("/"), reverse=True):
            try:
                unmount(mnt, MNT_DETACH if detach else 0)
            except OSError:
                pass
    left = mounts_under(path)
    if left:
        raise OSError(16, f"could not unmount {left}")


def is_mountpoint(path: str | os.PathLike) -> bool:
    p = os.path.realpath(str(path))
    return p in mounts_under(p)
