"""The build context: a tar stream spooled to disk once, indexed and hashed once.

:func:`receive` reads the (plain, gzip, bzip2 or xz) tar stream chunk by chunk, writes
the uncompressed tar to one spool file in a private directory and computes every file's
sha256 as it passes, so the context is never held in memory, never read twice, and no
file of it is ever created on disk (one sequential write instead of thousands of creates;
nothing a hostile name or link could redirect). A file's content is read back from the
spool by offset. Entries whose names leave the root (``..``), entries below a symlink or a
file of the context, device nodes and duplicates are refused.

The result, :class:`Context`, holds the index (path -> :class:`Entry`: type, mode, owner,
size, content digest or link target; a file over :data:`LAZY` is hashed only when a step
reads it, :meth:`Context.digest`) after ``.dockerignore`` (or
``<Dockerfile>.dockerignore``) is applied. Its :meth:`Context.resolve` follows symlinks
*inside* the context, as Docker resolves COPY sources.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from dockyard.builder import ignore
from dockyard.errors import InvalidParameter, NotFound

CHUNK = 1 << 20
LAZY = 1 << 20       # files larger than this are hashed only if a step reads them
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
    offset: int = -1     # a file's content in the spool
    mtime: float = 0.0

    def meta(self) -> str:
        """What the cache key takes of this entry (as dockerd's tarsum: no times); a file
        not hashed yet needs :meth:`Context.meta`."""
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


class Context:
    def __init__(self, root: str, entries: dict[str, Entry], dockerfile: str) -> None:
        self.root = root
        self.spool_path = os.path.join(root, SPOOL)
        self.entries = entries
        self.dockerfile = dockerfile
        # the Dockerfile as it was before .dockerignore (dockerd reads it first: an ignored
        # Dockerfile still builds, it is only left out of what COPY sees)
        self.build_files: dict[str, Entry] = {}
        self._digests: dict[int, str] = {}      # spool offset -> digest of a lazy file

    def digest(self, e: Entry) -> str:
        """A file's content digest: taken as it arrived, or (a file larger than
        :data:`LAZY`, hashed only when a step reads it) now, from the spool, once."""
        if e.kind != "file" or e.digest:
            return e.digest
        d = self._digests.get(e.offset)
        if d is None:
            h = hashlib.sha256()
            with self.open(e) as f:
                left = e.size
                while left > 0:
                    b = f.read(min(CHUNK, left))
                    h.update(b)
                    left -= len(b)
            d = self._digests[e.offset] = "sha256:" + h.hexdigest()
        return d

    def meta(self, e: Entry) -> str:
        """What the cache key takes of an entry (as dockerd's tarsum: no times)."""
        return f"{e.kind} {e.mode:o} {e.uid}:{e.gid} {e.size} {self.digest(e)}"

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------
    def open(self, e: Entry) -> "_Slice":
        """A file's content (a readable file object over the spool)."""
        if e.kind != "file" or e.offset < 0:
            raise ContextError(f"{e.path} is not a regular file")
        return _Slice(self.spool_path, e.offset, e.size)

    def read(self, path: str, limit: int = 16 << 20) -> bytes:
        """A small context file (the Dockerfile, .dockerignore), not through symlinks."""
        e = self.entries.get(normalize(path))
        if e is None:
            e = next((b for b in self.build_files.values() if b.path == normalize(path)), None)
        if e is None:
            raise NotFound(f"{path}: no such file in the build context")
        if e.kind != "file":
            raise ContextError(f"{path} is not a regular file")
        if e.size > limit:
            raise ContextError(f"{path} is larger than {limit} bytes")
        with self.open(e) as f:
            return f.read()

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


class _Slice:
    def __init__(self, path: str, offset: int, size: int) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.pos, self.end = offset, offset + size

    def read(self, n: int = -1) -> bytes:
        left = self.end - self.pos
        if n is None or n < 0 or n > left:
            n = left
        out = []
        while n > 0:
            b = os.pread(self.fd, min(n, CHUNK), self.pos)
            if not b:
                raise ContextError("the context spool is cut short")
            out.append(b)
            self.pos += len(b)
            n -= len(b)
        return b"".join(out)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "_Slice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


SPOOL = "context.tar"


def _decompressed(stream: BinaryIO):
    head = stream.read(6)
    rest = _Prefixed(head, stream)
    if head[:2] == b"\x1f\x8b":
        import gzip
        return gzip.GzipFile(fileobj=rest, mode="rb")
    if head[:3] == b"BZh":
        import bz2
        return bz2.BZ2File(rest, mode="rb")
    if head[:6] == b"\xfd7zXZ\x00":
        import lzma
        return lzma.LZMAFile(rest, mode="rb")
    return rest


class _Prefixed:
    def __init__(self, head: bytes, src) -> None:
        self.head, self.src = head, src

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.src.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            if len(out) < n:
                out += self.src.read(n - len(out))
            return out
        return self.src.read(n)

    def readable(self) -> bool:
        return True


def receive(stream: BinaryIO, root: str, dockerfile: str = "Dockerfile") -> Context:
    """Spool the context tar read from ``stream`` into new directory ``root``; index it
    and apply the ignore file. On any error the directory is removed."""
    os.makedirs(root, mode=0o700)
    try:
        raw = _unpack(stream, root)
        return apply_ignore(Context(root, raw, dockerfile))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def apply_ignore(ctx: Context) -> Context:
    """Apply the context's ignore file to its index (the Dockerfile stays readable)."""
    raw = ctx.entries
    patterns: list[str] = []
    for name in (ctx.dockerfile + ".dockerignore", ".dockerignore"):
        e = ctx.resolve(name)
        if e is not None and e.kind == "file":
            patterns = ignore.read_patterns(ctx.read(e.path))
            break
    if patterns:
        for name in {normalize(ctx.dockerfile), "dockerfile"}:
            e = ctx.resolve(name)
            if e is not None:
                ctx.build_files[name] = e
        m = ignore.Matcher(patterns)
        ctx.entries = {p: e for p, e in raw.items() if not p or not m.excluded(p)}
    return ctx


def _unpack(stream: BinaryIO, root: str) -> dict[str, Entry]:
    """Spool and index the tar read from ``stream`` (``tarscan``: strict, chunk by chunk;
    each file hashed from the chunks as they pass, the chunks written to the spool as
    they are)."""
    from dockyard.builder import tarscan
    entries: dict[str, Entry] = {"": Entry("", "dir", 0o755, 0, 0, 0, "")}
    fd = os.open(os.path.join(root, SPOOL), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                 0o600)
    scanner = tarscan.Scanner()
    h = None
    sha256 = hashlib.sha256
    try:
        with open(fd, "wb", buffering=0) as spool:
            src = _decompressed(stream)
            read, write = src.read, spool.write
            while True:
                chunk = read(CHUNK)
                if not chunk:
                    break
                write(chunk)
                for kind, x in scanner.feed(chunk):
                    if kind == "data":
                        if h is not None:
                            h.update(x)
                    elif kind == "file":
                        h = sha256() if x.size <= LAZY else None
                    elif kind == "done":
                        _member(x, entries, "sha256:" + h.hexdigest() if h is not None
                                else "")
                        h = None
                    elif kind == "entry":
                        _member(x, entries, "")
                    # "end": what follows the end blocks is read and dropped
            scanner.finish()
    except tarscan.TarError as e:
        if e.first:
            raise ContextError(f"the build context is not a tar archive: {e}") from None
        raise ContextError(f"invalid build context tar: {e}") from None
    except (EOFError, ValueError) as e:    # a broken compressed stream
        raise ContextError(f"invalid build context tar: {e}") from None
    except OSError as e:
        if e.errno is not None:
            raise
        raise ContextError(f"invalid build context tar: {e}") from None
    return entries


def _member(m, entries: dict, digest: str) -> None:
    parts = _parts(m.name)
    if parts is None:
        raise ContextError(f"build context entry {m.name!r} is outside of the context")
    if not parts:
        return
    path = "/".join(parts)
    mode = m.mode & 0o7777
    # every parent must be a directory (tars list parents first; missing ones are implied)
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
    if m.isreg():
        entries[path] = Entry(path, "file", mode, m.uid, m.gid, m.size, digest,
                              m.offset_data, m.mtime)
    elif m.isdir():
        entries[path] = Entry(path, "dir", mode, m.uid, m.gid, 0, "", mtime=m.mtime)
    elif m.issym():
        entries[path] = Entry(path, "symlink", 0o777, m.uid, m.gid, 0, m.linkname,
                              mtime=m.mtime)
    elif m.islnk():
        tparts = _parts(m.linkname)
        target = entries.get("/".join(tparts)) if tparts else None
        if target is None or target.kind != "file":
            raise ContextError(f"build context hardlink {m.name!r} -> {m.linkname!r} "
                               "names no file before it")
        entries[path] = Entry(path, "file", target.mode, target.uid, target.gid,
                              target.size, target.digest, target.offset, target.mtime)
    elif m.isfifo() or m.ischr() or m.isblk():
        raise ContextError(f"build context entry {m.name!r}: device nodes and fifos "
                           "cannot be part of a build context")
    else:
        raise ContextError(f"build context entry {m.name!r} has an unsupported type")


def select_error(instruction: str, src: str) -> NotFound:
    return NotFound(f"{instruction} failed: file not found in build context or excluded by "
                    f".dockerignore: stat {src}: file does not exist")


def normalize(path: str) -> str:
    p = posixpath.normpath("/" + path).lstrip("/")
    return "" if p == "." else p
