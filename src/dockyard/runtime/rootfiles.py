"""Reading a container's small files (/etc/passwd, /etc/group) without trusting it.

The one reader for every lookup the runtime and the daemon make in a container's
files: the runtime inside the container (``root`` is ``"/"`` after pivot_root or
setns, for the HOME of an exec) and the daemon on a container's rootfs directory
(``USER`` and ``--group-add`` lookups in ``oci/spec.py``).

A hostile image may make these files a symlink to ``/dev/zero`` (an endless
read), a FIFO (a read that never returns), a symlink out of the root, or a
directory. So:

* every path component is opened from a directory descriptor with
  ``O_NOFOLLOW``; a symlink is read (``readlinkat``) and resolved here, relative
  to the root, with ``..`` stopping at it (the kernel never follows a link,
  magic ``/proc/self/fd/N`` links included, so nothing leaves the root);
* the file is opened ``O_NONBLOCK`` (a FIFO does not block the open) and
  accepted only if ``fstat`` says it is a regular file;
* at most :data:`LIMIT` bytes are read (runc's user lookup stops at 64 KiB
  too).

Anything else (missing, not regular, a loop, an error) reads as ``None``: the
callers treat it as a missing file.

Only ``posix`` (through ``fastos``) is imported: the runtime's exec path
imports this before it enters the container.
"""

from __future__ import annotations

from dockyard.runtime import fastos as os

LIMIT = 64 << 10
MAX_LINKS = 40

_IFMT, _IFREG, _IFDIR, _IFLNK = 0o170000, 0o100000, 0o040000, 0o120000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_in_root(root: str, path: str, limit: int = LIMIT) -> bytes | None:
    """Up to ``limit`` bytes of the regular file ``path`` inside ``root``, or None."""
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return None
    stack = [root_fd]          # descriptors of the directories walked, root first
    try:
        return _read(stack, path, limit)
    except OSError:
        return None
    finally:
        for fd in stack:
            os.close(fd)


def _read(stack: list[int], path: str, limit: int) -> bytes | None:
    parts = [p for p in path.split("/") if p and p != "."]
    parts.reverse()             # a stack: the next component last
    links = 0
    while parts:
        name = parts.pop()
        if name == "..":
            if len(stack) > 1:
                os.close(stack.pop())
            continue
        st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
        kind = st.st_mode & _IFMT
        if kind == _IFLNK:
            links += 1
            if links > MAX_LINKS:
                return None
            target = os.readlink(name, dir_fd=stack[-1])
            if target.startswith("/"):
                while len(stack) > 1:
                    os.close(stack.pop())
            parts.extend(reversed([p for p in target.split("/") if p and p != "."]))
            continue
        if parts:
            if kind != _IFDIR:
                return None
            stack.append(os.open(name, _DIR_FLAGS, dir_fd=stack[-1]))
            continue
        if kind != _IFREG:
            return None
        fd = os.open(name, _FILE_FLAGS, dir_fd=stack[-1])
        try:
            if os.fstat(fd).st_mode & _IFMT != _IFREG:   # swapped since the stat
                return None
            chunks, left = [], limit
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    return None


def entries(root: str, path: str, min_fields: int) -> list[list[str]]:
    """The colon-separated lines of a passwd- or group-style file inside ``root``
    with at least ``min_fields`` fields (none when the file cannot be read)."""
    data = read_in_root(root, path)
    if data is None:
        return []
    out = []
    for line in data.decode(errors="surrogateescape").split("\n"):
        parts = line.split(":")
        if len(parts) >= min_fields and not line.startswith("#"):
            out.append(parts)
    return out
