"""Resolving a path inside a root directory fd as if chrooted there.

Intermediate symlinks are followed inside the root (an absolute link restarts at the root,
``..`` stops at it); every component is looked up relative to the fd of its parent with
no symlink followed by the kernel, so nothing reaches outside the root even while the tree
changes underneath.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40


@dataclass
class Resolved:
    parent: int                 # fd of the parent directory (owned by the caller)
    name: str | None            # the final component in ``parent``; None: the root itself
    parts: list[str]            # canonical in-root path of the entry
    st: os.stat_result | None   # lstat of the entry (None: it does not exist)

    def close(self) -> None:
        if self.parent >= 0:
            os.close(self.parent)
            self.parent = -1


def resolve(root_fd: int, path: str, follow_last: bool, create_dirs: bool = False) -> Resolved:
    """Resolve ``path`` inside the tree of ``root_fd`` as if chrooted there.

    Intermediate symlinks are always followed (in the root); the final component only
    when ``follow_last``. A missing final component gives ``st=None``; a missing or
    non-directory intermediate component raises FileNotFoundError / NotADirectoryError
    (its ``filename``: the component's in-root path). With ``create_dirs`` every missing
    component, the final one too, is made as a directory (0755).
    """
    pending = [p for p in path.split("/") if p not in ("", ".")]
    stack = [os.dup(root_fd)]
    names: list[str] = []
    links = 0
    try:
        while pending:
            comp = pending.pop(0)
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    names.pop()
                continue
            cur = stack[-1]
            last = not pending
            try:
                st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
            except FileNotFoundError:
                if create_dirs:
                    os.mkdir(comp, 0o755, dir_fd=cur)
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                elif last:
                    fd = stack.pop()
                    return Resolved(fd, comp, [*names, comp], None)
                else:
                    raise
            if stat.S_ISLNK(st.st_mode) and (not last or follow_last):
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links")
                target = os.readlink(comp, dir_fd=cur)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                        names.pop()
                pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                continue
            if last:
                fd = stack.pop()
                return Resolved(fd, comp, [*names, comp], st)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, f"{comp} is not a directory",
                                         "/" + "/".join([*names, comp]))
            stack.append(os.open(comp, DIR_FLAGS, dir_fd=cur))
            names.append(comp)
        # the path named a directory reached through the stack's top (or the root)
        top = stack.pop()
        if len(stack) == 0:
            return Resolved(top, None, [], os.fstat(top))
        parent = stack.pop()
        os.close(top)
        return Resolved(parent, names[-1], names, os.stat(names[-1], dir_fd=parent,
                                                          follow_symlinks=False))
    finally:
        for fd in stack:
            os.close(fd)


def scoped_target(root_fd: int, path: str) -> str:
    """dockerd's FollowSymlinkInScope: the absolute in-root path ``path`` leads to, every
    symlink followed inside the root; missing components are taken as they are."""
    pending = [p for p in path.split("/") if p not in ("", ".")]
    names: list[str] = []
    links = 0
    missing = False
    while pending:
        comp = pending.pop(0)
        if comp == "..":
            if names:
                names.pop()
            continue
        if not missing:
            try:
                r = resolve(root_fd, "/".join(names + [comp]), follow_last=False)
            except OSError:
                missing = True
            else:
                try:
                    if r.st is not None and stat.S_ISLNK(r.st.st_mode):
                        links += 1
                        if links > MAX_LINKS:
                            raise OSError(errno.ELOOP, "too many levels of symbolic links")
                        target = os.readlink(r.name, dir_fd=r.parent)
                        if target.startswith("/"):
                            names = []
                        pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                        continue
                    if r.st is None:
                        missing = True
                finally:
                    r.close()
        names.append(comp)
    return "/" + "/".join(names)
