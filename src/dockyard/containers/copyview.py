"""The container's filesystem as its processes see it, for `docker cp` and the archive
endpoints: its rootfs with its volumes, bind mounts and the files the daemon writes
(/etc/hostname, /etc/hosts, /etc/resolv.conf) mounted at their destinations — what
dockerd does for a copy. (export, commit and diff read the bare rootfs: volume content
stays out of them, as with Docker.)

The view is a private bind mount of the rootfs at ``<data-root>/cpviews/cp-<n>`` (inside
the owner-only data root; views a crashed daemon left are detached at the next start,
``sweep``, before anything could delete below them), on which each source is bind-mounted at a target opened from
the view's fd component by component (fsroot: symlinks resolved inside the view, none
followed by the kernel), so a container that swaps a destination with a symlink cannot
make the daemon mount over a host path. Read-only mount points stay read-only. tmpfs
mounts live only in the container: a running container that has any is copied through its
own root instead (``/proc/<pid>/root``, pinned as an fd; ``ContainerService.copy_view``).
"""

from __future__ import annotations

import os
import stat

from dockyard.snapshots import mount as snapmount

DIR = "cpviews"
_MS_PRIVATE = 1 << 18
_MS_BIND, _MS_REC, _MS_REMOUNT, _MS_RDONLY = 0x1000, 0x4000, 0x20, 0x1


def make(rootfs: str, view: str, binds: list[tuple[str, str, bool]]) -> None:
    """Mount the view at ``view``: the rootfs, then ``(destination, host source, rw)``
    in order (parents first)."""
    os.mkdir(view, 0o700)
    try:
        snapmount._sys_mount(rootfs, view, None, _MS_BIND, None)
        snapmount._sys_mount("", view, None, _MS_PRIVATE, None)
        for dest, src, rw in sorted(binds, key=lambda b: b[0].count("/")):
            _bind_into(view, dest, src, rw)
    except BaseException:
        remove(view)
        raise


def remove(view: str) -> None:
    try:
        snapmount.unmount_all(view)
    except OSError:
        pass
    try:
        os.rmdir(view)
    except OSError:
        pass


def _open_target(view: str, dest: str, is_dir: bool) -> int | None:
    """An O_PATH fd of ``dest`` in the view (made if missing, a directory or an empty
    file like its source), or None when what is there is of the other kind."""
    from dockyard.fsroot.nodes import open_root
    from dockyard.fsroot.resolve import resolve

    root = open_root(view)
    try:
        parent, _, name = dest.rstrip("/").rpartition("/")
        res = resolve(root, parent or "/", follow_last=True, create_dirs=True)
    finally:
        os.close(root)
    try:
        pfd = res.parent if res.name is None else os.open(res.name, os.O_RDONLY | os.O_DIRECTORY
                                                          | os.O_NOFOLLOW | os.O_CLOEXEC,
                                                          dir_fd=res.parent)
        try:
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                if is_dir:
                    os.mkdir(name, 0o755, dir_fd=pfd)
                else:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=pfd))
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) != is_dir or stat.S_ISLNK(st.st_mode):
                return None
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            if stat.S_IFMT(os.fstat(fd).st_mode) != stat.S_IFMT(st.st_mode):
                os.close(fd)
                return None
            return fd
        finally:
            if pfd != res.parent:
                os.close(pfd)
    finally:
        res.close()


def _bind_into(view: str, dest: str, src: str, rw: bool) -> None:
    is_dir = os.path.isdir(src)
    fd = _open_target(view, dest, is_dir)
    if fd is None:
        return   # the container put something else there: its own content is shown
    try:
        snapmount._sys_mount(src, f"/proc/self/fd/{fd}", None, _MS_BIND | _MS_REC, None)
    finally:
        os.close(fd)
    if rw:
        return
    fd = _open_target(view, dest, is_dir)   # the new mount's root now
    if fd is None:
        return
    try:
        snapmount._sys_mount("", f"/proc/self/fd/{fd}", None,
                             _MS_BIND | _MS_REMOUNT | _MS_RDONLY, None)
    finally:
        os.close(fd)


def sweep(data_root: str, dirname: str = DIR) -> None:
    """At daemon start: detach every view a daemon that died mid-copy left (or, with
    ``dirname="mounts"``, every staged volume subpath), then remove the directories
    (only those with nothing mounted below any more)."""
    d = os.path.join(data_root, dirname)
    if not os.path.isdir(d):
        return
    for name in os.listdir(d):
        path = os.path.join(d, name)
        try:
            snapmount.unmount_all(path)
        except OSError:
            continue   # still mounted: left alone, never deleted through
        try:
            if os.path.isdir(path) and dirname != DIR:
                import shutil

                shutil.rmtree(path)
            else:
                os.rmdir(path)
        except OSError:
            pass
