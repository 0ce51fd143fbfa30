"""A builder's layers: snapshots right on an image (or on nothing, written ahead of
their parent and checked when placed on it), committed as the layer of a new image
with no unpack, ``RUN --mount`` stubs left out, and ``--cache-from`` steps."""

from __future__ import annotations

import json
import os
import uuid

from dockyard.errors import Conflict
from dockyard.images.common import EXTRACT_PREFIX, MEDIA_LAYER_TAR, chain_ids
from dockyard.images.config import docker_version, empty_container_config, rfc3339


class BuildLayers:
    """Part of ImageService (images/service.py): see the module's docstring."""

    # -- builder layers ---------------------------------------------------------------
    #: snapshot keys of builder steps: interrupted ones are removed by :meth:`recover`
    BUILD_PREFIX = EXTRACT_PREFIX + "build-"

    def _top_chain(self, image: str | None) -> tuple[str, str | None]:
        if not image:
            return "", None
        iid = self.resolve(image)
        return iid, self._row(iid)["top_chain"]

    def prepare_layer(self, base_image: str | None, key: str, view: bool = False) -> list[dict]:
        """A snapshot right on ``base_image``'s layers (None: on nothing, ``FROM scratch``),
        with no init layer: writable for a builder step to write its files into, or with
        ``view`` a read-only view of the image (a ``COPY --from`` source). Its mounts; the
        key should start with :attr:`BUILD_PREFIX`; removed by :meth:`remove_rootfs`."""
        iid, parent = self._top_chain(base_image)
        labels = {"dockyard.image": iid} if iid else {}
        with self._lock:
            if view:
                return self.snapshotter.view(key, parent, labels=labels)
            return self.snapshotter.prepare(key, parent, labels=labels)

    def independent_layers(self) -> bool:
        """Whether a layer can be written before its parent is known (overlay)."""
        return bool(getattr(self.snapshotter, "independent_layers", False))

    def layer_path(self, key: str) -> str:
        """The directory an active builder snapshot on nothing is written into, unmounted
        (:meth:`independent_layers` only)."""
        return os.fspath(self.snapshotter.writable_dir(key))

    def layer_body(self, key: str, implied: list[str], path: str, stop=None) -> int | None:
        """For :meth:`commit_layer` with ``implied`` and ``body``: the tar entries of
        everything below the implied directories of builder snapshot ``key`` (written on
        nothing, not to be changed again) written ahead into the new private file
        ``path``, while its parent is not known yet; their size, or None when the layer is
        not one directory chain with everything below it (nothing to gain then), or when
        ``stop()`` turned true meanwhile."""
        from dockyard.images import diff
        chain = _chain_of(implied)
        if chain is None or self.snapshotter.whiteout_mode != "overlay":
            return None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with open(fd, "wb") as f:
            return diff.write_layer_body(self.snapshotter.layer_dir(key), chain, f, stop)

    def commit_layer(self, key: str, base_image: str | None, config: dict | None = None,
                     created_by: str = "", author: str = "",
                     implied: list[str] | None = None, epoch: int | None = None,
                     container_config: dict | None = None,
                     body: tuple[str, int] | None = None) -> str:
        """A builder step's snapshot ``key`` (from :meth:`prepare_layer`, unmounted)
        becomes the top layer of a new image on ``base_image``: its tar goes to the content
        store from one walk and the snapshot itself is committed as the layer (what the
        tar holds is what it holds: nothing is unpacked again). Returns the image ID.

        With ``implied`` the snapshot was written on nothing, ahead of its parent
        (:meth:`independent_layers`): it is placed on ``base_image`` if the result is the
        one writing it there would have given: every entry's parents are directories (or
        missing) in the image, no non-directory replaces one of the image's directories;
        the ``implied`` directories (the destination and its parents) take the image's
        metadata where it has them. Otherwise :class:`Conflict` (the caller writes the
        step again on the mounted image).

        ``body`` (with ``implied``, no ``epoch``): ``(path, size)`` of what
        :meth:`layer_body` wrote: the layer tar is made of the implied directories as they
        are now and that body (the same bytes as from a walk of the whole snapshot)."""
        base_id, _ = self._top_chain(base_image)
        base_cfg = json.loads(self.get_config_bytes(base_id)) if base_id else {}
        if implied is not None and base_id:
            self._rebase_check(key, base_id, implied)
        if epoch is not None:
            _clamp_times(os.fspath(self.snapshotter.layer_dir(key)), epoch)
        leases: list[str] = []
        w = self.content.writer(f"commit-{uuid.uuid4().hex}")
        try:
            try:
                made = None
                if body is not None and implied is not None and epoch is None:
                    made = self._layer_tar_with_body(key, implied, body, w)
                if made is None:
                    if body is not None:    # (whatever the attempt wrote goes)
                        w.abort()
                        w = self.content.writer(f"commit-{uuid.uuid4().hex}")
                    made = self.layer_tar(key, w, epoch)
                diff_id = made[0]
                with self._lock:
                    blob = w.commit()
                    self._add_lease(blob)
                    leases.append(blob)
            except BaseException:
                w.abort()
                raise
            diff_ids = list((base_cfg.get("rootfs") or {}).get("diff_ids") or []) + [diff_id]
            chain = chain_ids(diff_ids)[-1]
            self._add_lease(chain)
            leases.append(chain)
            parent = chain_ids(diff_ids[:-1])[-1] if len(diff_ids) > 1 else None
            size = int(self.snapshotter.usage(key)["size"])
            self._commit_layer(key, 0, diff_id, chain, parent, size,
                               lambda i: (blob, MEDIA_LAYER_TAR), reparent=implied is not None)
            image_id = self._derive(base_id, base_cfg, diff_ids, chain, [blob], config, (),
                                    "", author, "", container_config, created_by, None,
                                    empty_layer=False,
                                    epoch=epoch)
        finally:
            for item in leases:
                self._drop_lease(item)
        return image_id

    def remove_stubs(self, key: str, paths: list[str]) -> None:
        """Mount points a runtime made in snapshot ``key`` for a builder's ``RUN --mount``
        targets (as BuildKit drops them): each path, and the parents it made, left out of
        the layer when it is an empty directory or an empty file that no lower layer has.
        Every component opened from its parent's fd without following symlinks; overlay
        only (the copy snapshotter's tree has no separate upper)."""
        if self.snapshotter.whiteout_mode != "overlay":
            return
        import stat as _stat
        from dockyard.fsroot.resolve import DIR_FLAGS
        upper = os.fspath(self.snapshotter.layer_dir(key))
        lowers = [os.fspath(p) for p in self.snapshotter.lower_dirs(key)]

        def in_lower(names: list[str]) -> bool:
            for low in lowers:
                fd = os.open(low, DIR_FLAGS)
                try:
                    for i, n in enumerate(names):
                        try:
                            st = os.stat(n, dir_fd=fd, follow_symlinks=False)
                        except FileNotFoundError:
                            break
                        if i == len(names) - 1 or not _stat.S_ISDIR(st.st_mode):
                            return True     # there (or hidden behind a non-directory)
                        nfd = os.open(n, DIR_FLAGS, dir_fd=fd)
                        os.close(fd)
                        fd = nfd
                finally:
                    os.close(fd)
            return False

        for path in paths:
            names = [n for n in path.split("/") if n not in ("", ".")]
            if not names or ".." in names:
                continue
            fds = [os.open(upper, DIR_FLAGS)]
            try:
                for n in names[:-1]:
                    try:
                        fds.append(os.open(n, DIR_FLAGS, dir_fd=fds[-1]))
                    except OSError:
                        break
                if len(fds) != len(names):
                    continue
                for depth in range(len(names), 0, -1):
                    if in_lower(names[:depth]):
                        break
                    dfd, n = fds[depth - 1], names[depth - 1]
                    try:
                        st = os.stat(n, dir_fd=dfd, follow_symlinks=False)
                        if _stat.S_ISDIR(st.st_mode):
                            os.rmdir(n, dir_fd=dfd)      # fails when not empty
                        elif _stat.S_ISREG(st.st_mode) and st.st_size == 0 \
                                and depth == len(names):
                            os.unlink(n, dir_fd=dfd)
                        else:
                            break
                    except OSError:
                        break
            finally:
                for fd in fds:
                    os.close(fd)

    def cached_step(self, parent: str | None, sources: list[str], created_by: str,
                    config: dict) -> str | None:
        """``--cache-from`` as dockerd's legacy builder takes it: an image of ``sources``
        whose history and layers start with ``parent``'s and whose next history entry
        was made by ``created_by`` stands for the step. It is the answer when that entry
        is its last; else an image of the step is made from its layers up to there (no
        layer copied: they are the source's). None when no source fits."""
        pcfg = json.loads(self.get_config_bytes(parent)) if parent else {}
        phist = list(pcfg.get("history") or [])
        pdiffs = list((pcfg.get("rootfs") or {}).get("diff_ids") or [])
        for src in sources:
            tcfg = json.loads(self.get_config_bytes(src))
            thist = list(tcfg.get("history") or [])
            tdiffs = list((tcfg.get("rootfs") or {}).get("diff_ids") or [])
            if len(thist) <= len(phist) or thist[:len(phist)] != phist \
                    or tdiffs[:len(pdiffs)] != pdiffs:
                continue
            h = thist[len(phist)]
            if h.get("created_by", "") != created_by:
                continue
            if len(thist) == len(phist) + 1:
                return src
            diffs = pdiffs + ([] if h.get("empty_layer") else tdiffs[len(pdiffs):len(pdiffs) + 1])
            if len(diffs) > len(tdiffs):
                continue
            img = {"architecture": tcfg.get("architecture", "amd64")}
            if tcfg.get("author"):
                img["author"] = tcfg["author"]
            img["config"] = config
            img["container_config"] = empty_container_config()
            img["created"] = h.get("created") or rfc3339()
            img["docker_version"] = docker_version()
            img["history"] = phist + [h]
            img["os"] = tcfg.get("os", "linux")
            img["rootfs"] = {"type": "layers", "diff_ids": diffs}
            top = chain_ids(diffs)[-1] if diffs else None
            blobs = [r["digest"] for r in self.store.query(
                "SELECT digest FROM image_blobs WHERE image_id = ?", (src,)) if r["digest"] != src]
            with self.lease(*([top] if top else [])):
                image_id, _ = self._store_image(json.dumps(img, separators=(",", ":")).encode(),
                                                top, [], blobs=blobs, parent=parent or "")
            return image_id
        return None

    def _layer_tar_with_body(self, key: str, implied: list[str], body: tuple[str, int],
                             out) -> tuple[str, int] | None:
        from dockyard.images import diff
        chain = _chain_of(implied)
        if chain is None or self.snapshotter.whiteout_mode != "overlay":
            return None
        path, size = body
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            if os.fstat(f.fileno()).st_size != size:
                return None
            return diff.write_layer_with_body(self.snapshotter.layer_dir(key), chain, f, size,
                                              out)

    def _rebase_check(self, key: str, base_id: str, implied: list[str]) -> None:
        from dockyard.fsroot.nodes import open_root, walk
        from dockyard.images.unpack import inherit_implicit, lower_dir_stat
        top = self._row(base_id)["top_chain"]
        lowers = [os.fspath(p) for p in self.snapshotter.chain_dirs(top)] if top else []
        if not lowers:
            return

        def present(names: list[str]) -> bool:
            return any(os.path.lexists(os.path.join(d, *names)) for d in lowers)

        def conflict(path: str) -> Conflict:
            return Conflict(f"{path}: the layer does not apply as written on its parent")

        for rel in implied:
            names = [n for n in rel.split("/") if n]
            for depth in range(1, len(names) + 1):
                if lower_dir_stat(lowers, names[:depth]) is None and present(names[:depth]):
                    raise conflict(rel)
        upper = self.layer_path(key)
        fd = open_root(upper)

        def descend(path: str, node) -> bool:
            # below a directory no parent layer has, nothing can be in them either
            return present(path.split("/"))
        try:
            for path, node in walk(fd, "", descend):
                names = path.split("/")
                if node.is_dir():
                    if lower_dir_stat(lowers, names) is None and present(names):
                        raise conflict(path)
                elif lower_dir_stat(lowers, names) is not None:
                    raise conflict(path)
        finally:
            os.close(fd)
        inherit_implicit(upper, implied, lowers)


def _chain_of(implied: list[str]) -> list[str] | None:
    """``implied`` (a written-ahead layer's destination and its parents: ``a``, ``a/b``)
    as the names of one directory chain (``a``, ``b``), or None if it is not one."""
    chain: list[str] = []
    for rel in sorted(implied, key=lambda r: r.count("/")):
        names = [n for n in rel.split("/") if n]
        if names[:-1] != chain or len(names) != len(chain) + 1:
            return None
        chain = names
    return chain or None


def _clamp_times(top: str, epoch: int) -> None:
    """No time later than ``epoch`` in a builder's own layer directory (nothing runs on
    it; symlinks are not followed), so the snapshot shows what its clamped tar says."""
    ns = epoch * 1_000_000_000
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        for name in filenames + dirnames + ([""] if dirpath == top else []):
            p = os.path.join(dirpath, name) if name else dirpath
            try:
                st = os.lstat(p)
                if st.st_mtime_ns > ns or st.st_atime_ns > ns:
                    os.utime(p, ns=(min(st.st_atime_ns, ns), min(st.st_mtime_ns, ns)),
                             follow_symlinks=False)
            except OSError:
                pass
