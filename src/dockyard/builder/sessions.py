"""Context sessions: a client that builds the same directory again sends only what changed.

The classic API sends the whole context with every build. A client that can (ours:
``dockyard build`` on a directory) first offers a manifest of the context — one
``[path, kind, mode, size, mtime_ns, link]`` per entry, stat data only — under a session
key of its choosing (``POST /build/session``), with the Dockerfile, its ignore files, the
build args and the target. The daemon plans the build on the manifest alone to learn which
files it reads (COPY/ADD sources, RUN --mount=type=bind sources: :func:`read_paths`; when
that cannot be told beforehand, all of them), compares those with what it kept of that key's
last build and answers the files it lacks, with a one-use token; the build
(``POST /build?contextsession=TOKEN``) then carries a tar of those files only (hashed as
always as they arrive). The build's spool is then another name (a hard link) for the kept
one, the sent files copied into room made at its end: the unchanged files stay where they
are, their digests taken from the kept index. Bytes in a kept spool never change once
written, so builds still reading it are not disturbed; when more than half of it would be
bytes no build reads any more, a new compact spool is written instead (the sent tar, then
each unchanged file's bytes copied from the kept spool with ``copy_file_range``). A file
counts as unchanged when kind, mode, size and mtime (ns) match, as BuildKit's file sync
decides; a file the build does not read and that was not kept is left out of the context.
After the build the new spool and index replace the kept ones (a few keys are kept, the
least recently used go; none survives a daemon restart).

An offer byte for byte the same as the key's last one (same base images) is neither parsed
nor planned again, and when the kept spool was made from it, nothing is missing and the
build takes the kept spool's entries as they are (a rebuild with no change costs a hash of
the offer); an offer of the same shape (paths, kinds, links, Dockerfile, args, target:
only modes, sizes or times changed) is parsed but not planned again.

The manifest is checked as a tar would be (relative paths without ``..``, nothing below a
file or symlink, files, directories and symlinks only); every file it names must come
either from the tar or from the kept spool, else the build is refused (the client then
sends everything).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from typing import Any

from dockyard.builder import context as bctx
from dockyard.errors import Conflict, InvalidParameter

KEEP = 8                 # keys kept
TOKEN_TTL = 120.0        # seconds between the offer and the build
MAX_ENTRIES = 1_000_000
MEMO_ENTRIES = 100_000   # a bigger context's offer and entries are not kept in memory
_KEY = re.compile(r"^[0-9a-f]{16,64}$")


class SessionContext(bctx.Context):
    """A context whose spool becomes its key's kept spool when it is closed."""

    def __init__(self, root: str, entries: dict, dockerfile: str, store: "SessionStore",
                 key: str, index: dict, stamp: str = "") -> None:
        super().__init__(root, entries, dockerfile)
        self._store, self._key, self._index = store, key, index
        self._stamp, self._all = stamp, entries     # (before .dockerignore)

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.keep(self._key, self.root, self._index, self._stamp, self._all)
        super().close()


class _Kept:
    """A key's kept spool: its ``index`` (path -> [mode, size, mtime_ns, "file", digest,
    offset]), the stamp of the offer's planning it was built from (:attr:`Offered.stamp`)
    and that build's entries (which a build of the same offer and planning takes as
    they are)."""
    __slots__ = ("spool", "index", "stamp", "entries")

    def __init__(self, spool: str, index: dict, stamp: str = "",
                 entries: dict | None = None) -> None:
        self.spool, self.index, self.stamp, self.entries = spool, index, stamp, entries


class Offered:
    """What planning made of a key's last offer: the offer's digest (an offer byte for
    byte the same is not even parsed again), its shape (:meth:`Offer.shape`: an offer of
    the same shape is not planned again), its manifest, the files the build reads and
    what that depended on outside the offer (the base images' IDs). ``stamp`` names this
    offer's planning: a kept spool made under the same stamp holds every file ``needed``
    names."""
    __slots__ = ("digest", "shape", "manifest", "needed", "bases", "stamp")

    def __init__(self, digest: str, shape: str, manifest: list, needed: set[str] | None,
                 bases: dict) -> None:
        self.digest, self.shape, self.manifest = digest, shape, manifest
        self.needed, self.bases = needed, bases
        self.stamp = f"{digest}.{uuid.uuid4().hex[:12]}"


def parse_manifest(raw) -> list[tuple[str, str, int, int, int, str]]:
    """The checked manifest, from JSON bytes or the decoded list."""
    if isinstance(raw, (bytes, bytearray, str)):
        try:
            items = json.loads(raw)
        except ValueError:
            raise InvalidParameter("context session: the manifest is not JSON") from None
    else:
        items = raw
    if not isinstance(items, list) or len(items) > MAX_ENTRIES:
        raise InvalidParameter("context session: the manifest must be a list of entries")
    out = []
    kinds: dict[str, str] = {"": "dir"}
    for it in items:
        if not (isinstance(it, list) and len(it) == 6 and isinstance(it[0], str)
                and it[1] in ("file", "dir", "symlink")
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                        for x in it[2:5]) and isinstance(it[5], str)):
            raise InvalidParameter(f"context session: bad manifest entry {str(it)[:100]}")
        parts = bctx._parts(it[0])
        if not parts:
            raise InvalidParameter(f"context session: entry {it[0]!r} is outside of the "
                                   "context")
        path = "/".join(parts)
        for k in range(1, len(parts)):
            parent = "/".join(parts[:k])
            if kinds.setdefault(parent, "dir") != "dir":
                raise InvalidParameter(f"context session: entry {path!r} is below a "
                                       f"{kinds[parent]}")
        if path in kinds and not (kinds[path] == "dir" and it[1] == "dir"):
            if path in {o[0] for o in out}:
                raise InvalidParameter(f"context session: entry {path!r} appears twice")
            if it[1] != "dir":
                raise InvalidParameter(f"context session: {path!r} has entries below it")
        kinds[path] = it[1]
        out.append((path, it[1], it[2] & 0o7777, it[3], it[4], it[5]))
    return out


class Offer:
    """A checked offer (``POST /build/session``'s body): the manifest, and what planning
    on it takes: the Dockerfile's name, the small files carried (the Dockerfile and its
    ignore files), build args, target; ``plan`` false: every file is needed."""
    __slots__ = ("manifest", "files", "dockerfile", "args", "target", "plan")

    def __init__(self, manifest: list, files: dict[str, bytes], dockerfile: str = "",
                 args: dict | None = None, target: str | None = None,
                 plan: bool = False) -> None:
        self.manifest, self.files, self.dockerfile = manifest, files, dockerfile
        self.args, self.target, self.plan = args or {}, target, plan

    def shape(self) -> str:
        """A digest of what planning reads of the offer: every entry's path, kind and link
        (not its mode, size or times), the files carried, the Dockerfile's name, build
        args, target. Which files a build reads depends on nothing else in it."""
        from hashlib import sha256
        h = sha256(json.dumps([self.dockerfile, self.args, self.target, self.plan,
                               sorted((k, sha256(v).hexdigest())
                                      for k, v in self.files.items())]).encode())
        h.update("\0".join(f"{m[0]}\0{m[1]}\0{m[5]}" for m in self.manifest)
                 .encode("utf-8", "surrogatepass"))
        return h.hexdigest()


def parse_offer(raw: bytes) -> Offer:
    """A list: the manifest alone; an object: the manifest, the Dockerfile's name, its
    build args and target and the small files to plan with (base64), so that only the
    files the build reads are asked for."""
    from dockyard import boundedjson
    try:
        body = boundedjson.loads(raw)
    except ValueError:
        raise InvalidParameter("context session: the body is not JSON") from None
    if not isinstance(body, dict):
        return Offer(parse_manifest(body), {})
    manifest = parse_manifest(body.get("Manifest"))
    files = _offer_files(body.get("Files"), {m[0] for m in manifest if m[1] == "file"})
    args = body.get("BuildArgs") or {}
    if not isinstance(args, dict) or not all(isinstance(v, (str, type(None)))
                                             for v in args.values()):
        raise InvalidParameter("context session: BuildArgs must map names to strings")
    return Offer(manifest, files, str(body.get("Dockerfile") or ""), args,
                 str(body.get("Target") or "") or None, bool(body.get("Plan", True)))


def _offer_files(files, names: set[str]) -> dict[str, bytes]:
    import base64
    out: dict[str, bytes] = {}
    if not isinstance(files, dict) or len(files) > 8:
        raise InvalidParameter("context session: Files must hold a few context files")
    for k, v in files.items():
        if k not in names or not isinstance(v, str):
            raise InvalidParameter(f"context session: {k!r} is not a file of the manifest")
        try:
            out[k] = base64.b64decode(v, validate=True)
        except ValueError:
            raise InvalidParameter(f"context session: {k!r} is not base64") from None
    return out


class SessionStore:
    def __init__(self, root: str) -> None:
        self.dir = root
        shutil.rmtree(root, ignore_errors=True)     # kept spools do not outlive the daemon
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.lock = threading.Lock()
        # token -> (key, manifest, needed, deadline, stamp of the offer's planning)
        self.pending: dict[str, tuple[str, list, set | None, float, str]] = {}
        self.kept: dict[str, _Kept] = {}
        self.offered: dict[str, Offered] = {}

    # -- the offer ----------------------------------------------------------------------
    def recall(self, key: str) -> Offered | None:
        """What planning made of ``key``'s last offer, if it is remembered."""
        if not _KEY.match(key or ""):
            raise InvalidParameter("context session: the key must be 16-64 hex digits")
        with self.lock:
            return self.offered.get(key)

    def remember(self, key: str, offered: Offered) -> None:
        if len(offered.manifest) > MEMO_ENTRIES:
            return
        with self.lock:
            self.offered.pop(key, None)
            self.offered[key] = offered
            while len(self.offered) > KEEP:
                del self.offered[next(iter(self.offered))]

    def offer(self, key: str, manifest: list, needed: set[str] | None = None,
              stamp: str = "") -> dict:
        """``needed``: the files the build reads (None: all of them); the others are
        neither asked for nor part of the build's context. ``stamp``: the offer's
        planning (:attr:`Offered.stamp`), if any."""
        if not _KEY.match(key or ""):
            raise InvalidParameter("context session: the key must be 16-64 hex digits")
        with self.lock:
            now = time.monotonic()
            for t in [t for t, (_, _, _, dl, _) in self.pending.items() if dl < now]:
                del self.pending[t]
            kept = self.kept.get(key)
            if kept is not None and stamp and kept.stamp == stamp:
                missing = []    # the kept spool was made from this very offer
            else:
                index = kept.index if kept is not None else {}
                missing = [m[0] for m in manifest if m[1] == "file"
                           and (needed is None or m[0] in needed)
                           and tuple(index.get(m[0], ())[:4]) != (m[2], m[3], m[4], "file")]
            token = uuid.uuid4().hex
            self.pending[token] = (key, manifest, needed, now + TOKEN_TTL, stamp)
        return {"Token": token, "Missing": missing}

    # -- the build's context --------------------------------------------------------------
    def receive(self, token: str, stream, root: str, dockerfile: str) -> SessionContext:
        with self.lock:
            key, manifest, needed, _, stamp = self.pending.pop(
                token, (None, None, None, 0.0, ""))
            kept = self.kept.get(key) if key else None
        if key is None:
            raise Conflict("context session expired or unknown: send the whole context")
        os.makedirs(root, mode=0o700)
        try:
            sent = bctx._unpack(stream, root)
            entries, new_index = self._merge(root, manifest, sent, kept, needed, stamp)
            ctx = SessionContext(root, entries, dockerfile or "Dockerfile", self, key,
                                 new_index, stamp)
            return bctx.apply_ignore(ctx)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    def _merge(self, root: str, manifest: list, sent: dict, kept: _Kept | None,
               needed: set[str] | None = None, stamp: str = "") -> tuple[dict, dict]:
        entries: dict[str, bctx.Entry] = {"": sent[""]}
        new_index: dict[str, list] = {}
        src_fd = -1
        out_path = os.path.join(root, bctx.SPOOL)
        spool, index = (kept.spool, kept.index) if kept is not None else ("", {})
        if spool and not any(e.kind == "file" for e in sent.values()) \
                and self._link_kept(spool, out_path):
            # nothing sent (a rebuild with no change): the kept spool is this context's
            # as it is (one more name for it; bytes in a kept spool never change), the
            # unchanged files at their old offsets, nothing copied
            if stamp and kept.stamp == stamp and kept.entries is not None:
                # the very offer the kept spool was made from: its entries as they were
                return dict(kept.entries), index
            return self._reuse(manifest, entries, new_index, index, needed)
        grown = self._grow_kept(root, manifest, sent, kept) if spool else None
        if grown is not None:
            # the kept spool with the sent files added at its end (one more name for it):
            # the unchanged files stay where they are, nothing of them is copied
            out_fd, tar_fd, end = grown
            copy_unchanged = False
        else:
            # a new spool: the sent tar, then each unchanged file copied from the kept one
            # (no O_APPEND: copy_file_range refuses such a target)
            out_fd = os.open(out_path, os.O_WRONLY | os.O_CLOEXEC)
            tar_fd, end = -1, os.lseek(out_fd, 0, os.SEEK_END)
            copy_unchanged = True
        try:
            for path, kind, mode, size, mtime_ns, link in manifest:
                mtime = mtime_ns / 1e9
                if _add_non_file(entries, path, kind, mode, link, mtime):
                    continue
                e = sent.get(path)
                if e is not None and e.kind == "file":
                    offset = e.offset
                    if tar_fd >= 0:     # into the room _grow_kept made for it
                        _copy(tar_fd, e.offset, out_fd, e.size, end)
                        offset, end = end, end + e.size
                    entries[path] = bctx.Entry(path, "file", mode, 0, 0, e.size, e.digest,
                                               offset, mtime)
                    new_index[path] = [mode, e.size, mtime_ns, "file", e.digest, offset]
                    continue
                old = _kept_record(index, needed, path, mode, size, mtime_ns)
                if old is None:
                    continue    # the build does not read it: not part of its context
                if not copy_unchanged:
                    entries[path] = bctx.Entry(path, "file", mode, 0, 0, size, old[4], old[5],
                                               mtime)
                    new_index[path] = [mode, size, mtime_ns, "file", old[4], old[5]]
                    continue
                if src_fd < 0:
                    try:
                        src_fd = os.open(spool, os.O_RDONLY | os.O_CLOEXEC)
                    except OSError:
                        raise Conflict("context session: the kept context went meanwhile: "
                                       "send the whole context") from None
                _copy(src_fd, old[5], out_fd, size)
                entries[path] = bctx.Entry(path, "file", mode, 0, 0, size, old[4], end, mtime)
                new_index[path] = [mode, size, mtime_ns, "file", old[4], end]
                end += size
        finally:
            os.close(out_fd)
            if src_fd >= 0:
                os.close(src_fd)
            if tar_fd >= 0:
                os.close(tar_fd)
        return entries, new_index

    def _grow_kept(self, root: str, manifest: list, sent: dict, kept: _Kept
                   ) -> tuple[int, int, int] | None:
        """Make the build's spool another name for the kept one with room at its end for
        the sent files the manifest names: (spool fd for writing, the sent tar's fd, where
        the room starts). Bytes already in a kept spool never change: builds reading it
        meanwhile are not disturbed, and concurrent growers get rooms of their own. None
        (nothing changed) when the kept spool went, or when it would then hold more bytes
        no build reads than bytes it reads (a new, compact spool is made instead)."""
        files = {m[0] for m in manifest if m[1] == "file"}
        room = sum(e.size for p, e in sent.items() if e.kind == "file" and p in files)
        live = sum(v[1] for p, v in kept.index.items() if p in files and p not in sent)
        try:
            size = os.stat(kept.spool).st_size
        except OSError:
            return None
        if size + room > 2 * (live + room) + (1 << 20):
            return None
        out_path = os.path.join(root, bctx.SPOOL)
        tar_path = os.path.join(root, "sent")
        os.rename(out_path, tar_path)
        try:
            os.link(kept.spool, out_path)
        except OSError:
            os.rename(tar_path, out_path)
            return None
        tar_fd = os.open(tar_path, os.O_RDONLY | os.O_CLOEXEC)
        os.unlink(tar_path)
        try:
            out_fd = os.open(out_path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            os.close(tar_fd)
            raise
        with self.lock:     # one room each, however many builds grow it at once
            end = os.fstat(out_fd).st_size
            os.ftruncate(out_fd, end + room)
        return out_fd, tar_fd, end

    @staticmethod
    def _link_kept(spool: str, out_path: str) -> bool:
        try:
            os.unlink(out_path)     # (the sent tar's own bytes: no file is in them)
        except OSError:
            return False
        try:
            os.link(spool, out_path)
            return True
        except OSError:
            # the kept spool went meanwhile, or cannot be linked: an empty spool again
            os.close(os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o600))
            return False

    @staticmethod
    def _reuse(manifest: list, entries: dict, new_index: dict, index: dict,
               needed: set[str] | None) -> tuple[dict, dict]:
        for path, kind, mode, size, mtime_ns, link in manifest:
            mtime = mtime_ns / 1e9
            if _add_non_file(entries, path, kind, mode, link, mtime):
                continue
            old = _kept_record(index, needed, path, mode, size, mtime_ns)
            if old is None:
                continue    # the build does not read it: not part of its context
            entries[path] = bctx.Entry(path, "file", mode, 0, 0, size, old[4], old[5], mtime)
            new_index[path] = list(old)
        return entries, new_index

    # -- after the build ----------------------------------------------------------------
    def keep(self, key: str, root: str, index: dict, stamp: str = "",
             entries: dict | None = None) -> None:
        """Take the build's spool as ``key``'s kept one (the old one goes)."""
        src = os.path.join(root, bctx.SPOOL)
        dst = os.path.join(self.dir, f"{key}-{uuid.uuid4().hex[:8]}.spool")
        try:
            os.rename(src, dst)
        except OSError:
            return
        with self.lock:
            old = self.kept.pop(key, None)
            if entries is not None and len(entries) > MEMO_ENTRIES:
                entries = None
            self.kept[key] = _Kept(dst, index, stamp, entries)
            drop = [old.spool] if old else []
            while len(self.kept) > KEEP:
                k = next(iter(self.kept))
                drop.append(self.kept.pop(k).spool)
        for p in drop:
            try:
                os.unlink(p)    # a build still copying from it holds it open
            except OSError:
                pass

    def sync(self) -> None:
        """Forget kept spools that were removed (``POST /build/prune``)."""
        with self.lock:
            for k in [k for k, v in self.kept.items() if not os.path.exists(v.spool)]:
                del self.kept[k]

    def clear(self) -> int:
        """Forget every kept spool (build cache prune --all); the bytes freed."""
        with self.lock:
            spools = [v.spool for v in self.kept.values()]
            self.kept.clear()
        freed = 0
        for p in spools:
            try:
                freed += os.stat(p).st_size
                os.unlink(p)
            except OSError:
                pass
        return freed


def spool_usage(directory: str) -> list[dict]:
    """The kept spools on disk (``system df``'s ``source.local`` records): {"Name",
    "Size", "CreatedAt", "LastUsedAt"}."""
    out = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return out
    for n in names:
        if not n.endswith(".spool"):
            continue
        try:
            st = os.lstat(os.path.join(directory, n))
        except OSError:
            continue
        out.append({"Name": n, "Size": st.st_blocks * 512, "CreatedAt": st.st_mtime,
                    "LastUsedAt": max(st.st_ctime, st.st_mtime)})
    return out


def remove_spool(directory: str, name: str) -> int | None:
    """Remove one kept spool (``spool_usage``'s ``Name``): the bytes freed, or None."""
    if "/" in name or not name.endswith(".spool") or name.startswith("."):
        return None
    p = os.path.join(directory, name)
    try:
        size = os.lstat(p).st_blocks * 512
        os.unlink(p)    # a build still copying from it holds it open
    except OSError:
        return None
    return size


def probe_context(root: str, manifest: list, files: dict[str, bytes],
                  dockerfile: str) -> bctx.Context:
    """A context made of the manifest alone (no content) but for ``files`` (the Dockerfile
    and ignore files the offer carries), to plan which files a build reads."""
    os.makedirs(root, mode=0o700)
    entries: dict[str, bctx.Entry] = {"": bctx.Entry("", "dir", 0o755, 0, 0, 0, "")}
    with open(os.path.join(root, bctx.SPOOL), "wb") as spool:
        for path, kind, mode, size, mtime_ns, link in manifest:
            for k in range(1, path.count("/") + 1):
                parent = path.rsplit("/", k)[0]
                if parent in entries:
                    break       # (and so are its own parents)
                entries[parent] = bctx.Entry(parent, "dir", 0o755, 0, 0, 0, "")
            if kind == "dir":
                entries[path] = bctx.Entry(path, "dir", mode, 0, 0, 0, "")
            elif kind == "symlink":
                entries[path] = bctx.Entry(path, "symlink", 0o777, 0, 0, 0, link)
            elif path in files:
                data = files[path]
                entries[path] = bctx.Entry(path, "file", mode, 0, 0, len(data), "probe",
                                           spool.tell())
                spool.write(data)
            else:
                entries[path] = bctx.Entry(path, "file", mode, 0, 0, size, "probe:" + path)
    return bctx.apply_ignore(bctx.Context(root, entries, dockerfile or "Dockerfile"))


def read_paths(plan: Any, ctx: bctx.Context) -> set[str]:
    """The context files a plan reads: COPY/ADD sources (all below a directory) and
    RUN --mount=type=bind sources from the context."""
    out: set[str] = set()

    def take(e: bctx.Entry | None) -> None:
        if e is None:
            return
        out.add(e.path)
        if e.kind == "dir":
            out.update(sub.path for sub in ctx.below(e.path))

    for stage in plan.stages:
        for step in stage.steps:
            cp = step.copy
            if cp is not None and cp.from_stage is None and not cp.from_image:
                for it in cp.items:
                    take(ctx.entries.get(it.source))
            run = step.run
            for m in (run.mounts if run is not None else ()):
                if m.type == "bind" and not m.from_:
                    take(ctx.resolve(bctx.normalize(m.source)))
    return out


def _copy(src_fd: int, offset: int, dst_fd: int, size: int, at: int | None = None) -> None:
    """``size`` bytes at ``offset`` of ``src_fd`` to ``dst_fd``: at its position, or at
    offset ``at``."""
    left, pos = size, offset
    while left > 0:
        try:
            n = os.copy_file_range(src_fd, dst_fd, left, pos, at)
        except OSError:
            n = 0
        if n <= 0:      # not supported here, or a short file: plain reads
            data = os.pread(src_fd, min(left, 1 << 20), pos)
            if not data:
                raise Conflict("context session: the kept context is cut short: send the "
                               "whole context")
            n = os.write(dst_fd, data) if at is None else os.pwrite(dst_fd, data, at)
        left -= n
        pos += n
        if at is not None:
            at += n


def _add_non_file(entries: dict, path: str, kind: str, mode: int, link: str,
                  mtime: float) -> bool:
    """A manifest's directory or symlink becomes its entry (no bytes travel for it);
    False for a file."""
    if kind == "dir":
        entries[path] = bctx.Entry(path, "dir", mode, 0, 0, 0, "", mtime=mtime)
        return True
    if kind == "symlink":
        entries[path] = bctx.Entry(path, "symlink", 0o777, 0, 0, 0, link, mtime=mtime)
        return True
    return False


def _kept_record(index: dict, needed: set[str] | None, path: str, mode: int, size: int,
                 mtime_ns: int) -> list | None:
    """The kept spool's record of a file that was not sent: it must be unchanged. None
    when it is not and the build does not read it; Conflict when it does."""
    old = index.get(path)
    if old is None or tuple(old[:4]) != (mode, size, mtime_ns, "file"):
        if needed is not None and path not in needed:
            return None
        raise Conflict(f"context session: {path} was neither sent nor kept: "
                       "send the whole context")
    return old
