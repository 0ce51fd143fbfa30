"""Leases, startup recovery and garbage collection of layers and blobs."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

from dockyard.errors import Conflict, NotFound
from dockyard.images.common import EXTRACT_PREFIX, INTERNAL_INGESTS

if TYPE_CHECKING:
    from dockyard.images.service import ImageService


class Leases:
    """Part of ImageService (images/service.py): see the module's docstring."""

    @contextlib.contextmanager
    def lease(self, *items: str) -> Iterator["Lease"]:
        """Protect chain IDs / blob digests from garbage collection while held.

        The :class:`Lease` it yields also commits ingests and writes blobs atomically
        with respect to GC (a pull writes its blobs through it, then calls
        :meth:`register_image`)."""
        lease = Lease(self)
        for i in items:
            lease.add(i)
        try:
            yield lease
        finally:
            lease.release()

    def _add_lease(self, item: str) -> None:
        with self._lock:
            self._leases[item] += 1

    def _drop_lease(self, item: str) -> None:
        with self._lock:
            self._leases[item] -= 1
            if self._leases[item] <= 0:
                del self._leases[item]

    # -- recovery and garbage collection ---------------------------------------------
    def recover(self) -> None:
        """Startup: drop interrupted work, reconcile layers and snapshots, collect garbage."""
        with self._lock:
            # our own ingests cannot be resumed (random refs): drop them now; others
            # (downloads) stay resumable for a day
            self.content.sweep(older_than=0, prefixes=INTERNAL_INGESTS)
            self.content.sweep(older_than=24 * 3600)
            snaps = {i.key: i for i in self.snapshotter.list()}
            layer_rows = {r["chain_id"] for r in self.store.query("SELECT chain_id FROM layers")}
            # interrupted unpacks
            for key in sorted((k for k in snaps if k.startswith(EXTRACT_PREFIX)), reverse=True):
                with contextlib.suppress(Exception):
                    self.snapshotter.remove(key)
            # layer rows whose snapshot is gone, and committed layer snapshots without a row
            with self.store.tx() as db:
                for chain in layer_rows:
                    s = snaps.get(chain)
                    if s is None or s.kind != "committed":
                        self._delete_layer_rows(db, chain)
            layer_rows = {r["chain_id"] for r in self.store.query("SELECT chain_id FROM layers")}
            for key, s in sorted(snaps.items(), key=lambda kv: -kv[1].sid):
                if s.kind == "committed" and key not in layer_rows and key.startswith("sha256:"):
                    with contextlib.suppress(Exception):
                        self.snapshotter.remove(key)
            self.snapshotter.cleanup()
            self.gc()

    def _delete_layer_rows(self, db, chain: str) -> None:
        for child in db.execute("SELECT chain_id FROM layers WHERE parent = ?", (chain,)).fetchall():
            self._delete_layer_rows(db, child[0])
        db.execute("DELETE FROM layers WHERE chain_id = ?", (chain,))

    def gc(self) -> tuple[list[str], int]:
        """Remove layers and blobs nothing refers to. Returns (removed chain IDs, bytes)."""
        removed: list[str] = []
        reclaimed = 0
        with self._lock:
            layers = {r["chain_id"]: r for r in self.store.query("SELECT * FROM layers")}
            keep: set[str] = set()

            def mark(chain):
                while chain and chain not in keep:
                    keep.add(chain)
                    row = layers.get(chain)
                    chain = row["parent"] if row is not None else None

            for r in self.store.query("SELECT top_chain FROM images WHERE top_chain IS NOT NULL"):
                mark(r[0])
            for info in self.snapshotter.list():
                if info.key not in layers and info.parent:
                    mark(info.parent)  # containers' rootfs, views
            for item in self._leases:
                if item in layers:
                    mark(item)
            # delete leaves first
            doomed = [c for c in layers if c not in keep]
            while doomed:
                progressed = False
                for c in list(doomed):
                    if any(layers[o]["parent"] == c for o in doomed if o != c):
                        continue
                    try:
                        self.snapshotter.remove(c)
                    except NotFound:
                        pass
                    except Conflict:
                        doomed.remove(c)
                        continue
                    self.store.execute("DELETE FROM layers WHERE chain_id = ?", (c,))
                    reclaimed += layers[c]["size"]
                    removed.append(c)
                    doomed.remove(c)
                    progressed = True
                if not progressed:
                    break
            # blobs
            live = {r[0] for r in self.store.query("SELECT digest FROM image_blobs")}
            live |= {r[0] for r in self.store.query(
                "SELECT blob_digest FROM layers WHERE blob_digest IS NOT NULL")}
            live |= set(self._leases)
            for info in list(self.content.list()):
                if info.digest not in live:
                    with contextlib.suppress(NotFound):
                        self.content.delete(info.digest)
        return removed, reclaimed


class Lease:
    """Items kept from garbage collection until :meth:`release`."""

    def __init__(self, svc: "ImageService"):
        self._svc = svc
        self.items: list[str] = []

    def add(self, item: str) -> None:
        self._svc._add_lease(item)
        self.items.append(item)

    def commit(self, writer, size: int | None = None, expected: str | None = None) -> str:
        """Commit a content-store ingest and lease the blob, with no GC in between."""
        with self._svc._lock:
            digest = writer.commit(size, expected)
            self.add(digest)
        return digest

    def write_blob(self, data, expected: str | None = None) -> str:
        with self._svc._lock:
            digest = self._svc.content.write_blob(data, expected)
            self.add(digest)
        return digest

    def release(self) -> None:
        for item in self.items:
            self._svc._drop_lease(item)
        self.items = []
