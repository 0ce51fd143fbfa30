"""Images in and out as tars: ``docker import`` (one layer), ``save`` and ``load``
(:mod:`dockyard.images.archive`)."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import BinaryIO, Iterator

from dockyard.images.common import EXTRACT_PREFIX, MEDIA_LAYER_TAR
from dockyard.images.config import apply_changes, docker_version, empty_container_config, rfc3339
from dockyard.images.unpack import apply_layer


class Transfer:
    """Part of ImageService (images/service.py): see the module's docstring."""

    # -- import ----------------------------------------------------------------------
    def import_image(self, stream: BinaryIO, repo: str | None = None, tag: str | None = None,
                     changes: list[str] | tuple[str, ...] = (), message: str | None = None,
                     src: str = "-", platform: str | None = None) -> str:
        """``docker import``: one layer from a tar stream; returns the image ID."""
        ref = None
        if repo:
            ref = self._tag_reference(repo, tag)
        config = apply_changes(None, list(changes or ()))
        msg = message or f"Imported from {src}"
        os_, arch = "linux", "amd64"
        if platform:
            p = platform.split("/")
            os_ = p[0] or os_
            if len(p) > 1:
                arch = p[1]
        leases: list[str] = []
        ingest_ref = f"import-{uuid.uuid4().hex}"
        w = self.content.writer(ingest_ref)
        key = f"{EXTRACT_PREFIX}{uuid.uuid4().hex}-import"
        self.snapshotter.prepare(key)
        try:
            try:
                res = apply_layer(stream, self.snapshotter.writable_dir(key),
                                  whiteout=self.snapshotter.whiteout_mode, tee=w.write)
                with self._lock:        # no GC between the commit and the lease
                    blob = w.commit(expected=None)
                    self._add_lease(blob)
                    leases.append(blob)
            except BaseException:
                w.abort()
                raise
            chain = res.diff_id
            self._add_lease(chain)
            leases.append(chain)
            with self._lock, self.store.tx() as db:
                if self._layer(chain) is None:
                    self.snapshotter.commit(chain, key)
                    db.execute("INSERT INTO layers (chain_id, diff_id, parent, size, blob_digest, "
                               "media_type, created) VALUES (?, ?, NULL, ?, ?, ?, ?)",
                               (chain, res.diff_id, res.size, blob, MEDIA_LAYER_TAR, time.time()))
                    key = None
            if key is not None:
                self.snapshotter.remove(key)
                key = None
            created = rfc3339()
            img = {
                "architecture": arch,
                "comment": msg,
                "config": config,
                "container_config": empty_container_config(),
                "created": created,
                "docker_version": docker_version(),
                "history": [{"created": created, "comment": msg}],
                "os": os_,
                "rootfs": {"type": "layers", "diff_ids": [res.diff_id]},
            }
            config_bytes = json.dumps(img, separators=(",", ":")).encode()
            image_id, replaced = self._store_image(config_bytes, chain, [ref] if ref else [],
                                                   blobs=[blob])
        finally:
            if key is not None:
                with contextlib.suppress(Exception):
                    self.snapshotter.remove(key)
            for item in leases:
                self._drop_lease(item)
        self._emit("import", image_id, {"name": image_id})
        if ref:
            self._emit("tag", image_id, {"name": ref.familiar()})
        return image_id

    # -- archives --------------------------------------------------------------------
    def export_images(self, names: list[str], out: BinaryIO) -> None:
        """``docker save``: write a tar of the named images to ``out``."""
        from dockyard.images.archive import export_images
        export_images(self, names, out)

    def load_images(self, stream: BinaryIO, quiet: bool = False) -> Iterator[dict]:
        """``docker load``: yields JSON progress messages (a generator: the work happens
        as it is consumed; errors before the first message mean nothing was loaded)."""
        from dockyard.images.archive import load_images
        return load_images(self, stream, quiet)
