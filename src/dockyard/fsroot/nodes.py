"""Entries of a hostile tree, each pinned by an ``O_PATH`` fd before anything is read.

:func:`open_node` opens one name relative to its parent directory's fd with
``O_PATH | O_NOFOLLOW``: that never follows a symlink, never opens a device or a FIFO, and
pins the inode. Its ``fstat`` is the entry's truth (type, size, owner, times); whatever is
read afterwards is read from *that* inode: a directory or a regular file is reopened
through the fd's ``/proc/self/fd`` link (which names the inode, not a path to resolve
again), a symlink's target is ``readlinkat(fd, "")``. A container that swaps a file for a
symlink after we listed it gets the symlink read as a symlink, never followed.

:func:`walk` is ``os.walk`` on top of that: pre-order, names sorted, from a directory fd,
an entry that vanished meanwhile is skipped. Names are ``str`` as ``os`` gives them
(undecodable bytes kept as surrogate escapes: ``os.fsencode(name)`` is the exact name).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, Callable, Iterator

from dockyard.fsroot.resolve import DIR_FLAGS

PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class Node:
    """One entry, held by an ``O_PATH`` fd (closed by :meth:`close` or ``with``)."""

    __slots__ = ("fd", "st")

    def __init__(self, fd: int, st: os.stat_result) -> None:
        self.fd, self.st = fd, st

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def mode(self) -> int:
        return self.st.st_mode

    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    def is_reg(self) -> bool:
        return stat.S_ISREG(self.st.st_mode)

    def is_link(self) -> bool:
        return stat.S_ISLNK(self.st.st_mode)

    def is_whiteout(self) -> bool:
        """overlayfs's whiteout: a 0:0 character device."""
        return stat.S_ISCHR(self.st.st_mode) and self.st.st_rdev == 0

    @property
    def _proc(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def open_dir(self) -> int:
        """A readable fd of this directory (the caller closes it)."""
        if not self.is_dir():
            raise NotADirectoryError(f"not a directory (mode {self.st.st_mode:o})")
        return os.open(self._proc, DIR_FLAGS & ~os.O_NOFOLLOW)

    def open_file(self) -> BinaryIO:
        """This regular file, open for reading."""
        if not self.is_reg():
            raise OSError(f"not a regular file (mode {self.st.st_mode:o})")
        fd = os.open(self._proc, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        return os.fdopen(fd, "rb")

    def readlink(self) -> str:
        return os.readlink("", dir_fd=self.fd)

    def getxattr(self, name: str) -> bytes | None:
        try:
            return os.getxattr(self._proc, name)
        except OSError:
            return None

    def xattrs(self, keep: Callable[[str], bool]) -> dict[str, bytes]:
        """The extended attributes whose names ``keep`` accepts (none if unsupported)."""
        out: dict[str, bytes] = {}
        try:
            names = os.listxattr(self._proc)
        except OSError:
            return out
        for x in names:
            if keep(x):
                v = self.getxattr(x)
                if v is not None:
                    out[x] = v
        return out


def open_node(dir_fd: int, name: str) -> Node | None:
    """``name`` in the directory ``dir_fd``, not followed; None if it does not exist."""
    try:
        fd = os.open(name, PATH_FLAGS, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return Node(fd, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise


def open_resolved(res) -> Node | None:
    """The entry a :class:`~dockyard.fsroot.resolve.Resolved` names (the root itself when
    its ``name`` is None); None if it is gone."""
    if res.name is not None:
        return open_node(res.parent, res.name)
    fd = os.open(".", PATH_FLAGS, dir_fd=res.parent)
    try:
        return Node(fd, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise


def mount_id(fd: int) -> int:
    """The id of the mount ``fd`` is on (``mnt_id`` of /proc/self/fdinfo)."""
    with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
        for line in f:
            if line.startswith(b"mnt_id:"):
                return int(line.split()[1])
    raise OSError(f"no mnt_id for fd {fd}")


def is_mount_root(fd: int, path: str | os.PathLike) -> bool:
    """Whether ``fd`` (opened from ``path``) is the root of a mount, not a directory of
    its parent's mount (a bind mount of the same filesystem included: device numbers
    cannot tell those apart)."""
    parent = os.open(os.path.dirname(os.path.abspath(path)),
                     os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return mount_id(fd) != mount_id(parent)
    finally:
        os.close(parent)


def open_root(path: str | os.PathLike) -> int:
    """A directory fd for the root of a tree (the trusted part of a path: opened as is)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def lookup(root_fd: int, parts: list[str]) -> Node | None:
    """The entry at ``parts`` below ``root_fd`` with no symlink followed anywhere (every
    intermediate component must be a real directory); None if there is none."""
    if not parts:
        fd = os.open(".", PATH_FLAGS, dir_fd=root_fd)
        return Node(fd, os.fstat(fd))
    cur = root_fd
    try:
        for comp in parts[:-1]:
            node = open_node(cur, comp)
            if node is None:
                return None
            with node:
                if not node.is_dir():
                    return None
                nxt = node.open_dir()
            if cur != root_fd:
                os.close(cur)
            cur = nxt
        return open_node(cur, parts[-1])
    finally:
        if cur != root_fd:
            os.close(cur)


def listdir(dir_fd: int) -> list[str]:
    """The sorted names of a directory fd (an empty list for a directory removed meanwhile)."""
    try:
        return sorted(os.listdir(dir_fd))
    except FileNotFoundError:
        return []


def walk(dir_fd: int, prefix: str = "",
         descend: Callable[[str, Node], bool] | None = None) -> Iterator[tuple[str, Node]]:
    """Every entry below ``dir_fd`` as ``(path, node)``, pre-order, names sorted; ``path``
    is ``prefix + name`` (``prefix`` ends with "/" or is empty). A directory is entered
    (through its own node, so a swap after the listing cannot redirect the walk) after
    it was yielded, unless ``descend(path, node)`` says no. The node is closed when the
    walk resumes; an entry gone meanwhile is skipped. Iterative: one fd per level."""
    stack: list[tuple[int, str, Iterator[str]]] = [(dir_fd, prefix, iter(listdir(dir_fd)))]
    try:
        while stack:
            fd, pre, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if fd != dir_fd:
                    os.close(fd)
                continue
            node = open_node(fd, name)
            if node is None:
                continue
            path = pre + name
            with node:
                yield path, node
                if not node.is_dir() or (descend is not None and not descend(path, node)):
                    continue
                sub = node.open_dir()
            try:
                stack.append((sub, path + "/", iter(listdir(sub))))
            except BaseException:
                os.close(sub)
                raise
    finally:
        for fd, _, _ in stack:
            if fd != dir_fd:
                os.close(fd)
