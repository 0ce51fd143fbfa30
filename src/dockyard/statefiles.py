"""Owner-only state on disk: directories 0700, files 0600.

The daemon's data root, the supervisor's and the runtime's state directories and
the registry's root hold container configurations (environment, secrets), logs
and image content with setuid binaries: no other local user may reach any of it.
Every writer of such state goes through these helpers (or passes the same modes
itself) instead of relying on the process umask. A umask cannot be used: the same
processes create files inside containers' root filesystems, which must keep the
exact modes an image or a user asked for.

Only ``os`` is imported (the runtime and the CLI import this module too).
"""

from __future__ import annotations

import os

DIR_MODE = 0o700
FILE_MODE = 0o600


def makedirs(path: str | os.PathLike, mode: int = DIR_MODE) -> None:
    """``mkdir -p`` whose every directory it creates gets exactly ``mode``.

    Directories that exist already are left as they are."""
    path = os.fspath(path)
    missing = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            if not os.path.isdir(d):
                raise
            continue
        if mode & ~0o700:    # bits beyond the owner's may have been masked by the umask
            os.chmod(d, mode)


def create(path: str | os.PathLike, flags: int = os.O_WRONLY, mode: int = FILE_MODE) -> int:
    """``os.open(path, flags | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode)``; a file that
    it creates gets exactly ``mode``."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    if mode & ~0o700:
        try:
            os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            raise
    return fd


def write(path: str | os.PathLike, data: bytes | str, mode: int = FILE_MODE,
          fsync: bool = False) -> None:
    """Replace ``path`` atomically by a file holding ``data`` with exactly ``mode``
    (a temporary file next to it, renamed over it)."""
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode()
    tmp = f"{path}.{os.urandom(6).hex()}.tmp"
    fd = create(tmp, os.O_WRONLY | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)


def restrict(path: str | os.PathLike, dir_mode: int | None = DIR_MODE,
             file_mode: int | None = FILE_MODE) -> bool:
    """Give an existing directory ``dir_mode`` or regular file ``file_mode`` (None:
    leave that kind alone), without following a symlink. Anything else (symlinks,
    sockets, devices, a missing path) is left alone. True if the mode was changed."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) == 0o040000:
            want = dir_mode
        elif (st.st_mode & 0o170000) == 0o100000:
            want = file_mode
        else:
            return False
        if want is None or st.st_mode & 0o7777 == want:
            return False
        # fchmod refuses O_PATH descriptors; the magic link names this very inode
        os.chmod(f"/proc/self/fd/{fd}", want)
        return True
    finally:
        os.close(fd)
