"""Layers: unpacking layer tars into committed snapshots (one per chain ID, several at
once with the overlay snapshotter), and registering an image whose blobs are in the
content store (pull, load)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from typing import BinaryIO, Callable

from dockyard.errors import InvalidParameter
from dockyard.images import reference as refs
from dockyard.images.common import EXTRACT_PREFIX, LAYER_MEDIA, _digest_ref, chain_ids
from dockyard.images.unpack import apply_layer


class Layers:
    """Part of ImageService (images/service.py): see the module's docstring."""

    # -- layers ----------------------------------------------------------------------
    def _layer(self, chain: str):
        return self.store.query_one("SELECT * FROM layers WHERE chain_id = ?", (chain,))

    def _ensure_layers(self, diff_ids: list[str],
                       open_layer: Callable[[int], BinaryIO], leases: list[str],
                       progress: Callable[[int, str, str], None] | None = None,
                       blob_info: Callable[[int], tuple[str | None, str | None]] | None = None,
                       on_abort: Callable[[], None] | None = None) -> str | None:
        """Unpack every missing layer of the chain; return the top chain ID.

        ``open_layer(i)`` opens layer i's tar (compressed or not; a blob of the content
        store, or bytes verified against one: the compressed digest is not checked
        again); ``blob_info(i)`` gives (blob digest, media type) to remember as the
        layer's tar. Leases are taken on each chain ID (appended to ``leases``: the
        caller drops them). ``progress(i, diff_id, "exists" | "start" | "done")`` is
        called in chain order, from this thread.

        With the overlay snapshotter the missing layers are unpacked side by side (up
        to :attr:`parallel_unpacks`), each into a snapshot of its own, and committed in
        chain order once unpacked: implicit directories get their parents' metadata
        then (:func:`~dockyard.images.unpack.inherit_implicit`), so the result is the
        one unpacking them one after the other gives. A layer that fails leaves no
        snapshot; the unpacks still going are stopped (``on_abort()`` is called to
        wake readers that wait for bytes) and their snapshots removed; layers already
        committed stay."""
        chains = chain_ids(diff_ids)
        for chain in chains:
            self._add_lease(chain)
            leases.append(chain)
        missing = [i for i, c in enumerate(chains) if self._layer(c) is None]
        if len(missing) > 1 and self.parallel_unpacks > 1 \
                and getattr(self.snapshotter, "independent_layers", False):
            return self._unpack_parallel(diff_ids, chains, missing, open_layer, progress,
                                         blob_info, on_abort)
        parent = None
        for i, (diff_id, chain) in enumerate(zip(diff_ids, chains)):
            if self._layer(chain) is not None:
                if progress:
                    progress(i, diff_id, "exists")
                parent = chain
                continue
            if progress:
                progress(i, diff_id, "start")
            key = f"{EXTRACT_PREFIX}{uuid.uuid4().hex}-{chain}"
            self.snapshotter.prepare(key, parent)
            try:
                with open_layer(i) as f:
                    res = apply_layer(f, self.snapshotter.writable_dir(key),
                                      whiteout=self.snapshotter.whiteout_mode,
                                      expected_diff_id=diff_id, digest=False,
                                      lowers=self.snapshotter.lower_dirs(key))
                self._commit_layer(key, i, diff_id, chain, parent, res.size, blob_info)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.snapshotter.remove(key)
                raise
            if progress:
                progress(i, diff_id, "done")
            parent = chain
        return parent

    #: layers unpacked at once (overlay snapshotter); 1 unpacks them one after the other
    parallel_unpacks = min(4, max(2, os.cpu_count() or 2))

    def _commit_layer(self, key: str, i: int, diff_id: str, chain: str, parent: str | None,
                      size: int, blob_info, reparent: bool = False) -> None:
        """Commit unpacked snapshot ``key`` as layer ``chain`` (or drop it if another
        unpack committed the chain meanwhile)."""
        blob, media = blob_info(i) if blob_info else (None, None)
        with self._lock, self.store.tx() as db:
            if self._layer(chain) is None:
                self.snapshotter.commit(chain, key, parent=parent if reparent else None)
                db.execute("INSERT INTO layers (chain_id, diff_id, parent, size, blob_digest, "
                           "media_type, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (chain, diff_id, parent, size, blob, media, time.time()))
                return
        self.snapshotter.remove(key)

    def _unpack_parallel(self, diff_ids: list[str], chains: list[str], missing: list[int],
                         open_layer, progress, blob_info, on_abort) -> str | None:
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
        from concurrent.futures import wait as wait_futures

        from dockyard.images.unpack import inherit_implicit

        snap = self.snapshotter
        cancel = threading.Event()
        errors: list[BaseException] = []      # in the order the layers failed
        errors_lock = threading.Lock()
        keys: dict[int, str] = {}             # prepared and not (yet) committed or removed

        def unpack(i: int, key: str):
            try:
                if cancel.is_set():
                    raise _Cancelled("unpack cancelled")
                with open_layer(i) as f:
                    return apply_layer(_CancellableReader(f, cancel), snap.writable_dir(key),
                                       whiteout=snap.whiteout_mode,
                                       expected_diff_id=diff_ids[i], digest=False)
            except BaseException as e:
                with errors_lock:
                    errors.append(e)
                raise

        pool = ThreadPoolExecutor(max_workers=min(len(missing), self.parallel_unpacks),
                                  thread_name_prefix="unpack")
        futures = {}
        parent = None
        try:
            for i in missing:
                # parentless: a layer's directory does not depend on its parents' (the
                # parent is given on commit)
                key = f"{EXTRACT_PREFIX}{uuid.uuid4().hex}-{chains[i]}"
                snap.prepare(key)
                keys[i] = key
                futures[i] = pool.submit(unpack, i, key)
            for i, (diff_id, chain) in enumerate(zip(diff_ids, chains)):
                if i not in futures:
                    if progress:
                        progress(i, diff_id, "exists")
                    parent = chain
                    continue
                if progress:
                    progress(i, diff_id, "start")
                fut = futures[i]
                while not fut.done() and not errors:
                    wait_futures([f for f in futures.values() if not f.done()],
                                 return_when=FIRST_COMPLETED)
                if errors:
                    raise errors[0]
                res = fut.result()
                key = keys[i]
                if parent is not None and res.implicit_dirs:
                    inherit_implicit(snap.writable_dir(key), res.implicit_dirs,
                                     snap.chain_dirs(parent))
                self._commit_layer(key, i, diff_id, chain, parent, res.size, blob_info,
                                   reparent=True)
                del keys[i]
                if progress:
                    progress(i, diff_id, "done")
                parent = chain
            return parent
        except BaseException:
            cancel.set()
            if on_abort is not None:
                with contextlib.suppress(Exception):
                    on_abort()
            raise
        finally:
            pool.shutdown(wait=True)
            for key in keys.values():
                with contextlib.suppress(Exception):
                    snap.remove(key)

    # -- images from blobs (pull) -----------------------------------------------------
    def register_image(self, config_bytes: bytes, layers: list[tuple[str, str | None]],
                       tags: list[str] | tuple[str, ...] = (), manifest_digest: str | None = None,
                       repo_digests: list[str] | tuple[str, ...] = (),
                       progress: Callable[[int, str, str], None] | None = None,
                       open_layer: Callable[[int], BinaryIO] | None = None,
                       on_abort: Callable[[], None] | None = None) -> str:
        """Record an image whose config, manifest and layer blobs (``[(digest, media
        type)]``) are already in the content store (e.g. just pulled, under a
        :meth:`lease`). Unpacks missing layers (diffIDs checked), tags it and records the
        ``repo@sha256:...`` digest references. Returns the image ID.

        ``open_layer(i)``: layer i's bytes (default: its blob); ``on_abort()``: called
        when a layer failed while others are still being unpacked, to wake readers of
        ``open_layer`` that wait for bytes (they must then raise)."""
        try:
            cfg = json.loads(config_bytes)
            diff_ids = list((cfg.get("rootfs") or {}).get("diff_ids") or [])
        except (ValueError, AttributeError):
            raise InvalidParameter("invalid image config: not a JSON object") from None
        if len(diff_ids) != len(layers):
            raise InvalidParameter(f"invalid manifest, layers length mismatch: expected "
                                   f"{len(diff_ids)}, got {len(layers)}")
        tag_refs = [refs.parse_normalized(t).with_default_tag() for t in tags]
        digest_refs = []
        for rd in repo_digests:
            r = refs.parse_normalized(rd)
            if not r.digest:
                raise InvalidParameter(f"{rd}: not a digest reference")
            digest_refs.append(_digest_ref(r))
        leases: list[str] = []
        try:
            for d, _ in layers:
                self._add_lease(d)
                leases.append(d)

            def blob_info(i):
                d, mt = layers[i]
                if not mt:
                    from dockyard.images.unpack import detect_compression
                    with self.content.open(d) as f:
                        mt = LAYER_MEDIA[detect_compression(f.read(4))]
                return d, mt

            # ``open_layer`` (pull): layer i's bytes as they arrive, so unpacking
            # overlaps the downloads; it must raise unless the blob was verified
            opener = open_layer or (lambda i: self.content.open(layers[i][0]))
            top = self._ensure_layers(diff_ids, opener, leases, progress, blob_info, on_abort)
            image_id, _ = self._store_image(config_bytes, top, tag_refs,
                                            blobs=[d for d, _ in layers],
                                            manifest=manifest_digest)
            if digest_refs:
                with self._lock, self.store.tx() as db:
                    for r in digest_refs:
                        self._set_ref(db, r, image_id, kind="digest")
        finally:
            for item in leases:
                self._drop_lease(item)
        for r in tag_refs:
            self._emit("tag", image_id, {"name": r.familiar()})
        return image_id


class _Cancelled(InvalidParameter):
    pass


class _CancellableReader:
    """A layer stream that stops (raises) once ``cancel`` is set."""

    def __init__(self, f, cancel: threading.Event):
        self._f = f
        self._cancel = cancel

    def read(self, n: int = -1) -> bytes:
        if self._cancel.is_set():
            raise _Cancelled("unpack cancelled: another layer failed")
        return self._f.read(n)

    def readable(self) -> bool:
        return True
