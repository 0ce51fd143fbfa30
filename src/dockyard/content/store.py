"""Content-addressed blob store with resumable ingests.

Layout under ``<root>/content``::

    blobs/sha256/<hex>        committed, immutable, verified blobs
    ingest/<h>/ref            the ingest's ref (h = sha256 of the ref)
    ingest/<h>/data           bytes written so far
    ingest/<h>/started        creation time (for sweeping)

A write in progress is known only by its ref and is invisible to readers. On
``commit(size, expected)`` the data is fsynced, verified and atomically renamed
into ``blobs/``. A crash leaves an ingest behind: reopening the same ref resumes
it (``offset`` = bytes already written) and :meth:`ContentStore.sweep` removes
stale ones. A blob is never visible half-written. A writer opened with
``direct=True`` writes with O_DIRECT (whole 4 KiB units from a page-aligned staging
buffer, the unaligned tail buffered on close or commit; buffered throughout where the
file system refuses O_DIRECT): its bytes do not fill the page cache.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from dockyard import statefiles
from dockyard.errors import Conflict, InvalidParameter, NotFound

DIGEST_RE = re.compile(r"^sha256:([a-f0-9]{64})$")
CHUNK = 1 << 20
DIRECT_ALIGN = 4096         # O_DIRECT: offsets, lengths and buffer addresses in these units
DIRECT_STAGING = 4 << 20    # bytes gathered (page-aligned buffer) before one O_DIRECT write


def parse_digest(digest: str) -> str:
    """Return the hex part of a sha256 digest, or raise InvalidParameter."""
    m = DIGEST_RE.match(digest or "")
    if not m:
        raise InvalidParameter(f"invalid digest {digest!r}: only sha256:<64 hex> is supported")
    return m.group(1)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Info:
    digest: str
    size: int
    created: float


@dataclass(frozen=True)
class IngestStatus:
    ref: str
    offset: int
    started: float
    updated: float


class Writer:
    """An open ingest. Write bytes, then ``commit``; or ``close`` to resume later."""

    def __init__(self, store: "ContentStore", ref: str, dirpath: Path, direct: bool = False):
        self._store = store
        self.ref = ref
        self._dir = dirpath
        self._data = dirpath / "data"
        self._hash = hashlib.sha256()
        self._f = open(statefiles.create(self._data, os.O_RDWR | os.O_APPEND), "ab+")
        # resume: re-hash what is already there
        self._f.seek(0)
        while True:
            b = self._f.read(CHUNK)
            if not b:
                break
            self._hash.update(b)
        self.offset = self._f.tell()
        self._closed = False
        self._direct: _DirectSink | None = None
        if direct:
            self._direct = _DirectSink.open(self._data, self.offset)

    @property
    def flushed(self) -> int:
        """Bytes in the ingest file (after :meth:`flush`: all but at most a direct
        writer's unaligned tail, written on :meth:`close` or :meth:`commit`)."""
        return self.offset - (self._direct.fill if self._direct is not None else 0)

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write to a closed ingest")
        if self._direct is not None:
            self._direct_write(data)
        else:
            self._f.write(data)
        self._hash.update(data)
        self.offset += len(data)
        return len(data)

    def _direct_write(self, data: bytes) -> None:
        d = self._direct
        try:
            d.write(data)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            # the file system refuses O_DIRECT writes after all: buffered from here
            self._f.write(d.take_pending())
            self._f.write(data[d.consumed:])
            d.close()
            self._direct = None

    def _direct_drain(self, final: bool) -> None:
        """Write the staged bytes: the aligned part with O_DIRECT; with ``final`` the
        unaligned tail too (buffered), ending direct writing."""
        d = self._direct
        if d is None:
            return
        try:
            d.flush_aligned()
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            self._f.write(d.take_pending())
            d.close()
            self._direct = None
            return
        if final:
            self._f.write(d.take_pending())
            d.close()
            self._direct = None

    def flush(self) -> None:
        """Make what was written visible to readers of :meth:`ContentStore.ingest_path`
        (up to :attr:`flushed`)."""
        self._direct_drain(final=False)
        self._f.flush()

    def copy_from(self, src: BinaryIO, limit: int | None = None) -> int:
        """Copy ``src`` (up to ``limit`` bytes) into the ingest; return bytes copied."""
        n = 0
        while limit is None or n < limit:
            want = CHUNK if limit is None else min(CHUNK, limit - n)
            b = src.read(want)
            if not b:
                break
            self.write(b)
            n += len(b)
        return n

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def truncate(self, size: int = 0) -> None:
        """Restart the ingest at ``size`` bytes (only 0 is cheap: rehash otherwise)."""
        direct = self._direct is not None
        if direct:
            self._direct.close()
            self._direct = None
        self._f.truncate(size)
        self._f.seek(0)
        self._hash = hashlib.sha256()
        n = 0
        while n < size:
            b = self._f.read(min(CHUNK, size - n))
            if not b:
                break
            self._hash.update(b)
            n += len(b)
        self._f.seek(0, os.SEEK_END)
        self.offset = n
        if direct:
            self._direct = _DirectSink.open(self._data, n)

    def commit(self, size: int | None = None, expected: str | None = None) -> str:
        """Verify and publish the blob; return its digest. The ingest is gone afterwards.

        On a size or digest mismatch the ingest is discarded and InvalidParameter raised:
        nothing is stored.
        """
        if self._closed:
            raise ValueError("commit of a closed ingest")
        try:
            self._direct_drain(final=True)
            self._f.flush()
            os.fsync(self._f.fileno())
        except BaseException:
            self.close()
            raise
        self._f.close()
        self._closed = True
        actual = self.digest()
        try:
            if size is not None and size != self.offset:
                raise InvalidParameter(
                    f"commit failed: unexpected size {self.offset}, expected {size} ({self.ref})")
            if expected is not None and expected != actual:
                raise InvalidParameter(
                    f"commit failed: unexpected commit digest {actual}, expected {expected} ({self.ref})")
        except InvalidParameter:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        target = self._store._blob_path(actual)
        if target.exists():
            shutil.rmtree(self._dir, ignore_errors=True)
            return actual
        statefiles.makedirs(target.parent)
        os.chmod(self._data, 0o400)
        os.rename(self._data, target)
        _fsync_dir(target.parent)
        shutil.rmtree(self._dir, ignore_errors=True)
        return actual

    def close(self) -> None:
        """Stop writing but keep the ingest for a later resume."""
        if not self._closed:
            self._closed = True
            try:
                self._direct_drain(final=True)
                self._f.flush()
            finally:
                if self._direct is not None:
                    self._direct.close()
                    self._direct = None
                self._f.close()

    def abort(self) -> None:
        """Discard the ingest."""
        self.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


class _DirectSink:
    """Appends to a file with ``O_DIRECT`` (no page cache) through a page-aligned
    staging buffer: whole :data:`DIRECT_ALIGN` units go out with O_DIRECT, the
    unaligned rest (``take_pending``) is for the caller to write buffered."""

    def __init__(self, fd: int, pos: int):
        self.fd = fd
        self.pos = pos                  # file offset of the staging buffer's first byte
        self.buf = mmap.mmap(-1, DIRECT_STAGING)
        self.view = memoryview(self.buf)
        self.fill = 0
        self.consumed = 0               # bytes of the last write() taken (for a fallback)

    @classmethod
    def open(cls, path: Path, offset: int) -> "_DirectSink | None":
        """A sink appending at ``offset`` (None: no O_DIRECT here, or the file does not
        end on an aligned offset: a resumed ingest stays buffered)."""
        flag = getattr(os, "O_DIRECT", 0)
        if not flag or offset % DIRECT_ALIGN:
            return None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | flag)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return None
            raise
        return cls(fd, offset)

    def write(self, data) -> None:
        mv = memoryview(data)
        self.consumed = 0
        while self.consumed < len(mv):
            take = min(DIRECT_STAGING - self.fill, len(mv) - self.consumed)
            self.view[self.fill:self.fill + take] = mv[self.consumed:self.consumed + take]
            self.fill += take
            self.consumed += take
            if self.fill == DIRECT_STAGING:
                self.flush_aligned()

    def flush_aligned(self) -> None:
        n = self.fill - self.fill % DIRECT_ALIGN
        done = 0
        try:
            while done < n:
                done += os.pwrite(self.fd, self.view[done:n], self.pos + done)
        finally:
            # what went out leaves the buffer (also when a write failed part way)
            rest = self.fill - done
            if done and rest:
                self.view[:rest] = self.view[done:self.fill]
            self.pos += done
            self.fill = rest

    def take_pending(self) -> bytes:
        """The staged bytes not written yet (the sink is then empty)."""
        out = bytes(self.view[:self.fill])
        self.pos += self.fill
        self.fill = 0
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.view.release()
            self.buf.close()


class ContentStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root) / "content"
        self.blobs = self.root / "blobs" / "sha256"
        self.ingest = self.root / "ingest"
        statefiles.makedirs(self.blobs)
        statefiles.makedirs(self.ingest)

    # -- reading ---------------------------------------------------------------------
    def _blob_path(self, digest: str) -> Path:
        return self.blobs / parse_digest(digest)

    def path(self, digest: str) -> Path:
        """Path of a committed blob (NotFound if absent). Never write to it."""
        p = self._blob_path(digest)
        if not p.exists():
            raise NotFound(f"content {digest}: not found")
        return p

    def exists(self, digest: str) -> bool:
        return self._blob_path(digest).exists()

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self._blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def info(self, digest: str) -> Info:
        try:
            st = os.stat(self._blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        return Info(digest, st.st_size, st.st_mtime)

    def list(self) -> Iterator[Info]:
        for name in os.listdir(self.blobs):
            if re.fullmatch(r"[a-f0-9]{64}", name):
                try:
                    st = os.stat(self.blobs / name)
                except FileNotFoundError:
                    continue
                yield Info("sha256:" + name, st.st_size, st.st_mtime)

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self._blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    # -- writing ---------------------------------------------------------------------
    def _ingest_dir(self, ref: str) -> Path:
        return self.ingest / hashlib.sha256(ref.encode()).hexdigest()

    def ingest_path(self, ref: str) -> Path:
        """The file an ingest's bytes grow in (to follow a download as it arrives; it
        is renamed into ``blobs/`` on commit). Never write to it."""
        return self._ingest_dir(ref) / "data"

    def writer(self, ref: str, direct: bool = False) -> Writer:
        """Open (or resume) the ingest known by ``ref``. ``direct``: write the bytes
        with O_DIRECT where the file system allows it (they then do not fill the page
        cache; for a writer whose reader gets them another way, a pull)."""
        if not ref:
            raise InvalidParameter("ingest ref must not be empty")
        d = self._ingest_dir(ref)
        try:
            d.mkdir(statefiles.DIR_MODE)
        except FileExistsError:
            if not (d / "ref").exists():
                statefiles.write(d / "ref", ref)
        else:
            try:
                statefiles.write(d / "ref", ref)
                statefiles.write(d / "started", repr(time.time()))
            except BaseException:   # a full disk: no empty ingest stays behind
                shutil.rmtree(d, ignore_errors=True)
                raise
        lock = d / "lock"
        with _OPEN_LOCK:
            if (str(self.root), ref) in _OPEN_REFS:
                raise Conflict(f"ref {ref} is locked: an ingest is in progress")
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
            except FileExistsError:
                holder = lock.read_text().strip()
                if holder.isdigit() and int(holder) != os.getpid() and _pid_alive(int(holder)):
                    raise Conflict(f"ref {ref} is locked: an ingest is in progress") from None
                lock.write_text(str(os.getpid()))
            _OPEN_REFS.add((str(self.root), ref))
        try:
            w = Writer(self, ref, d, direct)
        except BaseException:
            _release(str(self.root), ref, lock)
            raise
        return _LockedWriter(w, lock, str(self.root))

    def status(self, ref: str) -> IngestStatus:
        d = self._ingest_dir(ref)
        if not d.exists():
            raise NotFound(f"ingest {ref}: not found")
        return self._status(d)

    def _status(self, d: Path) -> IngestStatus:
        data = d / "data"
        try:
            st = os.stat(data)
            offset, updated = st.st_size, st.st_mtime
        except FileNotFoundError:
            offset, updated = 0, os.stat(d).st_mtime
        try:
            started = float((d / "started").read_text())
        except (OSError, ValueError):
            started = updated
        try:
            ref = (d / "ref").read_text()
        except OSError:
            ref = ""
        return IngestStatus(ref, offset, started, updated)

    def ingests(self) -> list[IngestStatus]:
        return [self._status(self.ingest / n) for n in sorted(os.listdir(self.ingest))]

    def abort(self, ref: str) -> None:
        shutil.rmtree(self._ingest_dir(ref), ignore_errors=True)

    def sweep(self, older_than: float = 0.0, prefixes: tuple[str, ...] | None = None) -> list[str]:
        """Remove ingests not updated for ``older_than`` seconds and not held by a live
        process (only those whose ref starts with one of ``prefixes``, if given).
        Returns the refs removed."""
        removed = []
        now = time.time()
        for n in os.listdir(self.ingest):
            if prefixes is not None:
                try:
                    if not (self.ingest / n / "ref").read_text().startswith(prefixes):
                        continue
                except OSError:
                    pass
            d = self.ingest / n
            lock = d / "lock"
            try:
                holder = lock.read_text().strip()
                if holder.isdigit() and _pid_alive(int(holder)) and int(holder) != os.getpid():
                    continue
            except OSError:
                pass
            st = self._status(d)
            if now - st.updated >= older_than:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(st.ref)
        return removed

    def write_blob(self, data: bytes | Iterable[bytes] | BinaryIO, expected: str | None = None,
                   size: int | None = None, ref: str | None = None) -> str:
        """Write a whole blob in one call; return its digest."""
        if isinstance(data, bytes):
            if expected is None:
                expected_now = "sha256:" + hashlib.sha256(data).hexdigest()
                if self.exists(expected_now):
                    return expected_now
            elif self.exists(expected):
                return expected
        ref = ref or f"write-{os.getpid()}-{time.monotonic_ns()}-{os.urandom(4).hex()}"
        w = self.writer(ref)
        try:
            w.truncate(0)
            if isinstance(data, bytes):
                w.write(data)
            elif hasattr(data, "read"):
                w.copy_from(data)
            else:
                for chunk in data:
                    w.write(chunk)
            return w.commit(size, expected)
        except BaseException:
            w.abort()
            raise


class _LockedWriter:
    """Writer wrapper that releases the ingest's lock file when done."""

    def __init__(self, w: Writer, lock: Path, root: str):
        self._w = w
        self._lock = lock
        self._root = root

    def __getattr__(self, name):
        return getattr(self._w, name)

    @property
    def offset(self) -> int:
        return self._w.offset

    def _unlock(self) -> None:
        _release(self._root, self._w.ref, self._lock)

    def commit(self, size: int | None = None, expected: str | None = None) -> str:
        try:
            return self._w.commit(size, expected)
        finally:
            self._unlock()

    def close(self) -> None:
        self._w.close()
        self._unlock()

    def abort(self) -> None:
        self._w.abort()
        _release(self._root, self._w.ref, None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


_OPEN_LOCK = threading.Lock()
_OPEN_REFS: set[tuple[str, str]] = set()   # ingests open in this process


def _release(root: str, ref: str, lock: Path | None) -> None:
    with _OPEN_LOCK:
        _OPEN_REFS.discard((root, ref))
        if lock is not None:
            try:
                os.unlink(lock)
            except FileNotFoundError:
                pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
