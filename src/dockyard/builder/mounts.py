"""``RUN --mount`` made real for one RUN container (blocking parts run in threads).

* ``type=cache``: a directory kept between builds under ``<data-root>/builder/cache``
  (owner-only), one per ``id``: ``<sha256(id)>/data`` is what is mounted, made with the
  mount's uid/gid/mode the first time. Sharing by ``flock`` on ``<dir>/lock``: ``shared``
  takes it shared, ``locked`` exclusive (waiting), ``private`` exclusive without waiting
  and, when it is busy, a fresh directory thrown away after the step. :func:`cache_usage`
  and :func:`prune_cache` are for ``/build/prune`` and ``system df`` (busy ones are kept).
* ``type=bind``: from the context, the source is written (through the fd-based copier)
  into a private directory under ``builder/tmp`` and that is bound (writes to a ``rw``
  one are thrown away, as BuildKit does); from a stage or an image, a snapshot of it is
  mounted (a read-only view, or a throw-away writable one for ``rw``), the source resolved
  inside it from the root's fd (no symlink followed out of it) and the node it names
  bind-mounted through ``/proc/self/fd`` onto a private mount point.
* ``type=tmpfs``: HostConfig Tmpfs (``size``).

All of it reaches the container as HostConfig ``Binds``/``Tmpfs`` of our own private host
paths; everything is undone when the step ends, and a crash leaves only mounts under
``builder/tmp``, which the next start detaches (``boot.sweep_tmp``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time
import uuid

from dockyard import errors


def cache_root(data_root) -> str:
    return os.path.join(os.fspath(data_root), "builder", "cache")


def _cache_dir(data_root, cache_id: str) -> str:
    return os.path.join(cache_root(data_root), hashlib.sha256(cache_id.encode()).hexdigest()[:32])


def cache_usage(data_root) -> list[dict]:
    """Every cache mount directory: {"ID", "Dir", "Target", "Size", "CreatedAt",
    "LastUsedAt" (unix), "UsageCount", "InUse"}."""
    root = cache_root(data_root)
    out = []
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    for name in names:
        d = os.path.join(root, name)
        meta = _meta(d)
        last = _mtime(os.path.join(d, "lock"))
        out.append({"ID": meta.get("id", name), "Dir": name, "Target": meta.get("target", ""),
                    "Size": _du(os.path.join(d, "data")),
                    "CreatedAt": float(meta.get("created") or last),
                    "LastUsedAt": last, "UsageCount": int(meta.get("uses") or 1),
                    "InUse": _busy(d)})
    return out


def _meta(d: str) -> dict:
    try:
        with open(os.path.join(d, "id"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def remove_cache(data_root, name: str) -> int | None:
    """Remove one cache mount directory (``cache_usage``'s ``Dir``) unless a build is
    using it: the bytes reclaimed, or None when it is busy or gone."""
    if not re.fullmatch(r"[0-9a-f]{32}", name):
        return None
    d = os.path.join(cache_root(data_root), name)
    fd = _lock_fd(d)
    if fd is None:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None    # a build is using it
        size = _du(os.path.join(d, "data"))
        shutil.rmtree(os.path.join(d, "data"), ignore_errors=True)
        for n in ("id", "lock"):
            try:
                os.unlink(os.path.join(d, n))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(d)
        except OSError:
            pass
        return size
    finally:
        os.close(fd)


def prune_cache(data_root, *, all: bool = True, older_than: float | None = None) -> int:
    """Remove cache mount directories no build is using (``older_than``: only those last
    used that many seconds ago or more). Returns the bytes reclaimed."""
    freed = 0
    now = time.time()
    for entry in cache_usage(data_root):
        if older_than is not None and now - entry["LastUsedAt"] < older_than:
            continue
        freed += remove_cache(data_root, entry["Dir"]) or 0
    return freed


def _du(path: str) -> int:
    total = 0
    for dp, dns, fns in os.walk(path):
        for n in fns + dns:
            try:
                total += os.lstat(os.path.join(dp, n)).st_blocks * 512
            except OSError:
                pass
    return total


def _mtime(path: str) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _lock_fd(d: str) -> int | None:
    try:
        return os.open(os.path.join(d, "lock"), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None


def _busy(d: str) -> bool:
    fd = _lock_fd(d)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class RunMounts:
    """The mounts of one RUN step; :meth:`setup` (blocking) gives the HostConfig
    additions, :meth:`close` (blocking) undoes everything."""

    def __init__(self, images, tmp_dir: str, data_root: str, mounts, ctx, results) -> None:
        self.images, self.tmp, self.data_root = images, tmp_dir, data_root
        self.mounts, self.ctx, self.results = mounts, ctx, results
        self.locks: list[int] = []
        self.dirs: list[str] = []          # private directories to remove
        self.binds_mounted: list[str] = []  # our bind mount points
        self.snapshots: list[tuple[str, str]] = []   # (key, mount path)

    def setup(self) -> dict:
        binds, tmpfs = [], {}
        try:
            for m in self.mounts:
                if m.type == "tmpfs":
                    tmpfs[m.target] = f"size={m.size}" if m.size else ""
                    continue
                src = self._cache(m) if m.type == "cache" else self._bind(m)
                binds.append(f"{src}:{m.target}:{'ro' if m.readonly else 'rw'}")
        except BaseException:
            self.close()
            raise
        out: dict = {}
        if binds:
            out["Binds"] = binds
        if tmpfs:
            out["Tmpfs"] = tmpfs
        return out

    # -- cache -------------------------------------------------------------------------
    def _cache(self, m) -> str:
        """The cache directory of ``m`` (locked as its sharing asks), made the first time:
        empty, or with ``from`` a copy of that stage's or image's ``source`` (BuildKit's
        base of a cache mount; a cache of its own per base)."""
        data, new = self._cache_dir(m)
        if new and (m.from_stage is not None or m.from_image):
            try:
                self._seed(data, m)
            except BaseException:
                shutil.rmtree(data, ignore_errors=True)   # seeded again next time
                raise
        return data

    def _seed(self, data: str, m) -> None:
        import dataclasses
        import posixpath
        from dockyard.builder import copier
        from dockyard.builder.planner import CopyItem, CopySpec
        image = self.results[m.from_stage] if m.from_stage is not None else m.from_image
        root = self._bind_image(dataclasses.replace(m, source="", readonly=True), image)
        src = posixpath.normpath("/" + (m.source or "/"))
        spec = CopySpec((CopyItem(src, "/", False, posixpath.basename(src)),), dest="/",
                        dest_dir=True)
        try:
            copier.copy(data, spec, None, root)
        except errors.NotFound:
            raise errors.NotFound(f"RUN --mount type=cache source {m.source}: not found in "
                                  f"{m.from_}") from None

    def _cache_dir(self, m) -> tuple[str, bool]:
        root = cache_root(self.data_root)
        os.makedirs(root, mode=0o700, exist_ok=True)
        ident = m.id
        if m.from_stage is not None or m.from_image:
            image = self.results[m.from_stage] if m.from_stage is not None else m.from_image
            ident = "\0".join((m.id, image, m.source))
        d = _cache_dir(self.data_root, ident)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        fd = os.open(os.path.join(d, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            if m.sharing == "shared":
                fcntl.flock(fd, fcntl.LOCK_SH)
            elif m.sharing == "locked":
                fcntl.flock(fd, fcntl.LOCK_EX)     # waits for the other builds
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    # private and busy: a directory of this step's own
                    os.close(fd)
                    fd = -1
                    own = os.path.join(self.tmp, "cache-" + uuid.uuid4().hex)
                    os.mkdir(own, 0o700)
                    self.dirs.append(own)
                    return self._data_dir(own, m)
            os.utime(fd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        self.locks.append(fd)
        meta = _meta(d)
        with open(os.path.join(d, "id.new"), "w", encoding="utf-8") as f:
            json.dump({"id": m.id, "target": m.target,
                       "created": meta.get("created") or time.time(),
                       "uses": int(meta.get("uses") or 0) + 1}, f)
        os.replace(os.path.join(d, "id.new"), os.path.join(d, "id"))
        return self._data_dir(d, m)

    @staticmethod
    def _data_dir(d: str, m) -> tuple[str, bool]:
        data = os.path.join(d, "data")
        try:
            os.mkdir(data, 0o700)
        except FileExistsError:
            return data, False
        os.chown(data, m.uid, m.gid)
        os.chmod(data, m.mode)
        return data, True

    # -- bind --------------------------------------------------------------------------
    def _private_dir(self, prefix: str) -> str:
        d = os.path.join(self.tmp, prefix + uuid.uuid4().hex)
        os.mkdir(d, 0o700)
        self.dirs.append(d)
        return d

    def _bind(self, m) -> str:
        if m.from_stage is None and not m.from_image:
            return self._bind_context(m)
        image = self.results[m.from_stage] if m.from_stage is not None else m.from_image
        return self._bind_image(m, image)

    def _bind_context(self, m) -> str:
        from dockyard.builder import context as bctx
        from dockyard.builder import copier
        from dockyard.builder.planner import CopyItem, CopySpec
        e = self.ctx.resolve(bctx.normalize(m.source)) if self.ctx is not None else None
        if e is None:
            raise errors.NotFound(f"RUN --mount source {m.source or '.'}: not in the build "
                                  "context")
        d = self._private_dir("bind-")
        spec = CopySpec((CopyItem(e.path, "/src", e.kind == "dir", "src"),), dest="/src")
        copier.copy(d, spec, self.ctx, None)
        return os.path.join(d, "src")

    def _bind_image(self, m, image: str) -> str:
        from dockyard.fsroot import nodes
        from dockyard.fsroot.resolve import resolve
        from dockyard.snapshots import mount
        key = self.images.BUILD_PREFIX + uuid.uuid4().hex
        path = os.path.join(self.tmp, "mnt-" + key[-32:])
        mounts = self.images.prepare_layer(image, key, view=m.readonly)
        self.snapshots.append((key, path))
        os.mkdir(path, 0o700)
        mount.mount_all(mounts, path)
        self.binds_mounted.append(path)
        if m.source in ("", "/", "."):
            return path
        rfd = nodes.open_root(path)
        try:
            try:
                r = resolve(rfd, m.source, follow_last=True)
            except OSError:
                r = None
            if r is None or r.st is None:
                if r is not None:
                    r.close()
                raise errors.NotFound(f"RUN --mount source {m.source}: not found in the "
                                      "mounted stage or image")
            try:
                node = nodes.open_resolved(r)
            finally:
                r.close()
            if node is None:
                raise errors.NotFound(f"RUN --mount source {m.source}: not found")
            with node:
                d = self._private_dir("bindpt-")
                point = os.path.join(d, "p")
                if stat.S_ISDIR(node.st.st_mode):
                    os.mkdir(point, 0o700)
                else:
                    os.close(os.open(point, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                     | os.O_CLOEXEC, 0o600))
                mount.mount_one({"type": "bind", "source": f"/proc/self/fd/{node.fd}",
                                 "options": ["rbind"]}, point)
                self.binds_mounted.append(point)
                return point
        finally:
            os.close(rfd)

    def close(self) -> None:
        from dockyard.snapshots import mount
        for p in reversed(self.binds_mounted):
            try:
                mount.unmount(p, 2)     # MNT_DETACH
            except OSError:
                pass
        self.binds_mounted.clear()
        for key, path in self.snapshots:
            try:
                os.rmdir(path)
            except OSError:
                pass
            try:
                self.images.remove_rootfs(key)
            except Exception:  # noqa: BLE001 - swept at the next start
                pass
        self.snapshots.clear()
        left = mount.mounts_under(self.tmp) if self.dirs else []
        for d in self.dirs:
            if any(x == d or x.startswith(d + "/") for x in left):
                continue    # never delete through a mount still there (swept at start)
            shutil.rmtree(d, ignore_errors=True)
        self.dirs.clear()
        for fd in self.locks:
            os.close(fd)
        self.locks.clear()
