"""`docker cp`'s service side: stat, read and write paths inside a container's filesystem.

The Engine API's ``/containers/{id}/archive`` endpoints (HEAD: stat, GET: a tar of a path,
PUT: extract a tar into a directory) call :class:`ArchiveService`; it knows nothing of HTTP.

Every path is a path *inside the container*: it is resolved component by component from a
directory fd of the container's root filesystem, symlinks being followed as if the caller
were chrooted there (absolute links and ``..`` never leave the root), and files are only
ever opened relative to directory fds with ``O_NOFOLLOW``, so neither a hostile path nor a
symlink swapped in by the running container can reach the host. The resolver, the walk and
the tar writer are :mod:`dockyard.fsroot`'s, shared with export, diff and commit.

The root is the container's rootfs mount (``<data-root>/containers/<id>/rootfs``): mounted
while the container runs; for a stopped container it is mounted for the operation (as
``export`` does) under the container's lock, so a ``start`` waits for the copy. The daemon's
view of the rootfs holds no /proc, /sys or /dev of the container, so nothing written through
it reaches the kernel's interfaces. Volumes, bind mounts and the daemon's /etc files are
mounted on a private view of it for the copy (``ContainerService.copy_view``,
containers/copyview.py), as dockerd does; a read-only mount point refuses a PUT (403).

PUT follows dockerd's rules: the destination must exist (404) and be a directory (400
``extraction point is not a directory``); tar names are taken relative to it (an absolute
name ``/x`` is ``x``) and must stay below it (``"../x" is outside of "/dst"``); relative
symlinks must point below it and hardlinks must name a non-directory below it;
``noOverwriteDirNonDir`` refuses replacing a directory with a non-directory and the reverse;
``copyUIDGID`` gives every entry the uid/gid of the container's user (entries keep the
tar's owners otherwise). In addition, device nodes are refused unless the container is
privileged. The whole archive is read and checked (spooled to a temporary file in the data
root) before anything is written, so a refused archive leaves the container untouched.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO

from dockyard import errors
from dockyard.fsroot.resolve import DIR_FLAGS as _DIR_FLAGS
from dockyard.fsroot.resolve import Resolved, resolve, scoped_target  # noqa: F401 - API

CHUNK = 1 << 20

# Go's os.FileMode bits (what dockerd's X-Docker-Container-Path-Stat carries)
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20


class FileNotFound(errors.NotFound):
    """dockerd's containerFileNotFound."""

    def __init__(self, path: str, container: str) -> None:
        super().__init__(f"Could not find the file {path} in container {container}")


def go_file_mode(mode: int) -> int:
    """A stat st_mode as Go's os.FileMode."""
    out = stat.S_IMODE(mode) & 0o777
    fmt = stat.S_IFMT(mode)
    if fmt == stat.S_IFDIR:
        out |= GO_MODE_DIR
    elif fmt == stat.S_IFLNK:
        out |= GO_MODE_SYMLINK
    elif fmt == stat.S_IFBLK:
        out |= GO_MODE_DEVICE
    elif fmt == stat.S_IFCHR:
        out |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE
    elif fmt == stat.S_IFIFO:
        out |= GO_MODE_NAMED_PIPE
    elif fmt == stat.S_IFSOCK:
        out |= GO_MODE_SOCKET
    if mode & stat.S_ISUID:
        out |= GO_MODE_SETUID
    if mode & stat.S_ISGID:
        out |= GO_MODE_SETGID
    if mode & stat.S_ISVTX:
        out |= GO_MODE_STICKY
    return out


def encode_path_stat(st: dict) -> str:
    """The X-Docker-Container-Path-Stat header value (base64 of the JSON)."""
    return base64.b64encode(json.dumps(st, separators=(",", ":")).encode()).decode()


def _rfc3339nano(ns: int) -> str:
    from dockyard.supervisor.jsonlog import rfc3339nano
    return rfc3339nano(ns)


def container_abs_path(path: str) -> str:
    """dockerd's absPath: the path made absolute and cleaned, keeping a trailing
    ``/`` or ``/.`` (they mean "the directory itself, following a final symlink")."""
    clean = os.path.normpath("/" + path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if path.endswith("/.") or path == ".":
        return clean.rstrip("/") + "/."
    if path.endswith("/") and clean != "/":
        return clean + "/"
    return clean


def _base_name(abs_path: str) -> str:
    if abs_path.endswith("/."):
        return "."
    stripped = abs_path.rstrip("/")
    return os.path.basename(stripped) if stripped else "/"


# -- in-root resolution --------------------------------------------------------------------

def _resolve_in(root_fd: int, abs_path: str, follow_last: bool, path: str, ref: str
                ) -> Resolved:
    """resolve(), with dockerd's 404 for a missing path and a 400 for a link loop."""
    try:
        return resolve(root_fd, abs_path, follow_last)
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFound(path, ref) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise errors.InvalidParameter(f"{path}: too many levels of symbolic links") \
                from None
        raise


# -- the service ---------------------------------------------------------------------------

_NOT_MOUNTED = object()


class ArchiveService:
    """stat / get / put of paths inside containers, on top of the container service."""

    def __init__(self, containers: Any) -> None:
        self.containers = containers

    # The container's rootfs, mounted for the duration of ``fn(root_fd, c)``.
    async def _with_root(self, ref: str, fn, *args):
        def run_on(c: dict, root_path: str):
            from dockyard.fsroot.nodes import is_mount_root

            fd = os.open(root_path, _DIR_FLAGS)
            try:
                if not is_mount_root(fd, root_path):
                    return _NOT_MOUNTED   # the container stopped between the check and open
                return fn(fd, c, *args)
            finally:
                os.close(fd)

        for _ in range(3):
            async with self.containers.copy_view(ref) as (c, rootfs):
                r = await asyncio.to_thread(run_on, c, rootfs)
            if r is not _NOT_MOUNTED:
                return r
        raise errors.Conflict(f"container {ref} kept starting and stopping during the copy")

    # -- HEAD ------------------------------------------------------------------------------
    async def stat(self, ref: str, path: str) -> dict:
        """dockerd's ContainerPathStat: {name, size, mode, mtime, linkTarget}."""
        if not path:
            raise errors.InvalidParameter("Path cannot be empty")
        return await self._with_root(ref, self._stat_sync, path, ref)

    def _stat_sync(self, root_fd: int, c: dict, path: str, ref: str) -> dict:
        abs_path = container_abs_path(path)
        res = _resolve_in(root_fd, abs_path, abs_path.endswith(("/", "/.")), path, ref)
        try:
            if res.st is None:
                raise FileNotFound(path, ref)
            return self._path_stat(root_fd, res, abs_path)
        finally:
            res.close()

    @staticmethod
    def _path_stat(root_fd: int, res: Resolved, abs_path: str) -> dict:
        st = res.st
        link = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                link = scoped_target(root_fd, abs_path)
            except OSError as e:
                if e.errno != errno.ELOOP:
                    raise
                raise errors.InvalidParameter(
                    f"{abs_path}: too many levels of symbolic links") from None
        return {"name": _base_name(abs_path), "size": st.st_size,
                "mode": go_file_mode(st.st_mode), "mtime": _rfc3339nano(st.st_mtime_ns),
                "linkTarget": link}

    # -- GET -------------------------------------------------------------------------------
    async def get(self, ref: str, path: str, start, out: BinaryIO) -> dict:
        """Write a tar of ``path`` to ``out``; ``start(path_stat)`` is called (from the
        worker thread) once the path is known to exist, before the first byte."""
        if not path:
            raise errors.InvalidParameter("Path cannot be empty")
        pst = await self._with_root(ref, self._get_sync, path, ref, start, out)
        self._emit(self.containers.get(ref), "archive-path")
        return pst

    def _get_sync(self, root_fd: int, c: dict, path: str, ref: str, start, out) -> dict:
        abs_path = container_abs_path(path)
        res = _resolve_in(root_fd, abs_path, abs_path.endswith(("/", "/.")), path, ref)
        try:
            if res.st is None:
                raise FileNotFound(path, ref)
            pst = self._path_stat(root_fd, res, abs_path)
            start(pst)
            name = _base_name(abs_path)
            if name == "/":
                name = "."
            names = (_id_names(root_fd, "/etc/passwd"), _id_names(root_fd, "/etc/group"))
            from dockyard.fsroot.tar import TarWriter

            with TarWriter(out, users=names[0], groups=names[1]) as tw:
                _add_resolved(tw, res, name)
            return pst
        finally:
            res.close()

    # -- PUT -------------------------------------------------------------------------------
    async def put(self, ref: str, path: str, stream: BinaryIO, *,
                  no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
        """Extract the tar read from ``stream`` into directory ``path`` of the container."""
        if not path:
            raise errors.InvalidParameter("Path cannot be empty")
        c = self.containers.get(ref)
        if c["HostConfig"].get("ReadonlyRootfs"):
            raise errors.Forbidden("container rootfs is marked read-only")
        privileged = bool(c["HostConfig"].get("Privileged"))
        abs_path = container_abs_path(path)
        for mp in c.get("MountPoints") or []:
            d = mp["Destination"].rstrip("/")
            if not mp["RW"] and (abs_path == d or abs_path.startswith(d + "/")):
                raise errors.Forbidden("mounted volume is marked read-only")
        # the destination first (as dockerd: a missing one is a 404 before the body is read)
        await self._with_root(ref, self._dest_parts, abs_path, path, ref)
        # then read and check the whole archive before touching the container
        spool = await asyncio.to_thread(_spool_checked, stream, abs_path, privileged,
                                        self.containers.root)
        try:
            await self._with_root(ref, self._put_sync, abs_path, path, ref, spool,
                                  no_overwrite_dir_non_dir, copy_uid_gid)
        finally:
            spool.close()
        self._emit(c, "extract-to-dir")

    def _emit(self, c: dict, action: str) -> None:
        self.containers.emit("container", action, c["Id"], self.containers.event_attrs(c))

    def _put_sync(self, root_fd: int, c: dict, abs_path: str, path: str, ref: str, spool,
                  no_overwrite: bool, copy_uid_gid: bool) -> None:
        dest_parts = self._dest_parts(root_fd, c, abs_path, path, ref)
        owner = None
        if copy_uid_gid and c["Config"].get("User"):
            owner = _container_user(root_fd, c["Config"]["User"])
        spool.seek(0)
        ex = _Extractor(root_fd, dest_parts, no_overwrite, owner)
        with tarfile.open(fileobj=spool, mode="r|") as tf:
            for m in tf:
                ex.entry(tf, m)
        ex.finish()

    @staticmethod
    def _dest_parts(root_fd: int, c: dict, abs_path: str, path: str, ref: str) -> list[str]:
        """The extraction point's canonical in-root path: it must exist and be a directory
        (a final symlink is followed, so a link to a directory is a destination)."""
        res = _resolve_in(root_fd, abs_path, True, path, ref)
        try:
            if res.st is None:
                raise FileNotFound(path, ref)
            if not stat.S_ISDIR(res.st.st_mode):
                raise errors.InvalidParameter("extraction point is not a directory")
            return res.parts
        finally:
            res.close()


# -- tar writing (GET) ---------------------------------------------------------------------

def _id_names(root_fd: int, path: str) -> dict[int, str]:
    """id -> name from the container's passwd or group file (the owner names dockerd's
    tars carry, looked up in the container)."""
    out: dict[int, str] = {}
    for e in _table(root_fd, path):
        if len(e) > 2 and e[2].isdigit():
            out.setdefault(int(e[2]), e[0])
    return out


def _add_resolved(tw, res: Resolved, name: str) -> None:
    """The entry ``res`` names (and all below it) as ``name`` (".": the root's children as
    "./x"), each entry pinned before it is read (fsroot.nodes)."""
    from dockyard.fsroot.nodes import open_resolved

    node = open_resolved(res)
    if node is None:
        return   # removed meanwhile (a running container)
    with node:
        tw.add(name, node)
        if not node.is_dir():
            return
        dfd = node.open_dir()
    try:
        prefix = "./" if name == "." else ("" if name == "" else name.rstrip("/") + "/")
        tw.add_tree(dfd, prefix)
    finally:
        os.close(dfd)


# -- tar checking and extraction (PUT) -----------------------------------------------------

def _rel_parts(name: str) -> list[str] | None:
    """A tar name as components below the destination (dockerd: Clean, then Join with
    the destination, so an absolute name is below it too); None when ``..`` leaves it."""
    out: list[str] = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(p)
    return out


MAX_EXT_HEADER = 1 << 20


class _CheckedTarInfo(tarfile.TarInfo):
    def _proc_member(self, tarfile_):
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                         tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) \
                and self.size > MAX_EXT_HEADER:
            raise errors.InvalidParameter(f"invalid tar: extended header of {self.size} bytes")
        return super()._proc_member(tarfile_)


def _spool_checked(stream: BinaryIO, dest: str, privileged: bool, tmp_root: str):
    """Copy the tar to a temporary file, checking every entry; the file (positioned
    anywhere) is returned, or InvalidParameter raised with nothing written to the
    container."""
    tmpdir = os.path.join(tmp_root, "tmp")
    os.makedirs(tmpdir, mode=0o700, exist_ok=True)   # owner-only, as the data root (daemon/dataroot.py)
    spool = tempfile.TemporaryFile(dir=tmpdir)
    try:
        tee = _Tee(stream, spool)
        try:
            tf = tarfile.open(fileobj=tee, mode="r|", tarinfo=_CheckedTarInfo)
            for m in tf:
                _check_member(m, dest, privileged)
            # the rest of the stream (tar padding) is copied too
            while tee.read(CHUNK):
                pass
        except (tarfile.TarError, EOFError) as e:
            raise errors.InvalidParameter(f"invalid tar stream: {e}") from None
        return spool
    except BaseException:
        spool.close()
        raise


def _q(s: str) -> str:
    """Go's %q (dockerd's error messages quote paths with it)."""
    return json.dumps(s, ensure_ascii=False)


def _check_member(m: tarfile.TarInfo, dest: str, privileged: bool) -> None:
    dest_clean = os.path.normpath(dest)
    parts = _rel_parts(m.name)
    if parts is None:
        raise errors.InvalidParameter(f"{_q(m.name)} is outside of {_q(dest_clean)}")
    if m.islnk():
        target = _rel_parts(m.linkname)
        if not target:
            raise errors.InvalidParameter(
                f"invalid hardlink {_q(os.path.normpath(os.path.join(dest_clean, m.linkname)))}"
                f" -> {_q(m.linkname)}")
    elif m.issym():
        # a relative target must stay below the destination (dockerd's breakout check);
        # an absolute one is resolved inside the container's root whenever it is followed
        if not m.linkname.startswith("/") and \
                _rel_parts("/".join([*parts[:-1], m.linkname])) is None:
            raise errors.InvalidParameter(
                f"invalid symlink {_q(os.path.join(dest_clean, *parts))} -> {_q(m.linkname)}")
    elif m.ischr() or m.isblk():
        if not privileged:
            raise errors.InvalidParameter(
                f"device node {_q(m.name)} refused: device nodes can only be copied into "
                "privileged containers")
    elif not (m.isreg() or m.isdir() or m.isfifo() or m.type == tarfile.CONTTYPE):
        raise errors.InvalidParameter(f"unsupported tar entry {_q(m.name)} (type {m.type!r})")
    if not parts and not m.isdir():
        raise errors.InvalidParameter(f"invalid tar entry {_q(m.name)}: not a directory")


class _Tee:
    def __init__(self, src: BinaryIO, dst) -> None:
        self.src, self.dst = src, dst

    def read(self, n: int = -1) -> bytes:
        b = self.src.read(n)
        if b:
            self.dst.write(b)
        return b


def _table(root_fd: int, path: str) -> list[list[str]]:
    """The colon-separated lines of a container file (passwd, group), read in-root."""
    try:
        res = resolve(root_fd, path, follow_last=True)
    except OSError:
        return []
    from dockyard.fsroot.nodes import open_resolved

    try:
        if res.st is None:
            return []
        # pinned, then opened only if that inode is a regular file: a device or FIFO
        # swapped in after the resolve is never opened
        node = open_resolved(res)
        if node is None:
            return []
        with node:
            if not node.is_reg():
                return []
            with node.open_file() as f:
                text = f.read(1 << 20).decode(errors="replace")
        return [ln.split(":") for ln in text.splitlines() if ln and not ln.startswith("#")]
    except OSError:
        return []
    finally:
        res.close()


def _container_user(root_fd: int, user: str) -> tuple[int, int]:
    """uid/gid of ``user[:group]`` from the container's /etc/passwd and /etc/group, read
    through the in-root resolver."""
    name, _, group = user.partition(":")

    def table(path: str) -> list[list[str]]:
        return _table(root_fd, path)

    uid = gid = 0
    if name.isdigit():
        uid = int(name)
        for e in table("/etc/passwd"):
            if len(e) > 3 and e[2] == name and e[3].isdigit():
                gid = int(e[3])
                break
    elif name:
        for e in table("/etc/passwd"):
            if len(e) > 3 and e[0] == name and e[2].isdigit() and e[3].isdigit():
                uid, gid = int(e[2]), int(e[3])
                break
        else:
            raise errors.InvalidParameter(f"unable to find user {name}: no matching entries "
                                          "in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for e in table("/etc/group"):
                if len(e) > 2 and e[0] == group and e[2].isdigit():
                    gid = int(e[2])
                    break
            else:
                raise errors.InvalidParameter(f"unable to find group {group}: no matching "
                                              "entries in group file")
    return uid, gid


class _Extractor:
    def __init__(self, root_fd: int, dest_parts: list[str], no_overwrite: bool,
                 owner: tuple[int, int] | None) -> None:
        self.root_fd = root_fd
        self.dest = dest_parts
        self.dest_path = "/" + "/".join(dest_parts)
        self.no_overwrite = no_overwrite
        self.owner = owner
        self.dirs: list[tuple[list[str], float]] = []

    def _parent(self, rel: list[str]) -> int:
        """fd of the directory for ``rel``'s parent, made (0755) when missing; resolved in
        the container's root, so a symlink among the parents stays inside it."""
        try:
            r = resolve(self.root_fd, "/".join(self.dest + rel[:-1]), follow_last=True,
                        create_dirs=True)
        except NotADirectoryError as e:
            raise errors.InvalidParameter(
                f"cannot extract into {_q(e.filename)}: not a directory") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise errors.InvalidParameter("too many levels of symbolic links") from None
            raise
        try:
            if r.name is None:   # the root itself
                fd, r.parent = r.parent, -1
                return fd
            if not stat.S_ISDIR(r.st.st_mode):
                raise errors.InvalidParameter(
                    f"cannot extract into {_q('/' + '/'.join(r.parts))}: not a directory")
            return os.open(r.name, _DIR_FLAGS, dir_fd=r.parent)
        finally:
            r.close()

    def _owner(self, m: tarfile.TarInfo) -> tuple[int, int]:
        return self.owner if self.owner is not None else (m.uid, m.gid)

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        rel = _rel_parts(m.name)
        if rel is None:
            raise errors.InvalidParameter(f"{_q(m.name)} is outside of {_q(self.dest_path)}")
        if not rel:   # "./": the destination's own metadata is left alone
            return
        dfd = self._parent(rel)
        try:
            self._entry(tf, m, rel, dfd, rel[-1])
        finally:
            os.close(dfd)

    def _entry(self, tf, m, rel, dfd, base) -> None:
        path = "/".join([self.dest_path.rstrip("/"), *rel])
        try:
            existing = os.stat(base, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            is_dir = stat.S_ISDIR(existing.st_mode)
            if self.no_overwrite and is_dir and not m.isdir():
                raise errors.InvalidParameter(
                    f"cannot overwrite directory {_q(path)} with non-directory "
                    f"{_q(self.dest_path)}")
            if self.no_overwrite and not is_dir and m.isdir():
                raise errors.InvalidParameter(
                    f"cannot overwrite non-directory {_q(path)} with directory "
                    f"{_q(self.dest_path)}")
            if not (is_dir and m.isdir()):
                if is_dir:
                    shutil.rmtree(base, dir_fd=dfd)
                else:
                    os.unlink(base, dir_fd=dfd)
                existing = None
        uid, gid = self._owner(m)
        mode = m.mode & 0o7777
        if m.isdir():
            if existing is None:
                os.mkdir(base, 0o700, dir_fd=dfd)
            fd = os.open(base, _DIR_FLAGS, dir_fd=dfd)
            try:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            self.dirs.append((rel, m.mtime))
            return
        if m.islnk():
            trel = _rel_parts(m.linkname)
            if not trel:
                raise errors.InvalidParameter(
                    f"invalid hardlink {_q(m.name)} -> {_q(m.linkname)}")
            tdfd = self._parent(trel)
            try:
                try:
                    tst = os.stat(trel[-1], dir_fd=tdfd, follow_symlinks=False)
                except FileNotFoundError:
                    raise errors.InvalidParameter(
                        f"invalid hardlink {_q(m.name)} -> {_q(m.linkname)}: no such file"
                    ) from None
                if stat.S_ISDIR(tst.st_mode):
                    raise errors.InvalidParameter(
                        f"invalid hardlink {_q(m.name)} -> {_q(m.linkname)}: a directory")
                os.link(trel[-1], base, src_dir_fd=tdfd, dst_dir_fd=dfd, follow_symlinks=False)
            finally:
                os.close(tdfd)
            return
        if m.issym():
            os.symlink(m.linkname, base, dir_fd=dfd)
            os.chown(base, uid, gid, dir_fd=dfd, follow_symlinks=False)
            os.utime(base, (m.mtime, m.mtime), dir_fd=dfd, follow_symlinks=False)
            return
        if m.isreg() or m.type == tarfile.CONTTYPE:
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                src = tf.extractfile(m)
                left = m.size
                while left > 0:
                    b = src.read(min(CHUNK, left))
                    if not b:
                        raise errors.InvalidParameter(
                            f"invalid tar stream: unexpected EOF in {_q(m.name)}")
                    mv = memoryview(b)
                    while mv:
                        mv = mv[os.write(fd, mv):]
                    left -= len(b)
                os.fchown(fd, uid, gid)   # before chmod: chown clears setuid bits
                os.fchmod(fd, mode)
                os.utime(fd, (m.mtime, m.mtime))
            finally:
                os.close(fd)
            return
        if m.isfifo():
            os.mkfifo(base, 0o600, dir_fd=dfd)
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=dfd)
        else:
            raise errors.InvalidParameter(f"unsupported tar entry {_q(m.name)}")
        # opening a fifo or a device could block or act: chmod the inode through an
        # O_PATH fd (its /proc/self/fd link names the inode, not a path to re-resolve)
        pfd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            if stat.S_ISLNK(os.fstat(pfd).st_mode):
                raise errors.InvalidParameter(f"{_q(path)} changed during the copy")
            os.chown(base, uid, gid, dir_fd=dfd, follow_symlinks=False)
            os.chmod(f"/proc/self/fd/{pfd}", mode)
        finally:
            os.close(pfd)
        os.utime(base, (m.mtime, m.mtime), dir_fd=dfd, follow_symlinks=False)

    def finish(self) -> None:
        """Directory times last (their children changed them)."""
        for rel, mtime in reversed(self.dirs):
            try:
                dfd = self._parent(rel)
            except (OSError, errors.DockyardError):
                continue
            try:
                os.utime(rel[-1], (mtime, mtime), dir_fd=dfd, follow_symlinks=False)
            except OSError:
                pass
            finally:
                os.close(dfd)
