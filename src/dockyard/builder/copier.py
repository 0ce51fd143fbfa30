"""COPY, ADD and WORKDIR written straight into a step's mounted snapshot (blocking: run in
a thread).

The destination root is a mounted, writable snapshot of the parent image that no
container runs on; the files come from the context's spool (by offset, copied in the
kernel) or from another stage's image mounted read-only. Everything goes through
:class:`dockyard.fsroot.write.Writer` (the destination resolved inside the root from a
directory fd, entries made with ``O_NOFOLLOW``/``O_EXCL``) and the source tree is read
through :mod:`dockyard.fsroot.nodes` (each entry pinned by an ``O_PATH`` fd). Owners:
0:0 for context files (as dockerd), the source's for ``--from``, ``--chown`` for all,
names looked up in the destination image's /etc/passwd and /etc/group through the
bounded in-root reader. New parent directories get the ``--chown`` owner, an existing
destination directory keeps its owner and mode.
"""

from __future__ import annotations

import os
import posixpath
import stat

from dockyard import errors
from dockyard.builder import context as bctx
from dockyard.fsroot import nodes
from dockyard.fsroot.resolve import resolve
from dockyard.fsroot.write import Writer


class CopyError(errors.InvalidParameter):
    pass


def _ns(t: float) -> int:
    return int(t * 1_000_000_000)


def resolve_chown(root: str, chown: str | None) -> tuple[int, int]:
    """``--chown=user[:group]`` as numbers; names from the image's files (dockerd's rule: a
    user alone gives the same number as the group)."""
    if not chown:
        return 0, 0
    from dockyard.runtime import rootfiles
    user, _, group = chown.partition(":")

    def lookup(name: str, path: str, what: str) -> int:
        if name.isdigit():
            return int(name)
        for fields in rootfiles.entries(root, path, 3):
            if fields[0] == name and fields[2].isdigit():
                return int(fields[2])
        raise CopyError(f"unable to convert uid/gid chown string to host mapping: "
                        f"can't find {what} with name {name!r} in {path}")

    uid = lookup(user, "/etc/passwd", "uid for user")
    gid = lookup(group, "/etc/group", "gid for group") if group else uid
    return uid, gid


def _is_dir(root_fd: int, path: str) -> bool:
    try:
        r = resolve(root_fd, path, follow_last=True)
    except OSError:
        return False
    try:
        return r.st is not None and stat.S_ISDIR(r.st.st_mode)
    finally:
        r.close()


def workdir(root: str, path: str) -> bool:
    """WORKDIR's directory; False if it was already there (no layer then)."""
    rfd = nodes.open_root(root)
    try:
        if _is_dir(rfd, path):
            return False
        with Writer(rfd) as w:
            w.dir(path)
        return True
    finally:
        os.close(rfd)


def copy(root: str, spec, ctx: bctx.Context | None, src_root: str | None) -> None:
    """One COPY/ADD into the mounted snapshot at ``root``; ``src_root`` is the mounted
    ``--from`` image (None: the context)."""
    rfd = nodes.open_root(root)
    try:
        uid, gid = resolve_chown(root, spec.chown)
        with Writer(rfd) as w:
            _Copy(w, rfd, spec, uid, gid).run(ctx, src_root)
    except (OSError, ValueError) as e:
        raise CopyError(f"{'COPY'} failed: {e}") from None
    finally:
        os.close(rfd)


def can_write_ahead(spec) -> bool:
    """Whether a COPY can be written before its parent image is known (into an empty
    tree placed on the parent later): from the context, every source a directory (or a
    directory destination), no owner names to look up in the image."""
    if spec.workdir_only or spec.from_stage is not None or spec.from_image or spec.heredocs:
        return False
    if spec.add and not all(it.contents for it in spec.items):
        return False    # a file may be an archive, extracted into the destination
    if not spec.items or not (spec.dest_dir or all(it.contents for it in spec.items)):
        return False
    if spec.chown and not all(p.isdigit() for p in spec.chown.split(":")):
        return False
    return True


def write_ahead(root: str, spec, ctx: bctx.Context) -> list[str]:
    """:func:`copy` into the empty tree ``root``; returns the directories it only implies
    (each destination and its parents), which take the parent image's metadata later."""
    copy(root, spec, ctx, None)
    implied: set[str] = set()
    for it in spec.items:
        d = it.dest if it.contents else posixpath.dirname(
            posixpath.join(it.dest, it.name) if spec.dest_dir else it.dest)
        names = [n for n in d.split("/") if n]
        for k in range(1, len(names) + 1):
            implied.add("/".join(names[:k]))
    return sorted(implied)


def _decompressor(raw, head: bytes):
    """A reader of ``raw``'s decompressed bytes by its magic (gzip, bzip2, xz, zstd;
    anything else is read as it is)."""
    if head[:2] == b"\x1f\x8b":
        import gzip
        return _Closing(gzip.GzipFile(fileobj=raw, mode="rb"), raw)
    if head[:3] == b"BZh":
        import bz2
        return _Closing(bz2.BZ2File(raw, mode="rb"), raw)
    if head[:6] == b"\xfd7zXZ\x00":
        import lzma
        return _Closing(lzma.LZMAFile(raw, mode="rb"), raw)
    if head[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard
        return _Closing(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True),
                        raw)
    return raw


class _Closing:
    """A decompressing reader that closes its source too."""

    def __init__(self, dec, raw) -> None:
        self.dec, self.raw = dec, raw

    def read(self, n: int = -1) -> bytes:
        return self.dec.read(n)

    def close(self) -> None:
        try:
            self.dec.close()
        finally:
            self.raw.close()


def archive_stream(ctx: bctx.Context, e: bctx.Entry):
    """A readable stream of the tar ``e`` holds (decompressed), or None if it is not an
    archive: dockerd's IsArchivePath - decompressed by magic, then a first tar header
    that reads (an empty or corrupt stream, a non-tar file: copied as it is)."""
    import tarfile
    if e.size < 4:
        return None
    with ctx.open(e) as f:
        head = f.read(6)
    stream = _decompressor(ctx.open(e), head)
    try:
        first = stream.read(512)
        ok = len(first) == 512 and first.strip(b"\0") != b""
        if ok:
            tarfile.TarInfo.frombuf(first, "utf-8", "surrogateescape")
    except Exception:  # noqa: BLE001 - any failure: not an archive
        ok = False
    stream.close()
    if not ok:
        return None
    return _decompressor(ctx.open(e), head)


class _Copy:
    def __init__(self, w: Writer, rfd: int, spec, uid: int, gid: int) -> None:
        self.w, self.rfd, self.spec = w, rfd, spec
        self.uid, self.gid = uid, gid
        self.chown = bool(spec.chown)
        self.chmod = spec.chmod

    def _target_parent(self, target: str) -> tuple[int, str]:
        parent, name = posixpath.split(target.rstrip("/") or "/")
        if not name:
            raise CopyError("cannot copy a file onto the root directory")
        return self.w.dir(parent or "/", self.uid, self.gid), name

    def run(self, ctx: bctx.Context | None, src_root: str | None) -> None:
        spec = self.spec
        single = (len(spec.items) + len(spec.heredocs) == 1
                  and not (spec.items and spec.items[0].contents))
        dest_is_dir = spec.dest_dir or (single and _is_dir(self.rfd, spec.dest))
        for name, content in spec.heredocs:
            target = posixpath.join(spec.dest, name) if dest_is_dir else spec.dest
            dfd, base = self._target_parent(target)
            self.w.data(dfd, base, content.encode(), self._mode(0o644), self.uid, self.gid)
        if src_root is not None:
            sfd = nodes.open_root(src_root)
            try:
                for it in spec.items:
                    self._from_tree(sfd, it, dest_is_dir)
            finally:
                os.close(sfd)
            return
        if ctx is None:
            for it in spec.items:
                if it.tree:
                    self._tree(it)
            return
        spool = os.open(ctx.spool_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for it in spec.items:
                if it.tree:
                    self._tree(it)
                    continue
                if it.download:
                    self._download(it, dest_is_dir)
                    continue
                e = ctx.entries.get(it.source)
                if spec.add and e is not None and e.kind == "file" and not it.contents:
                    stream = archive_stream(ctx, e)
                    if stream is not None:
                        self._extract(stream, it.dest, e.path)
                        continue
                if e is None:
                    raise CopyError(f"COPY failed: {it.source} disappeared from the context")
                if it.contents:
                    self._ctx_tree(ctx, spool, e, it.dest)
                else:
                    target = posixpath.join(it.dest, it.name) if dest_is_dir else it.dest
                    dfd, base = self._target_parent(target)
                    self._ctx_entry(spool, dfd, base, e)
        finally:
            os.close(spool)

    def _tree(self, it) -> None:
        """An ``ADD <git url>``'s clone (a directory of ours, its content the
        repository's: read fd-based like an image, symlinks copied as links) into
        ``it.dest``."""
        sfd = nodes.open_root(it.download)
        try:
            self._from_tree(sfd, it, True)
        finally:
            os.close(sfd)

    def _download(self, it, dest_is_dir: bool) -> None:
        """An ``ADD <url>`` file: mode 0600 (dockerd's), the time Last-Modified gave."""
        import time
        target = posixpath.join(it.dest, it.name) if dest_is_dir else it.dest
        dfd, base = self._target_parent(target)
        fd = os.open(it.download, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            uid, gid = self._owner(0, 0)
            self.w.file(dfd, base, fd, 0, size, self._mode(0o600), uid, gid,
                        _ns(it.mtime or time.time()))
        finally:
            os.close(fd)

    def _extract(self, stream, dest: str, name: str) -> None:
        """A local archive extracted into directory ``dest`` (owners and modes from the
        archive, as dockerd's UntarPath; --chown/--chmod do not apply to its entries)."""
        import lzma
        import tarfile
        import zlib
        from dockyard.images import unpack
        dfd = self.w.dir(dest, 0, 0)
        try:
            unpack.extract_into(stream, dfd)
        except unpack.UnpackError as e:
            raise CopyError(f"ADD failed: {name}: {e}") from None
        except (EOFError, lzma.LZMAError, zlib.error, tarfile.TarError, OSError) as e:
            if isinstance(e, OSError) and e.errno is not None:
                raise
            raise CopyError(f"ADD failed: {name}: invalid archive: {e}") from None
        finally:
            stream.close()

    def _mode(self, mode: int) -> int:
        return self.chmod if self.chmod is not None else mode

    def _owner(self, uid: int, gid: int) -> tuple[int, int]:
        return (self.uid, self.gid) if self.chown else (uid, gid)

    # -- from the context --------------------------------------------------------------
    def _ctx_entry(self, spool: int, dfd: int, name: str, e: bctx.Entry) -> int | None:
        """One context entry (owned 0:0 unless --chown); a directory's fd is returned."""
        uid, gid = self._owner(0, 0)
        if e.kind == "dir":
            return self.w.subdir(dfd, name, self._mode(e.mode), uid, gid)
        if e.kind == "symlink":
            self.w.symlink(dfd, name, e.digest, uid, gid, _ns(e.mtime))
        else:
            self.w.file(dfd, name, spool, e.offset, e.size, self._mode(e.mode), uid, gid,
                        _ns(e.mtime))
        return None

    def _ctx_tree(self, ctx: bctx.Context, spool: int, top: bctx.Entry, dest: str) -> None:
        """A context directory's contents into ``dest`` (made if missing, with --chown's
        owner; an existing one keeps its owner and mode), depth first."""
        existed = _is_dir(self.rfd, dest)
        root = self.w.dir(dest, self.uid, self.gid)
        if not existed and self.chmod is not None:
            os.fchmod(root, self.chmod)
        prefix = top.path + "/" if top.path else ""
        subs = sorted((e for p, e in ctx.entries.items() if p and p.startswith(prefix)),
                      key=lambda e: e.path[len(prefix):].split("/"))
        stack: list[tuple[list[str], int, int]] = []    # (parts, fd, mtime ns) of open dirs
        try:
            for e in subs:
                parts = e.path[len(prefix):].split("/")
                while stack and stack[-1][0] != parts[:-1]:
                    _, fd, ns = stack.pop()
                    self.w.done(fd, ns)
                dfd = stack[-1][1] if stack else root
                fd = self._ctx_entry(spool, dfd, parts[-1], e)
                if fd is not None:
                    stack.append((parts, fd, _ns(e.mtime)))
        finally:
            while stack:
                _, fd, ns = stack.pop()
                self.w.done(fd, ns)

    # -- from another stage or image ---------------------------------------------------
    def _from_tree(self, sfd: int, it, dest_is_dir: bool) -> None:
        try:
            r = resolve(sfd, it.source, follow_last=True)
        except OSError:
            r = None
        if r is None or r.st is None:
            if r is not None:
                r.close()
            raise CopyError(f"COPY failed: stat {it.source}: file does not exist")
        try:
            node = (nodes.open_node(r.parent, r.name) if r.name is not None
                    else nodes.Node(os.open(".", nodes.PATH_FLAGS, dir_fd=r.parent),
                                    os.fstat(r.parent)))
        finally:
            r.close()
        if node is None:
            raise CopyError(f"COPY failed: stat {it.source}: file does not exist")
        links: dict[tuple[int, int], tuple[int, str]] = {}
        try:
            with node:
                if node.is_dir():
                    existed = _is_dir(self.rfd, it.dest)
                    root = self.w.dir(it.dest, self.uid, self.gid)
                    if not existed:
                        uid, gid = self._owner(node.st.st_uid, node.st.st_gid)
                        os.fchown(root, uid, gid)
                        os.fchmod(root, self._mode(stat.S_IMODE(node.st.st_mode)))
                    src = node.open_dir()
                    try:
                        self._walk(src, root, links)
                    finally:
                        os.close(src)
                else:
                    target = posixpath.join(it.dest, it.name) if dest_is_dir else it.dest
                    dfd, base = self._target_parent(target)
                    self._node(dfd, base, node, links)
        finally:
            for dfd, _ in links.values():
                os.close(dfd)

    def _walk(self, src: int, root: int, links: dict) -> None:
        stack: list[tuple[str, int, int]] = []     # (path prefix, fd, mtime ns)
        try:
            for path, node in nodes.walk(src):
                parent = path.rpartition("/")[0]
                while stack and stack[-1][0] != parent:
                    _, fd, ns = stack.pop()
                    self.w.done(fd, ns)
                dfd = stack[-1][1] if stack else root
                fd = self._node(dfd, path.rpartition("/")[2], node, links)
                if fd is not None:
                    stack.append((path, fd, node.st.st_mtime_ns))
        finally:
            while stack:
                _, fd, ns = stack.pop()
                self.w.done(fd, ns)

    def _node(self, dfd: int, name: str, node: nodes.Node, links: dict) -> int | None:
        st = node.st
        uid, gid = self._owner(st.st_uid, st.st_gid)
        mode = stat.S_IMODE(st.st_mode)
        if node.is_dir():
            return self.w.subdir(dfd, name, self._mode(mode), uid, gid)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            self.w.hardlink(dfd, name, links[key])
            return None
        if node.is_reg():
            with node.open_file() as f:
                self.w.file(dfd, name, f.fileno(), 0, os.fstat(f.fileno()).st_size,
                            self._mode(mode), uid, gid, st.st_mtime_ns)
                cap = node.getxattr("security.capability")
                if cap is not None and not self.chown:
                    _set_cap(dfd, name, cap)
        elif node.is_link():
            self.w.symlink(dfd, name, node.readlink(), uid, gid, st.st_mtime_ns)
        elif stat.S_ISSOCK(st.st_mode):
            return None
        else:
            self.w.node(dfd, name, st.st_mode, st.st_rdev, uid, gid, st.st_mtime_ns)
        if st.st_nlink > 1:
            links[key] = (os.dup(dfd), name)
        return None


def _set_cap(dfd: int, name: str, value: bytes) -> None:
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        os.setxattr(f"/proc/self/fd/{fd}", "security.capability", value)
    except OSError:
        pass
    finally:
        os.close(fd)
