"""Copy-up: a new, empty volume takes the image's content at its mount point, and the
mount point's owner and mode (dockerd's ``CopyImagePathContent``), extended attributes
included (``security.capability``, ``user.*``, ...: every one but ``security.selinux``, as
dockerd's ``fs.CopyDir``; overlayfs' own ``trusted.overlay.*`` never).

Both trees are walked by fds (fsroot): the image side is resolved inside the
container's root, the volume side is written below the volume's directory fd with no
symlink followed, so neither an image's links nor another container sharing the
volume can send a write out of it.
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard.fsroot.nodes import listdir, open_resolved, open_root, walk
from dockyard.fsroot.resolve import resolve
from dockyard.fsroot.write import Writer


def is_empty(data: str) -> bool:
    fd = open_root(data)
    try:
        return not listdir(fd)
    finally:
        os.close(fd)


def copy_up(rootfs: str, dest: str, data: str) -> bool:
    """Fill the empty directory ``data`` with the directory at ``dest`` in the root
    ``rootfs``; False (nothing done) if there is no directory there or ``data`` is not
    empty."""
    root = open_root(rootfs)
    try:
        res = resolve(root, dest, follow_last=True)
        try:
            src = open_resolved(res)
        finally:
            res.close()
    except OSError:
        return False
    finally:
        os.close(root)
    if src is None:
        return False
    with src:
        if not src.is_dir():
            return False
        sfd = src.open_dir()
        st_src = src.st
        root_xattrs = src.xattrs(_keep_xattr)
    try:
        dfd = open_root(data)
        try:
            if listdir(dfd):
                return False
            _copy_tree(sfd, dfd)
            os.fchown(dfd, st_src.st_uid, st_src.st_gid)
            os.fchmod(dfd, stat.S_IMODE(st_src.st_mode))
            _set_xattrs(dfd, root_xattrs)
            return True
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_tree(sfd: int, dfd: int) -> None:
    # directories being filled: path -> (fd, mtime); one finished (its time set, its fd
    # closed) as soon as the pre-order walk leaves it
    open_dirs: dict[str, tuple[int, int | None]] = {"": (dfd, None)}

    def finish(keep_under: str | None) -> None:
        for p in sorted(open_dirs, key=len, reverse=True):
            if not p or (keep_under is not None and (keep_under == p or
                                                     keep_under.startswith(p + "/"))):
                continue
            fd, mtime = open_dirs.pop(p)
            try:
                Writer.done(fd, mtime)
            except OSError:
                pass

    with Writer(dfd) as w:
        try:
            for path, node in walk(sfd):
                parent, _, name = path.rpartition("/")
                finish(parent)
                pfd = open_dirs.get(parent, (None,))[0]
                if pfd is None:
                    continue   # below something that was not copied
                st = node.st
                mode = stat.S_IMODE(st.st_mode)
                if node.is_dir():
                    fd = w.subdir(pfd, name, mode, st.st_uid, st.st_gid)
                    open_dirs[path] = (fd, st.st_mtime_ns)
                    _set_xattrs(fd, node.xattrs(_keep_xattr))
                elif node.is_reg():
                    with node.open_file() as f:
                        w.file(pfd, name, f.fileno(), 0, st.st_size, mode, st.st_uid, st.st_gid,
                               st.st_mtime_ns)
                    xattrs = node.xattrs(_keep_xattr)
                    if xattrs:   # after the owner: a chown clears security.capability
                        _set_file_xattrs(pfd, name, xattrs)
                elif node.is_link():
                    w.symlink(pfd, name, node.readlink(), st.st_uid, st.st_gid, st.st_mtime_ns)
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or \
                        stat.S_ISFIFO(st.st_mode):
                    if not node.is_whiteout():
                        w.node(pfd, name, st.st_mode, st.st_rdev, st.st_uid, st.st_gid,
                               st.st_mtime_ns)
        finally:
            finish(None)


def _keep_xattr(name: str) -> bool:
    return name != "security.selinux" and not name.startswith("trusted.overlay.")


def _set_xattrs(fd: int, xattrs: dict[str, bytes]) -> None:
    for k, v in xattrs.items():
        try:
            os.setxattr(fd, k, v)
        except OSError as e:
            # a volume whose filesystem cannot hold it (tmpfs and user.* before 6.6, ...)
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise


def _set_file_xattrs(dir_fd: int, name: str, xattrs: dict[str, bytes]) -> None:
    """On the regular file ``name`` just written in ``dir_fd``, reopened without
    following a symlink (a container sharing the volume may have swapped it)."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        for k, v in xattrs.items():
            try:
                os.setxattr(f"/proc/self/fd/{fd}", k, v)
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                    raise
    finally:
        os.close(fd)
