"""Safe, faithful application of a layer tar into a snapshot directory.

``apply_layer(stream, target)`` reads a plain, gzip or zstd tar (detected by its
magic bytes) in one streaming pass, computing the compressed digest and the
diffID (sha256 of the uncompressed tar) as it goes, and recreates every entry
under ``target``:

* Safety: every path is resolved component by component from a directory fd of
  the root, never following a link out of it: ``..`` entries and absolute names
  are refused; a symlink met in a parent component is resolved *inside* the root
  (as if chrooted), so a symlink made by an earlier entry cannot be used to write
  outside; the final component is never followed (an existing entry is replaced);
  hardlink targets must name an existing non-directory inside the root; extended
  headers larger than 1 MiB are refused. Anything refused raises
  :class:`UnpackError` (an InvalidParameter); the caller removes the partial
  snapshot.
* Faithfulness: owners (numeric), modes including setuid/setgid/sticky, xattrs
  (PAX ``SCHILY.xattr.*``), hardlinks, device nodes, fifos, symlinks, mtimes
  (directories' last, since creating children changes them).
* Whiteouts: ``.wh.NAME`` becomes an overlay whiteout (a 0:0 char device) and
  ``.wh..wh..opq`` the ``trusted.overlay.opaque=y`` xattr in ``"overlay"`` mode;
  in ``"delete"`` mode (copy snapshotter) they delete what they name.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable

from dockyard.errors import InvalidParameter

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_EXT_HEADER = 1 << 20
CHUNK = 1 << 20
TAR_BUFSIZE = 1 << 16
WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


class UnpackError(InvalidParameter):
    """A layer that cannot be applied safely or is malformed."""


# -- streams ---------------------------------------------------------------------------

class HashingReader:
    """Reads from ``raw``, hashing and counting every byte; optional ``tee`` callback.

    With ``hashing=False`` it only counts (``digest()`` is then empty)."""

    def __init__(self, raw: BinaryIO, tee: Callable[[bytes], object] | None = None,
                 hashing: bool = True):
        self.raw = raw
        self.hash = hashlib.sha256() if hashing else None
        self.count = 0
        self.tee = tee
        self._prefix = b""

    def peek(self, n: int) -> bytes:
        while len(self._prefix) < n:
            b = self.raw.read(n - len(self._prefix))
            if not b:
                break
            self._prefix += b
        return self._prefix[:n]

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            if n is None or n < 0:
                b = self._prefix + self.raw.read()
                self._prefix = b""
            else:
                b = self._prefix[:n]
                self._prefix = self._prefix[n:]
                if len(b) < n and not self._prefix:
                    b += self.raw.read(n - len(b))
        else:
            b = self.raw.read() if n is None or n < 0 else self.raw.read(n)
        if b:
            if self.hash is not None:
                self.hash.update(b)
            self.count += len(b)
            if self.tee is not None:
                self.tee(b)
        return b

    def readable(self) -> bool:
        return True

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest() if self.hash is not None else ""

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class ReadAhead:
    """Reads ``src`` in a worker thread (decompression, hashing and tee-ing happen
    there, overlapping with file creation in the caller). Errors raised by ``src``
    are re-raised by :meth:`read`. The chunks the worker read are handed out as they
    are: :meth:`read_view` gives views of them (no copy) and :meth:`read` copies only
    what spans two chunks or a part of one."""

    def __init__(self, src, chunk: int = CHUNK, depth: int = 8):
        import queue
        import threading

        self._src = src
        self._q: "queue.Queue" = queue.Queue(maxsize=depth)
        self._buf = b""           # the current chunk
        self._pos = 0             # bytes of it already handed out
        self._eof = False
        self._stop = False
        self._chunk = chunk
        self._t = threading.Thread(target=self._run, name="layer-read-ahead", daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            while not self._stop:
                b = self._src.read(self._chunk)
                self._q.put(b)
                if not b:
                    return
        except BaseException as e:  # handed to the reader
            self._q.put(e)

    def _next(self) -> bool:
        """Make the next chunk current (the current one must be used up)."""
        if self._eof:
            return False
        item = self._q.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
            self._buf, self._pos = b"", 0
            return False
        self._buf, self._pos = item, 0
        return True

    def read_view(self, n: int) -> memoryview | bytes:
        """Up to ``n`` (> 0) bytes from one chunk, as a view of it; empty at EOF."""
        if self._pos >= len(self._buf) and not self._next():
            return b""
        start = self._pos
        self._pos = min(start + n, len(self._buf))
        return memoryview(self._buf)[start:self._pos]

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._buf[self._pos:]]
            self._buf, self._pos = b"", 0
            while self._next():
                parts.append(self._buf)
            self._buf, self._pos = b"", 0
            return b"".join(parts)
        if self._pos >= len(self._buf) and not self._next():
            return b""
        if self._pos == 0 and n >= len(self._buf):
            out, self._pos = self._buf, len(self._buf)     # the whole chunk: no copy
            return out
        if self._pos + n <= len(self._buf):
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            return out
        parts = [self._buf[self._pos:]]
        got = len(parts[0])
        self._pos = len(self._buf)
        while got < n and self._next():
            take = min(n - got, len(self._buf))
            parts.append(self._buf[:take] if take < len(self._buf) else self._buf)
            self._pos = take
            got += take
        return b"".join(parts)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Stop the worker (drains what it already queued)."""
        self._stop = True
        while self._t.is_alive():
            try:
                self._q.get(timeout=0.05)
            except Exception:
                pass
        self._eof = True


def detect_compression(prefix: bytes) -> str:
    if prefix.startswith(GZIP_MAGIC):
        return "gzip"
    if prefix.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def _gzip_header_len(b: bytes) -> int | None:
    """Length of the gzip member header at the start of ``b`` (None: more bytes needed)."""
    if len(b) < 10:
        return None
    if b[2] != 8:
        raise gzip.BadGzipFile("Unknown compression method")
    flags, pos = b[3], 10
    if flags & 4:                                   # FEXTRA
        if len(b) < pos + 2:
            return None
        pos += 2 + int.from_bytes(b[pos:pos + 2], "little")
    for bit in (8, 16):                             # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            end = b.find(b"\0", pos)
            if end < 0:
                return None
            pos = end + 1
    if flags & 2:                                   # FHCRC
        pos += 2
    return pos if len(b) >= pos else None


class Gunzip:
    """A reader of the uncompressed bytes of a gzip stream (several members allowed, as
    zero padding between and after them), zlib doing the work in 1 MiB steps.

    Errors as :class:`gzip.GzipFile` raises them: ``EOFError`` for a stream that ends
    inside a member, :class:`gzip.BadGzipFile` for bytes that are not a member,
    ``zlib.error`` for corrupt data or a wrong CRC/length. With ``check=False`` the
    members' CRC-32 and length are not checked (twice as fast; for a caller that
    checks the uncompressed bytes' digest anyway)."""

    def __init__(self, src, chunk: int = CHUNK, check: bool = True):
        self._src = src
        self._chunk = chunk
        self._check = check
        self._d = None            # the member being decompressed
        self._trailer = 0         # bytes of a member's trailer still to skip (check=False)
        self._in = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        b = self._src.read(self._chunk)
        if not b:
            return False
        self._in = self._in + b if self._in else b
        return True

    def _ended(self) -> EOFError:
        return EOFError("Compressed file ended before the end-of-stream marker was reached")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while True:
                b = self.read(self._chunk)
                if not b:
                    return b"".join(parts)
                parts.append(b)
        while not self._eof and n:
            if self._trailer:
                if not self._in and not self._fill():
                    raise self._ended()
                skip = min(self._trailer, len(self._in))
                self._in = self._in[skip:]
                self._trailer -= skip
                continue
            if self._d is None:
                # between members: skip zero padding, then a member must start
                self._in = self._in.lstrip(b"\0")
                if len(self._in) < 2 and not self._fill():
                    if self._in:
                        raise self._ended()
                    self._eof = True
                    break
                if len(self._in) < 2:
                    continue
                if self._in[:2] != GZIP_MAGIC:
                    raise gzip.BadGzipFile(f"Not a gzipped file ({self._in[:2]!r})")
                if self._check:
                    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    hlen = _gzip_header_len(self._in)
                    if hlen is None:
                        if not self._fill():
                            raise self._ended()
                        continue
                    self._in = self._in[hlen:]
                    self._d = zlib.decompressobj(-zlib.MAX_WBITS)
            if not self._in and not self._fill():
                raise self._ended()
            out = self._d.decompress(self._in, n)
            if self._d.eof:
                self._in = self._d.unused_data
                self._d = None
                if not self._check:
                    self._trailer = 8       # CRC-32 and length, not checked
            else:
                self._in = self._d.unconsumed_tail
            if out:
                return out
        return b""


def decompressed(src: HashingReader, check: bool = True) -> tuple[BinaryIO, str]:
    """Return a reader of the uncompressed bytes of ``src`` and the compression.
    ``check=False``: gzip's CRC-32 is not checked (the caller checks a digest)."""
    comp = detect_compression(src.peek(4))
    if comp == "gzip":
        return Gunzip(src, check=check), comp
    if comp == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True), comp
    return src, comp


@dataclass(frozen=True)
class LayerResult:
    diff_id: str          # sha256 of the uncompressed tar
    digest: str           # sha256 of the bytes read (compressed or not)
    size: int             # bytes of content written (Docker's layer size)
    tar_size: int         # uncompressed tar length
    compressed_size: int  # bytes read
    compression: str      # "none" | "gzip" | "zstd"
    # directories the layer made only because entries lay below them (no entry of their
    # own), in the order made: :func:`inherit_implicit` gives them their parents' metadata
    implicit_dirs: tuple[str, ...] = ()


class _SafeTarInfo(tarfile.TarInfo):
    def _proc_member(self, tarfile_):
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                         tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) \
                and self.size > MAX_EXT_HEADER:
            raise UnpackError(f"invalid tar: extended header of {self.size} bytes "
                              f"(limit {MAX_EXT_HEADER})")
        return super()._proc_member(tarfile_)


_STREAM_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def _stream_error(e: BaseException) -> UnpackError:
    msg = str(e) or type(e).__name__
    if isinstance(e, EOFError) or "unexpected end" in msg:
        return UnpackError(f"invalid tar stream: unexpected EOF ({msg})")
    return UnpackError(f"invalid tar stream: {msg}")


def iter_tar(stream: BinaryIO):
    """Iterate a tar stream with the extended-header limit; errors become UnpackError."""
    try:
        tf = tarfile.open(fileobj=stream, mode="r|", tarinfo=_SafeTarInfo, bufsize=TAR_BUFSIZE)
    except _STREAM_ERRORS as e:
        raise _stream_error(e) from None
    except Exception as e:
        if _is_decompress_error(e):
            raise _stream_error(e) from None
        raise
    it = iter(tf)
    while True:
        try:
            m = next(it)
        except StopIteration:
            return
        except _STREAM_ERRORS as e:
            raise _stream_error(e) from None
        except Exception as e:
            if _is_decompress_error(e):
                raise _stream_error(e) from None
            raise
        yield tf, m


def _is_decompress_error(e: BaseException) -> bool:
    try:
        import zstandard
        if isinstance(e, zstandard.ZstdError):
            return True
    except ImportError:
        pass
    return isinstance(e, OSError) and ("gzip" in str(e).lower() or "zstd" in str(e).lower())


# -- path resolution -------------------------------------------------------------------

def clean_name(name: str, what: str = "entry") -> list[str]:
    """Split a tar name into components; refuse absolute names and ``..``."""
    if name.startswith("/"):
        raise UnpackError(f"invalid tar {what} {name!r}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnpackError(f"invalid tar {what} {name!r}: path escapes the root (..)")
    return parts


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def lower_dir_stat(lowers: list, names: list[str]) -> os.stat_result | None:
    """The stat of directory ``names`` as overlayfs shows it through ``lowers`` (layer
    directories, nearest first), or None when the merged view has no directory there.

    Resolved component by component as overlayfs does: a file, symlink or whiteout hides
    the name in every layer below; an opaque directory hides the layers below it. The
    nearest layer's directory gives the metadata."""
    layers = [os.fspath(p) for p in lowers]
    found = None
    for depth in range(1, len(names) + 1):
        rel = names[:depth]
        found = None
        keep = []
        for layer in layers:
            # every component above ``rel`` is a real directory in ``layer`` (not a link)
            p = os.path.join(layer, *rel)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            if found is None:
                found = st
            keep.append(layer)
            if _is_opaque(p):
                break
        if found is None:
            return None
        layers = keep
    return found


def inherit_implicit(target: str | os.PathLike, paths, lowers: list) -> None:
    """Give a layer's implicitly made directories (``LayerResult.implicit_dirs``) the
    metadata they would have had if the layer had been unpacked over ``lowers``
    (its parents' directories, nearest first), as :func:`apply_layer` does when given
    ``lowers``: mode, owner and times of the directory the parents show there; one
    the parents lack keeps 0755, taking the group and setgid bit of an implicit parent
    that turned out setgid, as mkdir would have. Lets layers be unpacked before their
    parents are."""
    root = os.open(os.fspath(target), _DIR_FLAGS)
    seen: set[tuple[str, ...]] = set()
    try:
        for rel in paths:
            names = [n for n in rel.split("/") if n]
            if not names:
                continue
            seen.add(tuple(names))
            fds = [os.dup(root)]
            try:
                for n in names:
                    try:
                        fds.append(os.open(n, _DIR_FLAGS, dir_fd=fds[-1]))
                    except OSError:
                        break   # replaced or removed by a later entry: nothing to give
                else:
                    _inherit(fds[-1], fds[-2], lower_dir_stat(lowers, names),
                             tuple(names[:-1]) in seen)
            finally:
                for fd in fds:
                    os.close(fd)
    finally:
        os.close(root)


def _inherit(fd: int, parent: int, st: os.stat_result | None, parent_implicit: bool) -> None:
    # (changing a directory's owner, mode or times changes no other directory's mtime,
    # so the order they are given in does not matter)
    if st is not None:
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        return
    if not parent_implicit:
        return   # the parent had its final metadata when mkdir ran
    pst, own = os.fstat(parent), os.fstat(fd)
    if pst.st_mode & stat.S_ISGID and not own.st_mode & stat.S_ISGID:
        os.fchown(fd, -1, pst.st_gid)
        os.fchmod(fd, stat.S_IMODE(own.st_mode) | stat.S_ISGID)


class Root:
    """A directory fd and in-root resolution of parent components."""

    def __init__(self, path: str | os.PathLike, lowers: list | None = None):
        self.path = os.fspath(path)
        self.fd = os.open(self.path, _DIR_FLAGS)
        # overlay parents (nearest first): a directory this layer creates only implicitly
        # takes its mode, owner and times from them, so the merged view keeps them
        self.lowers = [os.fspath(p) for p in lowers or []]
        # every directory made implicitly: (path components, inode, inherited times or None)
        self.implicit: list[tuple[list[str], int, tuple[int, int] | None]] = []
        # resolved directories of this layer, by the path asked for: valid until
        # something is removed or replaced (which is when invalidate() is called)
        self._cache: dict[tuple[str, ...], int] = {}

    def dir(self, parts: list[str], create: bool, name: str = "") -> int:
        """Like open_dir, but the fd is cached and owned by the Root (do not close it)."""
        key = tuple(parts)
        fd = self._cache.get(key)
        if fd is None:
            if len(self._cache) >= 512:
                self.invalidate()
            fd = self.open_dir(parts, create, name)
            self._cache[key] = fd
        return fd

    def invalidate(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()

    def _mkdir_implicit(self, cur: int, comp: str, names: list[str]) -> None:
        st = lower_dir_stat(self.lowers, [*names, comp]) if self.lowers else None
        if st is None:
            os.mkdir(comp, 0o755, dir_fd=cur)
            times = None
        else:
            os.mkdir(comp, 0o700, dir_fd=cur)
            os.chown(comp, st.st_uid, st.st_gid, dir_fd=cur, follow_symlinks=False)
            os.chmod(comp, stat.S_IMODE(st.st_mode), dir_fd=cur)
            times = (st.st_atime_ns, st.st_mtime_ns)
        ino = os.stat(comp, dir_fd=cur, follow_symlinks=False).st_ino
        self.implicit.append(([*names, comp], ino, times))

    def close(self) -> None:
        self.invalidate()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def open_dir(self, parts: list[str], create: bool, name: str = "") -> int:
        """Open the directory ``parts`` (resolving symlinks inside the root).

        Missing components are created (mode 0755) when ``create``."""
        stack = [os.dup(self.fd)]
        names: list[str] = []
        pending = list(parts)
        links = 0
        try:
            while pending:
                comp = pending.pop(0)
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                        names.pop()
                    continue
                cur = stack[-1]
                try:
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        raise UnpackError(f"invalid tar entry {name!r}: {comp!r} does not exist")
                    self._mkdir_implicit(cur, comp, names)
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > 40:
                        raise UnpackError(f"invalid tar entry {name!r}: too many levels of "
                                          "symbolic links")
                    target = os.readlink(comp, dir_fd=cur)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                            names.pop()
                    pending = [p for p in target.split("/") if p] + pending
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise UnpackError(f"invalid tar entry {name!r}: {comp!r} is not a directory")
                stack.append(os.open(comp, _DIR_FLAGS, dir_fd=cur))
                names.append(comp)
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)


def _remove(dfd: int, base: str, root: "Root | None" = None) -> None:
    try:
        st = os.stat(base, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if root is not None and (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        root.invalidate()   # cached directory fds may point into what goes away
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(base, dir_fd=dfd)
    else:
        os.unlink(base, dir_fd=dfd)


# -- extraction ------------------------------------------------------------------------

def _direct_content(tf: tarfile.TarFile, m: tarfile.TarInfo, ahead: "ReadAhead | None"):
    """The content of regular member ``m`` of stream-mode ``tf`` read from ``ahead``
    (the stream under ``tf``) in views of its chunks, without tarfile's copies; None
    where tarfile's stream is not in the state this relies on (then use
    ``tf.extractfile``). tarfile's position is moved past the content, so its next
    header read skips only the padding."""
    s = tf.fileobj
    if ahead is None or m.sparse is not None or getattr(s, "comptype", None) != "tar" \
            or getattr(s, "fileobj", None) is not ahead or not isinstance(getattr(s, "buf", None), bytes) \
            or getattr(s, "pos", None) != m.offset_data:
        return None

    def gen():
        left = m.size
        if s.buf:
            head, s.buf = s.buf[:left], s.buf[left:]
            s.pos += len(head)
            left -= len(head)
            if head:
                yield head
        while left > 0:
            b = ahead.read_view(min(CHUNK, left))
            if not b:
                raise UnpackError(f"invalid tar stream: unexpected EOF in {m.name!r}")
            s.pos += len(b)
            left -= len(b)
            yield b
    return gen()


class _Extractor:
    def __init__(self, root: Root, whiteout: str, ahead: "ReadAhead | None" = None):
        self.ahead = ahead        # the stream under the tarfile, for _direct_content
        self.root = root
        self.whiteout = whiteout
        self.written: set[str] = set()
        self.dirs: list[tuple[list[str], int, int]] = []
        self.explicit: set[int] = set()     # inodes of directories the layer names
        self.size = 0

    def apply(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = clean_name(m.name)
        if not parts:
            # the root itself ("./"): keep its metadata for the end
            if m.isdir():
                fd = os.dup(self.root.fd)
                try:
                    self._meta_fd(fd, m)
                finally:
                    os.close(fd)
                self.dirs.append(([], *_times(m)))
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, m)
            return
        dfd = self.root.dir(parts[:-1], create=True, name=m.name)
        self._entry(tf, m, parts, dfd, base)
        self.written.add("/".join(parts))

    def _entry(self, tf, m, parts, dfd, base) -> None:
        try:
            existing = os.stat(base, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (m.isdir() and stat.S_ISDIR(existing.st_mode)):
            # keep dfd usable: it is cached, so take our own reference first
            dfd = os.dup(dfd)
            try:
                _remove(dfd, base, self.root)
                existing = None
                self._entry_new(tf, m, parts, dfd, base, None)
            finally:
                os.close(dfd)
            return
        self._entry_new(tf, m, parts, dfd, base, existing)

    def _entry_new(self, tf, m, parts, dfd, base, existing) -> None:
        mode = m.mode & 0o7777
        if m.isdir():
            if existing is None:
                os.mkdir(base, 0o700, dir_fd=dfd)
            fd = os.open(base, _DIR_FLAGS, dir_fd=dfd)
            try:
                self._meta_fd(fd, m)
                self.explicit.add(os.fstat(fd).st_ino)
            finally:
                os.close(fd)
            self.dirs.append((parts, *_times(m)))
            return
        if m.islnk():
            tparts = clean_name(m.linkname.lstrip("/"), "hardlink target")
            if not tparts:
                raise UnpackError(f"invalid tar entry {m.name!r}: hardlink to the root")
            try:
                tfd = self.root.open_dir(tparts[:-1], create=False, name=m.linkname)
            except UnpackError as e:
                raise UnpackError(f"invalid tar entry {m.name!r}: hardlink target "
                                  f"{m.linkname!r} cannot be resolved in the layer ({e})") from None
            try:
                try:
                    tst = os.stat(tparts[-1], dir_fd=tfd, follow_symlinks=False)
                except FileNotFoundError:
                    raise UnpackError(f"invalid tar entry {m.name!r}: hardlink target "
                                      f"{m.linkname!r} not found") from None
                if stat.S_ISDIR(tst.st_mode):
                    raise UnpackError(f"invalid tar entry {m.name!r}: hardlink to a directory")
                os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False)
            finally:
                os.close(tfd)
            return
        if m.issym():
            os.symlink(m.linkname, base, dir_fd=dfd)
            os.chown(base, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
            self._xattrs(f"/proc/self/fd/{dfd}/{base}", m, follow=False)
            os.utime(base, ns=_times(m), dir_fd=dfd, follow_symlinks=False)
            self.size += len(os.fsencode(m.linkname))
            return
        if m.isreg() or m.type == tarfile.CONTTYPE:
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)
            try:
                direct = _direct_content(tf, m, self.ahead)
                if direct is not None:
                    for b in direct:
                        _write_all(fd, b)
                else:
                    src = tf.extractfile(m)
                    left = m.size
                    while left > 0:
                        b = src.read(min(CHUNK, left))
                        if not b:
                            raise UnpackError(f"invalid tar stream: unexpected EOF in {m.name!r}")
                        _write_all(fd, b)
                        left -= len(b)
                self._meta_fd(fd, m)
                os.utime(fd, ns=_times(m))
            finally:
                os.close(fd)
            self.size += m.size
            return
        if m.ischr() or m.isblk() or m.isfifo():
            if m.isfifo():
                os.mkfifo(base, 0o600, dir_fd=dfd)
            else:
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=dfd)
            # a node we just created in our private tree: opening it could block (fifo)
            # or touch a device, so set metadata by name, the name being known safe
            os.chown(base, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
            os.chmod(base, mode, dir_fd=dfd)
            self._xattrs(f"/proc/self/fd/{dfd}/{base}", m, follow=False)
            os.utime(base, ns=_times(m), dir_fd=dfd, follow_symlinks=False)
            return
        raise UnpackError(f"invalid tar entry {m.name!r}: unsupported type {m.type!r}")

    def _meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        # chown first: it clears setuid bits and file capabilities
        os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        self._xattrs(fd, m, follow=True)

    def _xattrs(self, target, m: tarfile.TarInfo, follow: bool) -> None:
        for k, v in (m.pax_headers or {}).items():
            if not k.startswith("SCHILY.xattr."):
                continue
            name = k[len("SCHILY.xattr."):]
            if name.startswith("trusted.overlay."):
                continue  # overlayfs' own metadata must not come from a layer
            value = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as e:
                if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    continue
                raise

    def _whiteout(self, parts: list[str], m: tarfile.TarInfo) -> None:
        base = parts[-1]
        dfd = os.dup(self.root.dir(parts[:-1], create=True, name=m.name))
        try:
            if base == WHITEOUT_OPAQUE:
                if self.whiteout == "overlay":
                    os.setxattr(dfd, OPAQUE_XATTR, b"y")
                else:
                    prefix = "/".join(parts[:-1])
                    for child in os.listdir(dfd):
                        path = f"{prefix}/{child}" if prefix else child
                        if path not in self.written:
                            _remove(dfd, child, self.root)
                return
            if base.startswith(WHITEOUT_META_PREFIX):
                return  # aufs metadata (.wh..wh.plnk, ...): nothing to apply
            name = base[len(WHITEOUT_PREFIX):]
            if name in ("", ".", "..") or "/" in name:
                raise UnpackError(f"invalid tar entry {m.name!r}: bad whiteout")
            _remove(dfd, name, self.root)
            if self.whiteout == "overlay":
                os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=dfd)
                os.chown(name, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
        finally:
            os.close(dfd)

    def implicit_dirs(self) -> list[str]:
        """Directories made only implicitly (an entry of the layer named them later
        gets its own metadata), in the order they were made."""
        return ["/".join(parts) for parts, ino, _ in self.root.implicit
                if ino not in self.explicit]

    def finish(self) -> None:
        inherited = [(parts, *times) for parts, ino, times in self.root.implicit
                     if times is not None and ino not in self.explicit]
        for parts, atime, mtime in reversed(inherited + self.dirs):
            try:
                if not parts:
                    os.utime(self.root.fd, ns=(atime, mtime))
                    continue
                dfd = self.root.open_dir(parts[:-1], create=False)
            except (UnpackError, OSError):
                continue
            try:
                os.utime(parts[-1], ns=(atime, mtime), dir_fd=dfd, follow_symlinks=False)
            except OSError:
                pass
            finally:
                os.close(dfd)


def _write_all(fd: int, b: bytes) -> None:
    mv = memoryview(b)
    while mv:
        n = os.write(fd, mv)
        mv = mv[n:]


def _times(m: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(float(m.mtime) * 1e9)
    atime = mtime
    at = (m.pax_headers or {}).get("atime")
    if at:
        try:
            atime = max(int(float(at) * 1e9), mtime)
        except ValueError:
            pass
    return atime, mtime


def extract_into(stream: BinaryIO, dir_fd: int) -> int:
    """Extract the plain tar read from ``stream`` into the directory ``dir_fd`` (a
    builder's ``ADD`` of a local archive) with the checks :func:`apply_layer` makes:
    names resolved from ``dir_fd`` as if it were the root (nothing written outside it,
    symlinks met in parents resolved inside it), ``..`` and absolute names refused,
    owners and modes from the archive. Whiteout names delete what they name (inside the
    directory only). Returns the bytes of content written."""
    root = Root.__new__(Root)
    root.path, root.fd, root.lowers, root.implicit, root._cache = "", os.dup(dir_fd), [], [], {}
    ex = _Extractor(root, "delete")
    try:
        for tf, m in iter_tar(stream):
            try:
                ex.apply(tf, m)
            except OSError as e:
                raise UnpackError(f"cannot extract {m.name!r}: {e.strerror or e}") from None
        ex.finish()
    finally:
        root.close()
    return ex.size


def apply_layer(stream: BinaryIO, target: str | os.PathLike, *, whiteout: str = "overlay",
                expected_diff_id: str | None = None, expected_digest: str | None = None,
                tee: Callable[[bytes], object] | None = None,
                lowers: list | None = None, digest: bool = True) -> LayerResult:
    """Apply the layer tar read from ``stream`` into directory ``target``.

    ``tee`` receives the uncompressed tar bytes as they are read (to store the layer
    at the same time). ``lowers`` (overlay mode): the parent layers' directories, nearest
    first, whose directory metadata implicit parents inherit (or leave them out and call
    :func:`inherit_implicit` once the parents are there). ``digest=False`` skips hashing a
    compressed stream (the caller verified the blob). Digest mismatches and unsafe or
    malformed entries raise UnpackError; ``target`` is then partly written and must be
    discarded."""
    if whiteout not in ("overlay", "delete"):
        raise ValueError(whiteout)
    raw = HashingReader(stream, hashing=False)
    # with the diffID to check, gzip's CRC-32 adds nothing
    dec, comp = decompressed(raw, check=not expected_diff_id)
    if comp == "none" or digest or expected_digest:
        raw.hash = hashlib.sha256()
    if comp == "none":
        raw.tee = tee     # one hash serves as digest and diffID
        plain = raw
    else:
        plain = HashingReader(dec, tee=tee)
    ahead = ReadAhead(plain)
    root = Root(target, lowers if whiteout == "overlay" else None)
    ex = _Extractor(root, whiteout, ahead)
    try:
        for tf, m in iter_tar(ahead):
            try:
                ex.apply(tf, m)
            except UnpackError:
                raise
            except OSError as e:
                if _is_decompress_error(e) or isinstance(e, EOFError):
                    raise _stream_error(e) from None
                raise UnpackError(f"failed to apply layer entry {m.name!r}: {e.strerror or e}") \
                    from None
            except _STREAM_ERRORS as e:
                raise _stream_error(e) from None
        try:
            while ahead.read(CHUNK):
                pass
            raw.drain()
        except _STREAM_ERRORS as e:
            raise _stream_error(e) from None
        except Exception as e:
            if _is_decompress_error(e):
                raise _stream_error(e) from None
            raise
        ex.finish()
    finally:
        ahead.close()
        root.close()
    diff_id, digest = plain.digest(), raw.digest()
    if expected_diff_id and diff_id != expected_diff_id:
        raise UnpackError(f"layer diffID mismatch: got {diff_id}, expected {expected_diff_id}")
    if expected_digest and digest != expected_digest:
        raise UnpackError(f"layer digest mismatch: got {digest}, expected {expected_digest}")
    return LayerResult(diff_id, digest, ex.size, plain.count, raw.count, comp,
                       tuple(ex.implicit_dirs()))


def digest_layer(stream: BinaryIO) -> tuple[str, str, int]:
    """(diff_id, digest, tar_size) of a layer blob without applying it."""
    raw = HashingReader(stream)
    dec, comp = decompressed(raw)
    plain = raw if comp == "none" else HashingReader(dec)
    try:
        plain.drain()
        raw.drain()
    except _STREAM_ERRORS as e:
        raise _stream_error(e) from None
    except Exception as e:
        if _is_decompress_error(e):
            raise _stream_error(e) from None
        raise
    return plain.digest(), raw.digest(), plain.count
