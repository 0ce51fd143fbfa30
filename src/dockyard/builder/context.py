"""The build context: a tar stream unpacked to disk once, indexed and hashed once.

:func:`receive` reads the (plain, gzip, bzip2 or xz) tar stream chunk by chunk into a
private directory, computing every file's sha256 as it is written, so the context is never
held in memory and never read twice. Entries whose names leave the root (``..``) are
refused, and so are entries reached through a symlink of the context (a client's tar never
has them; a hostile one could use them to write outside the directory): every component is
opened from a directory fd with ``O_NOFOLLOW``. Device nodes are refused.

The result, :class:`Context`, holds the index (path -> :class:`Entry`: type, mode, owner,
size, content digest or link target) after ``.dockerignore`` (or
``<Dockerfile>.dockerignore``) is applied. Its :meth:`Context.resolve` follows symlinks
*inside* the context, as Docker resolves COPY sources.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from dockyard.builder import ignore
from dockyard.errors import InvalidParameter, NotFound

CHUNK = 1 << 20
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40


@dataclass(frozen=True)
class Entry:
    path: str        # relative, "/"-separated, no leading "/"; "" is the root
    kind: str        # "file", "dir", "symlink"
    mode: int        # permission bits (07777)
    uid: int
    gid: int
    size: int
    digest: str      # sha256 of a file's content; a symlink's target; "" for a directory

    def meta(self) -> str:
        """What the cache key takes of this entry (as dockerd's tarsum: no times)."""
        return f"{self.kind} {self.mode:o} {self.uid}:{self.gid} {self.size} {self.digest}"


class ContextError(InvalidParameter):
    pass


def _parts(name: str) -> list[str] | None:
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


def open_dir(root_fd: int, parts: list[str], create: bool = False) -> int:
    """fd of directory ``parts`` below ``root_fd``, no symlink followed (made when missing
    with ``create``)."""
    fd = os.dup(root_fd)
    try:
        for p in parts:
            try:
                nfd = os.open(p, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(p, 0o755, dir_fd=fd)
                nfd = os.open(p, _DIR, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ContextError(f"build context entry {'/'.join(parts)!r} is reached "
                                       "through a symlink or a file") from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_file(root_fd: int, path: str) -> int:
    """A read fd of context file ``path`` (no symlink followed anywhere)."""
    parts = path.split("/")
    dfd = open_dir(root_fd, parts[:-1])
    try:
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                       dir_fd=dfd)
    finally:
        os.close(dfd)


class Context:
    def __init__(self, root: str, entries: dict[str, Entry], dockerfile: str) -> None:
        self.root = root
        self.entries = entries
        self.dockerfile = dockerfile

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------
    def read(self, path: str, limit: int = 16 << 20) -> bytes:
        """A small context file (the Dockerfile, .dockerignore), not through symlinks."""
        rfd = os.open(self.root, _DIR)
        try:
            fd = open_file(rfd, path)
        finally:
            os.close(rfd)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ContextError(f"{path} is not a regular file")
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ContextError(f"{path} is larger than {limit} bytes")
        return data

    def resolve(self, path: str, follow_last: bool = True) -> Entry | None:
        """The entry ``path`` names, symlinks followed inside the context (absolute links
        and ``..`` never leave it); None when missing or excluded."""
        pending = [p for p in path.split("/") if p not in ("", ".")]
        names: list[str] = []
        links = 0
        while pending:
            comp = pending.pop(0)
            if comp == "..":
                if names:
                    names.pop()
                continue
            cur = "/".join([*names, comp])
            e = self.entries.get(cur)
            if e is None:
                return None
            if e.kind == "symlink" and (pending or follow_last):
                links += 1
                if links > _MAX_LINKS:
                    raise ContextError(f"{path}: too many levels of symbolic links")
                if e.digest.startswith("/"):
                    names = []
                pending = [p for p in e.digest.split("/") if p not in ("", ".")] + pending
                continue
            if pending and e.kind != "dir":
                return None
            names.append(comp)
        return self.entries.get("/".join(names))

    def below(self, dir_path: str) -> Iterator[Entry]:
        """Entries under directory ``dir_path`` (not itself), sorted by path."""
        prefix = dir_path + "/" if dir_path else ""
        for p in sorted(self.entries):
            if p and p.startswith(prefix):
                yield self.entries[p]


def receive(stream: BinaryIO, root: str, dockerfile: str = "Dockerfile") -> Context:
    """Unpack the context tar read from ``stream`` into new directory ``root``; index it
    and apply the ignore file. On any error the directory is removed."""
    os.makedirs(root, mode=0o700)
    try:
        raw = _unpack(stream, root)
        ctx = Context(root, raw, dockerfile)
        patterns: list[str] = []
        for name in (dockerfile + ".dockerignore", ".dockerignore"):
            e = ctx.resolve(name)
            if e is not None and e.kind == "file":
                patterns = ignore.read_patterns(ctx.read(e.path))
                break
        if patterns:
            m = ignore.Matcher(patterns)
            ctx.entries = {p: e for p, e in raw.items() if not p or not m.excluded(p)}
        return ctx
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _unpack(stream: BinaryIO, root: str) -> dict[str, Entry]:
    entries: dict[str, Entry] = {"": Entry("", "dir", 0o755, 0, 0, 0, "")}
    rfd = os.open(root, _DIR)
    dir_times: list[tuple[list[str], float]] = []
    try:
        try:
            tf = tarfile.open(fileobj=stream, mode="r|*")
        except tarfile.ReadError as e:
            if "empty file" in str(e):
                return entries
            raise ContextError(f"the build context is not a tar archive: {e}") from None
        try:
            for m in tf:
                _member(tf, m, rfd, entries, dir_times)
        except (tarfile.TarError, EOFError, OSError) as e:
            if isinstance(e, OSError) and e.errno not in (None, errno.EEXIST, errno.EISDIR):
                raise
            raise ContextError(f"invalid build context tar: {e}") from None
        finally:
            tf.close()
    finally:
        os.close(rfd)
    return entries


def _member(tf: tarfile.TarFile, m: tarfile.TarInfo, rfd: int, entries: dict,
            dir_times: list) -> None:
    parts = _parts(m.name)
    if parts is None:
        raise ContextError(f"build context entry {m.name!r} is outside of the context")
    if not parts:
        return
    path = "/".join(parts)
    mode = m.mode & 0o7777
    # every parent must be a directory entry already (tars list parents first) or made now
    for k in range(1, len(parts)):
        parent = "/".join(parts[:k])
        pe = entries.get(parent)
        if pe is None:
            entries[parent] = Entry(parent, "dir", 0o755, 0, 0, 0, "")
        elif pe.kind != "dir":
            raise ContextError(f"build context entry {m.name!r} is reached through "
                               f"{'a symlink' if pe.kind == 'symlink' else 'a file'}")
    old = entries.get(path)
    if old is not None and not (old.kind == "dir" and m.isdir()):
        raise ContextError(f"build context entry {m.name!r} appears twice")
    dfd = open_dir(rfd, parts[:-1], create=True)
    base = parts[-1]
    try:
        if m.isdir():
            if old is None:
                os.mkdir(base, 0o700, dir_fd=dfd)
            fd = os.open(base, _DIR, dir_fd=dfd)
            os.fchmod(fd, mode | 0o700)   # we must be able to read it back
            os.close(fd)
            entries[path] = Entry(path, "dir", mode, m.uid, m.gid, 0, "")
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=dfd)
            entries[path] = Entry(path, "symlink", 0o777, m.uid, m.gid, 0, m.linkname)
        elif m.islnk():
            tparts = _parts(m.linkname)
            target = entries.get("/".join(tparts)) if tparts else None
            if target is None or target.kind != "file":
                raise ContextError(f"build context hardlink {m.name!r} -> {m.linkname!r} "
                                   "names no file before it")
            tdfd = open_dir(rfd, tparts[:-1])
            try:
                os.link(tparts[-1], base, src_dir_fd=tdfd, dst_dir_fd=dfd, follow_symlinks=False)
            finally:
                os.close(tdfd)
            entries[path] = Entry(path, "file", target.mode, target.uid, target.gid,
                                  target.size, target.digest)
        elif m.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            h = hashlib.sha256()
            try:
                src = tf.extractfile(m)
                left = m.size
                while left > 0:
                    b = src.read(min(CHUNK, left))
                    if not b:
                        raise ContextError(f"invalid build context tar: {m.name!r} is cut short")
                    h.update(b)
                    mv = memoryview(b)
                    while mv:
                        mv = mv[os.write(fd, mv):]
                    left -= len(b)
                os.fchmod(fd, (mode & 0o777) | 0o400)
                os.utime(fd, (m.mtime, m.mtime))   # COPY keeps the source's times
            finally:
                os.close(fd)
            entries[path] = Entry(path, "file", mode, m.uid, m.gid, m.size,
                                  "sha256:" + h.hexdigest())
        elif m.isfifo() or m.ischr() or m.isblk():
            raise ContextError(f"build context entry {m.name!r}: device nodes and fifos "
                               "cannot be part of a build context")
        else:
            raise ContextError(f"build context entry {m.name!r} has an unsupported type")
    finally:
        os.close(dfd)


def select_error(instruction: str, src: str) -> NotFound:
    return NotFound(f"{instruction} failed: file not found in build context or excluded by "
                    f".dockerignore: stat {src}: file does not exist")


def normalize(path: str) -> str:
    p = posixpath.normpath("/" + path).lstrip("/")
    return "" if p == "." else p
