"""New images on a base image: ``docker commit`` of a snapshot, an image with a
changed config and no new layer, and the config and history both are recorded with."""

from __future__ import annotations

import json
import uuid

from dockyard.images.common import MEDIA_LAYER_TAR
from dockyard.images.config import apply_changes, docker_version, empty_container_config, rfc3339


class Commits:
    """Part of ImageService (images/service.py): see the module's docstring."""

    def commit_rootfs(self, key: str, base_image: str | None = None, config: dict | None = None,
                      changes: list[str] | tuple[str, ...] = (), comment: str = "",
                      author: str = "", container_id: str = "",
                      container_config: dict | None = None, repo: str | None = None,
                      tag: str | None = None, created_by: str = "",
                      epoch: int | None = None) -> str:
        """``docker commit``: the snapshot's changes become a new layer on ``base_image``.
        ``epoch`` (a builder's SOURCE_DATE_EPOCH): the image's and history's time, file
        times clamped to it, no container recorded.

        ``config`` (a container config) replaces the base image's config before
        ``changes`` are applied. Returns the new image ID."""
        ref = self._tag_reference(repo, tag) if repo else None
        base_cfg: dict = {}
        base_id = ""
        if base_image:
            base_id = self.resolve(base_image)
            base_cfg = json.loads(self.get_config_bytes(base_id))
        leases: list[str] = []
        w = self.content.writer(f"commit-{uuid.uuid4().hex}")
        try:
            try:
                diff_id, _ = self.layer_tar(key, w, epoch)
                with self._lock:
                    blob = w.commit()
                    self._add_lease(blob)
                    leases.append(blob)
            except BaseException:
                w.abort()
                raise
            diff_ids = list((base_cfg.get("rootfs") or {}).get("diff_ids") or []) + [diff_id]
            top = self._ensure_layers(diff_ids, lambda i: self.content.open(blob), leases,
                                      blob_info=lambda i: (blob, MEDIA_LAYER_TAR))
            image_id = self._derive(base_id, base_cfg, diff_ids, top, [blob], config, changes,
                                    comment, author, "" if epoch is not None else container_id,
                                    container_config, created_by, ref, empty_layer=False,
                                    epoch=epoch)
        finally:
            for item in leases:
                self._drop_lease(item)
        if ref:   # no image event of a commit's own in dockerd: only the tag
            self._emit("tag", image_id, {"name": ref.familiar()})
        return image_id

    def derive_image(self, base_image: str | None, config: dict | None = None,
                     changes: list[str] | tuple[str, ...] = (), created_by: str = "",
                     comment: str = "", author: str = "", repo: str | None = None,
                     tag: str | None = None, epoch: int | None = None,
                     container_config: dict | None = None) -> str:
        """A new image on ``base_image`` with no new layer (a builder's ENV/LABEL/CMD
        step): the config changed, one ``empty_layer`` history entry added (at ``epoch``
        if given); ``container_config`` is recorded as given (the builder's step)."""
        ref = self._tag_reference(repo, tag) if repo else None
        base_cfg: dict = {}
        base_id = ""
        top = None
        if base_image:
            base_id = self.resolve(base_image)
            base_cfg = json.loads(self.get_config_bytes(base_id))
            top = self._row(base_id)["top_chain"]
        diff_ids = list((base_cfg.get("rootfs") or {}).get("diff_ids") or [])
        with self.lease(*([top] if top else [])):
            image_id = self._derive(base_id, base_cfg, diff_ids, top, [], config, changes,
                                    comment, author, "", container_config, created_by, ref,
                                    empty_layer=True,
                                    epoch=epoch)
        if ref:
            self._emit("tag", image_id, {"name": ref.familiar()})
        return image_id

    def _derive(self, base_id, base_cfg, diff_ids, top, blobs, config, changes, comment, author,
                container_id, container_config, created_by, ref, empty_layer: bool,
                epoch: int | None = None) -> str:
        if epoch is not None:
            import datetime
            created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) \
                .strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            created = rfc3339()
        cfg_in = config if config is not None else base_cfg.get("config")
        new_config = apply_changes(cfg_in, list(changes or ()))
        history = list(base_cfg.get("history") or [])
        h = {"created": created}
        if author:
            h["author"] = author
        if created_by:
            h["created_by"] = created_by
        if comment:
            h["comment"] = comment
        if empty_layer:
            h["empty_layer"] = True
        history.append(h)
        img = {"architecture": base_cfg.get("architecture", "amd64")}
        if author:
            img["author"] = author
        if comment:
            img["comment"] = comment
        img["config"] = new_config
        if container_id:
            img["container"] = container_id
        img["container_config"] = container_config or empty_container_config()
        img["created"] = created
        img["docker_version"] = docker_version()
        img["history"] = history
        img["os"] = base_cfg.get("os", "linux")
        img["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        config_bytes = json.dumps(img, separators=(",", ":")).encode()
        image_id, _ = self._store_image(config_bytes, top, [ref] if ref else [],
                                        blobs=blobs, parent=base_id)
        return image_id
