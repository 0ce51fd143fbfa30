"""The image service: images, names, layers and their snapshots.

Plain data in and out (dicts shaped like the Docker Engine API's JSON), errors
from :mod:`dockyard.errors` worded as Docker words them. Blocking calls; the API
runs them in a thread executor, so mutations are serialized by a lock.

State:
* configs, manifests and layer tars in the content store (``<root>/content``);
* one committed snapshot per layer chain, named by its chain ID (unpacked once,
  shared by every image and container on that chain);
* names, images and layers in the metadata store.

Image IDs are the sha256 of the config bytes, kept verbatim, so an image saved by
Docker loads here with the same ID.

The service is one facade over parts, one job each, sharing its state (``self``):
``records`` (names, tags, lookups, the images table, inspect/list/history/df),
``layers`` (unpacking layer tars into snapshots, registering pulled images),
``leases`` (leases, startup recovery, garbage collection), ``removal`` (rmi,
prune, conflicts), ``rootfs`` (containers' snapshots, their changes and tars),
``transfer`` (import, save, load), ``commit`` (commit, config-only images) and
``buildlayers`` (a builder's layers); ``common`` holds what they share.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path
from typing import Callable

from dockyard.content import ContentStore
from dockyard.errors import InvalidParameter
from dockyard.images.buildlayers import BuildLayers
from dockyard.images.commit import Commits
from dockyard.images.common import (EXTRACT_PREFIX, INTERNAL_INGESTS, LAYER_MEDIA,  # noqa: F401
                                    MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_LAYER_ZSTD,
                                    UsageChecker, chain_ids, short_id)
from dockyard.images.layers import Layers
from dockyard.images.leases import Lease, Leases  # noqa: F401 - Lease: its home was here
from dockyard.images.records import Records
from dockyard.images.removal import Removal
from dockyard.images.rootfs import Rootfs
from dockyard.images.transfer import Transfer
from dockyard.metadata.store import Store
from dockyard.snapshots import new_snapshotter


class ImageService(Records, Layers, Leases, Removal, Rootfs, Transfer, Commits, BuildLayers):
    def __init__(self, root: str | os.PathLike, store: Store,
                 emit: Callable[[str, str, str, dict], None] | None = None,
                 snapshotter: str = "auto"):
        self.root = Path(root)
        self.store = store
        self.content = ContentStore(self.root)
        # the snapshotter is chosen once per data root: layers live in its directories
        chosen = store.get_setting("snapshotter")
        if chosen and snapshotter not in ("auto", chosen):
            raise InvalidParameter(f"data root {self.root} uses the {chosen} snapshotter, "
                                   f"not {snapshotter}")
        self.snapshotter = new_snapshotter(self.root, store, chosen or snapshotter)
        if not chosen:
            store.set_setting("snapshotter", self.snapshotter.name)
        self._emit_fn = emit
        self._usage: UsageChecker = lambda image_id: []
        self._lock = threading.RLock()
        self._leases: Counter = Counter()
        self.recover()

    # -- wiring ----------------------------------------------------------------------
    def set_usage_checker(self, fn: UsageChecker) -> None:
        """``fn(image_id)`` -> containers using it: ids (treated as stopped) or
        ``(id, running)`` tuples. Running containers make a conflict that force cannot
        override."""
        self._usage = fn

    def _emit(self, action: str, actor: str, attrs: dict) -> None:
        if self._emit_fn is not None:
            try:
                self._emit_fn("image", action, actor, attrs)
            except Exception:
                pass

    def _users(self, image_id: str) -> list[tuple[str, bool]]:
        out = []
        for u in self._usage(image_id) or []:
            if isinstance(u, (tuple, list)):
                out.append((str(u[0]), bool(u[1])))
            elif isinstance(u, dict):
                out.append((u.get("id") or u.get("Id"), bool(u.get("running"))))
            else:
                out.append((str(u), False))
        return out
