"""Writing into a hostile tree: every component made or opened from its parent's fd.

The builder writes a step's files into a snapshot whose lower layers came from an image
anyone could have made. :class:`Writer` holds the root's directory fd;
:meth:`Writer.dir` resolves a destination directory inside the root as if chrooted there
(symlinks of the image followed *within* the root, as dockerd resolves a COPY
destination), making missing components with the given owner; entries are then created
relative to that directory's fd with ``O_NOFOLLOW``/``O_EXCL`` (an existing entry of the
image is unlinked first, never written through), owners set with ``fchown`` and
``lchown``-style calls, modes after owners (a chown clears set-id bits). Directory times
are set once their entries are written (:meth:`Writer.done`), as a tar extraction leaves
them.
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard.fsroot.resolve import DIR_FLAGS, MAX_LINKS

CHUNK = 1 << 20


class Writer:
    def __init__(self, root_fd: int) -> None:
        self.root = root_fd
        self._fds: list[int] = []

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def _keep(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    # -- directories -------------------------------------------------------------------
    def dir(self, path: str, uid: int = 0, gid: int = 0, mode: int = 0o755) -> int:
        """The fd (owned by the writer) of directory ``path`` in the root, symlinks followed
        inside the root; missing components are made with ``mode`` and ``uid:gid``."""
        pending = [p for p in path.split("/") if p not in ("", ".")]
        stack = [os.dup(self.root)]
        links = 0
        try:
            while pending:
                comp = pending.pop(0)
                if comp == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                cur = stack[-1]
                try:
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                except FileNotFoundError:
                    os.mkdir(comp, 0o700, dir_fd=cur)
                    fd = os.open(comp, DIR_FLAGS, dir_fd=cur)
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode)
                    stack.append(fd)
                    continue
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > MAX_LINKS:
                        raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                    target = os.readlink(comp, dir_fd=cur)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                    pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
                stack.append(os.open(comp, DIR_FLAGS, dir_fd=cur))
            return self._keep(stack.pop())
        finally:
            for fd in stack:
                os.close(fd)

    def lstat(self, dir_fd: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _clear(self, dir_fd: int, name: str, for_dir: bool) -> os.stat_result | None:
        """Make room for ``name``: an existing non-directory is unlinked; an existing
        directory stays for a directory (returned) and is refused for anything else."""
        st = self.lstat(dir_fd, name)
        if st is None:
            return None
        if stat.S_ISDIR(st.st_mode):
            if for_dir:
                return st
            raise IsADirectoryError(errno.EISDIR, "cannot overwrite a directory with a "
                                    "non-directory", name)
        os.unlink(name, dir_fd=dir_fd)
        return None

    def subdir(self, dir_fd: int, name: str, mode: int, uid: int, gid: int,
               keep_existing: bool = False) -> int:
        """Directory ``name`` in ``dir_fd`` (made, or an existing one given the metadata
        unless ``keep_existing``); its fd, for the caller to pass to :meth:`done` once
        the directory's entries are written."""
        existing = self._clear(dir_fd, name, for_dir=True)
        if existing is None:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        if existing is None or not keep_existing:
            try:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            except BaseException:
                os.close(fd)
                raise
        return fd

    @staticmethod
    def done(fd: int, mtime_ns: int | None = None) -> None:
        """A directory from :meth:`subdir` is complete: its time set (after its entries,
        as a tar extraction leaves it), its fd closed."""
        try:
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    # -- other entries -----------------------------------------------------------------
    def _create(self, dir_fd: int, name: str) -> int:
        """A new regular file ``name`` (mode 0600) open for writing: made with ``O_EXCL``
        (never through an existing entry); an entry already there is cleared first as
        :meth:`_clear` does and the file made again (in a fresh tree: no lookup first)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(name, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            self._clear(dir_fd, name, for_dir=False)
            return os.open(name, flags, 0o600, dir_fd=dir_fd)

    def file(self, dir_fd: int, name: str, src_fd: int, offset: int, size: int, mode: int,
             uid: int, gid: int, mtime_ns: int | None = None) -> None:
        """A regular file holding ``size`` bytes of ``src_fd`` from ``offset`` (copied in
        the kernel)."""
        fd = self._create(dir_fd, name)
        try:
            pos, left = offset, size
            while left > 0:
                try:
                    n = os.copy_file_range(src_fd, fd, min(left, 1 << 30), pos)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    n = _copy_plain(src_fd, fd, pos, left)
                if n == 0:
                    raise OSError(errno.EIO, "source file cut short", name)
                pos += n
                left -= n
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def data(self, dir_fd: int, name: str, data: bytes, mode: int, uid: int, gid: int,
             mtime_ns: int | None = None) -> None:
        fd = self._create(dir_fd, name)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def symlink(self, dir_fd: int, name: str, target: str, uid: int, gid: int,
                mtime_ns: int | None = None) -> None:
        self._clear(dir_fd, name, for_dir=False)
        os.symlink(target, name, dir_fd=dir_fd)
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        if mtime_ns is not None:
            os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=dir_fd, follow_symlinks=False)

    def hardlink(self, dir_fd: int, name: str, first: tuple[int, str]) -> None:
        """``name`` as a hard link to an entry this writer made (``(dir fd, name)``)."""
        self._clear(dir_fd, name, for_dir=False)
        os.link(first[1], name, src_dir_fd=first[0], dst_dir_fd=dir_fd, follow_symlinks=False)

    def node(self, dir_fd: int, name: str, mode: int, rdev: int, uid: int, gid: int,
             mtime_ns: int | None = None) -> None:
        """A device node or FIFO (``mode`` with its file type)."""
        self._clear(dir_fd, name, for_dir=False)
        os.mknod(name, stat.S_IFMT(mode) | 0o600, rdev, dir_fd=dir_fd)
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        _chmod_nofollow(dir_fd, name, stat.S_IMODE(mode))
        if mtime_ns is not None:
            os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=dir_fd, follow_symlinks=False)


def _chmod_nofollow(dir_fd: int, name: str, mode: int) -> None:
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def _copy_plain(src: int, dst: int, pos: int, left: int) -> int:
    b = os.pread(src, min(left, CHUNK), pos)
    if not b:
        return 0
    view = memoryview(b)
    while view:
        view = view[os.write(dst, view):]
    return len(b)
