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
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from dockyard.content import ContentStore
from dockyard.errors import Conflict, InvalidParameter, NotFound
from dockyard.images import reference as refs
from dockyard.images.config import (apply_changes, docker_config_view, docker_version,
                                    empty_container_config, normalize_time, parse_time, rfc3339)
from dockyard.images.unpack import apply_layer
from dockyard.metadata.store import Store
from dockyard.snapshots import new_snapshotter

MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER_MEDIA = {"none": MEDIA_LAYER_TAR, "gzip": MEDIA_LAYER_GZIP, "zstd": MEDIA_LAYER_ZSTD}
EXTRACT_PREFIX = "extract-"
INTERNAL_INGESTS = ("import-", "load-", "commit-", "write-")

_all = builtins.all
UsageChecker = Callable[[str], list]


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def short_id(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


class ImageService:
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

    # -- for pull, push and load ------------------------------------------------------
    def emit_event(self, action: str, actor: str, attrs: dict) -> None:
        """Publish an image event (``pull``, ``push``, ...) as the service's own."""
        self._emit(action, actor, attrs)

    def image_for_reference(self, name: str) -> str | None:
        """The image a reference (``repo:tag`` or ``repo@digest``) names, or None; no
        ID prefix search, no error."""
        return self._ref_lookup(name)

    def has_image(self, image_id: str) -> bool:
        return self._exists(image_id)

    def layer_record(self, chain: str) -> dict | None:
        """The layer of chain ID ``chain`` if it is unpacked here: {"chain_id", "diff_id",
        "parent", "size", "blob_digest", "media_type", "created"}, or None."""
        row = self._layer(chain)
        return dict(zip(row.keys(), row)) if row is not None else None

    def add_digest_reference(self, name: str, image_id: str) -> None:
        """Record ``repo@sha256:...`` as one of the image's RepoDigests."""
        r = refs.parse_normalized(name)
        if not r.digest:
            raise InvalidParameter(f"{name}: not a digest reference")
        with self._lock, self.store.tx() as db:
            self._set_ref(db, _digest_ref(r), image_id, kind="digest")

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

    # -- names -----------------------------------------------------------------------
    def normalize(self, name: str) -> str:
        return refs.normalize(name)

    def _image_ids(self) -> list[str]:
        return [r[0] for r in self.store.query("SELECT id FROM images")]

    def resolve(self, name: str) -> str:
        """Full image ID for a reference, a (short) ID or a digest reference."""
        if not name:
            raise NotFound("No such image: ")
        if refs.ID_RE.match(name):
            iid = "sha256:" + name
            if self._exists(iid):
                return iid
            raise NotFound(f"No such image: sha256:{name}")
        if refs.SHA256_DIGEST_RE.match(name):
            if self._exists(name):
                return name
            raise NotFound(f"No such image: {name}")
        try:
            ref = refs.parse_normalized(name).with_default_tag()
        except InvalidParameter:
            found = self._search(name)
            if found:
                return found
            raise
        row = self.store.query_one("SELECT image_id FROM refs WHERE name = ?", (str(ref),))
        if row is not None:
            return row[0]
        found = self._search(name)
        if found:
            return found
        raise NotFound(f"No such image: {ref.familiar()}")

    def _ref_lookup(self, name: str) -> str | None:
        """The image a reference names (no ID search), or None."""
        try:
            ref = refs.parse_normalized(name).with_default_tag()
        except InvalidParameter:
            return None
        row = self.store.query_one("SELECT image_id FROM refs WHERE name = ?", (str(ref),))
        return row[0] if row else None

    def _search(self, prefix: str) -> str | None:
        hexpart = prefix[7:] if prefix.startswith("sha256:") else prefix
        if not hexpart or not all(c in "0123456789abcdef" for c in hexpart) or len(hexpart) > 64:
            return None
        rows = self.store.query("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{hexpart}%",))
        if len(rows) == 1:
            return rows[0][0]
        return None

    def _exists(self, image_id: str) -> bool:
        return self.store.query_one("SELECT 1 FROM images WHERE id = ?", (image_id,)) is not None

    def _refs_of(self, image_id: str) -> list[tuple[str, str]]:
        return [(r["name"], r["kind"]) for r in self.store.query(
            "SELECT name, kind FROM refs WHERE image_id = ? ORDER BY created, name", (image_id,))]

    def _set_ref(self, db, ref: refs.Reference, image_id: str, kind: str = "tag") -> str | None:
        """Point ``ref`` at ``image_id``; return the image it pointed to before, if other."""
        name = str(ref)
        old = db.execute("SELECT image_id FROM refs WHERE name = ?", (name,)).fetchone()
        now = time.time()
        db.execute("INSERT INTO refs (name, image_id, kind, created) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, "
                   "created = excluded.created", (name, image_id, kind, now))
        if kind == "tag":
            db.execute("UPDATE images SET last_tag = ? WHERE id = ?", (now, image_id))
        if old is not None and old[0] != image_id:
            return old[0]
        return None

    def tag(self, source: str, repo: str, tag: str | None = None) -> None:
        """``docker tag source repo:tag``."""
        image_id = self.resolve(source)
        ref = self._tag_reference(repo, tag)
        with self._lock, self.store.tx() as db:
            self._set_ref(db, ref, image_id)
        self._emit("tag", image_id, {"name": ref.familiar()})

    def _tag_reference(self, repo: str, tag: str | None) -> refs.Reference:
        if not repo:
            raise InvalidParameter("repository name must have at least one component")
        ref = refs.parse_normalized(repo)
        if ref.digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        if tag:
            if ref.tag:
                raise InvalidParameter("invalid reference format")
            refs.validate_tag(tag)
            ref = ref.with_tag(tag)
        ref = ref.with_default_tag()
        if ref.familiar_name == "sha256" or ref.path == "library/sha256":
            raise InvalidParameter(
                "refusing to create an ambiguous tag using digest algorithm as name")
        return ref

    # -- reading ---------------------------------------------------------------------
    def get_config_bytes(self, image_id: str) -> bytes:
        return self.content.read(image_id)

    def get_config(self, image_id: str) -> dict:
        image_id = self.resolve(image_id)
        return json.loads(self.get_config_bytes(image_id))

    def _row(self, image_id: str):
        row = self.store.query_one("SELECT * FROM images WHERE id = ?", (image_id,))
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        return row

    def _names(self, image_id: str) -> tuple[list[str], list[str]]:
        tags, digests = [], []
        for name, kind in self._refs_of(image_id):
            r = refs.parse(name)
            (tags if kind == "tag" else digests).append(r.familiar())
        return tags, digests

    def _summary(self, row, tags: list[str], digests: list[str]) -> dict:
        labels = json.loads(row["labels"] or "null") or {}
        return {
            "Containers": -1,
            "Created": int(row["created_unix"]),
            "Id": row["id"],
            "Labels": labels or None,
            "ParentId": row["parent"] or "",
            "RepoDigests": digests,
            "RepoTags": tags,
            "SharedSize": -1,
            "Size": int(row["size"]),
            "VirtualSize": int(row["size"]),
        }

    def list_images(self, all: bool = False, filters: dict | None = None,
                    digests: bool = False) -> list[dict]:
        """GET /images/json."""
        filters = _norm_filters(filters)
        for k in filters:
            if k not in ("dangling", "reference", "label", "before", "since", "until"):
                raise InvalidParameter(f"invalid filter '{k}'")
        dangling = None
        if "dangling" in filters:
            vals = {v.lower() for v in filters["dangling"]}
            if not vals <= {"true", "false", "1", "0"}:
                raise InvalidParameter(
                    f"invalid filter 'dangling={next(iter(filters['dangling']))}'")
            dangling = bool(vals & {"true", "1"})
        before = since = None
        if "before" in filters:
            before = min(self._row(self.resolve(v))["created_unix"] for v in filters["before"])
        if "since" in filters:
            since = max(self._row(self.resolve(v))["created_unix"] for v in filters["since"])
        until = None
        if "until" in filters:
            until = min(_parse_until(v) for v in filters["until"])
        rows = self.store.query("SELECT * FROM images ORDER BY created_unix DESC, id")
        all_refs: dict[str, list[tuple[str, str]]] = {}
        for r in self.store.query("SELECT name, image_id, kind FROM refs ORDER BY created, name"):
            all_refs.setdefault(r["image_id"], []).append((r["name"], r["kind"]))
        parents = {r["parent"] for r in rows if r["parent"]}
        out = []
        for row in rows:
            iid = row["id"]
            if before is not None and row["created_unix"] >= before:
                continue
            if since is not None and row["created_unix"] <= since:
                continue
            if until is not None and row["created_unix"] > until:
                continue
            if "label" in filters:
                labels = json.loads(row["labels"] or "null") or {}
                if not _all(_label_match(labels, f) for f in filters["label"]):
                    continue
            tags, digs = [], []
            image_refs = all_refs.get(iid, [])
            for name, kind in image_refs:
                r = refs.parse(name)
                if "reference" in filters and not any(
                        refs.familiar_match(p, r) for p in filters["reference"]):
                    continue
                (tags if kind == "tag" else digs).append(r.familiar())
            if not image_refs:
                # untagged: shown when it is a leaf (dangling) or with all
                if not all and iid in parents:
                    continue
                if dangling is False or "reference" in filters:
                    continue
            else:
                if not tags and not digs:
                    continue  # refs exist but none matched the reference filter
                if dangling is True:
                    continue
            out.append(self._summary(row, tags, digs))
        return out

    def inspect(self, name: str) -> dict:
        """GET /images/{name}/json."""
        iid = self.resolve(name)
        row = self._row(iid)
        cfg = json.loads(self.get_config_bytes(iid))
        tags, digs = self._names(iid)
        rootfs = cfg.get("rootfs") or {}
        out = {
            "Id": iid,
            "RepoTags": tags,
            "RepoDigests": digs,
            "Parent": row["parent"] or "",
            "Comment": cfg.get("comment", ""),
            "Created": normalize_time(cfg.get("created")),
            "Container": cfg.get("container", ""),
            "ContainerConfig": docker_config_view(cfg.get("container_config") or {}),
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": docker_config_view(cfg.get("config")),
            "Architecture": cfg.get("architecture", ""),
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        out["Os"] = cfg.get("os", "")
        if cfg.get("os.version"):
            out["OsVersion"] = cfg["os.version"]
        out["Size"] = int(row["size"])
        out["VirtualSize"] = int(row["size"])
        out["GraphDriver"] = self._graph_driver(row["top_chain"])
        out["RootFS"] = {"Type": rootfs.get("type", "layers")}
        if rootfs.get("diff_ids"):
            out["RootFS"]["Layers"] = list(rootfs["diff_ids"])
        out["Metadata"] = {"LastTagTime": rfc3339(row["last_tag"]) if row["last_tag"]
                           else "0001-01-01T00:00:00Z"}
        return out

    def _graph_driver(self, top_chain: str | None) -> dict:
        name = "overlay2" if self.snapshotter.name == "overlay" else "vfs"
        if not top_chain:
            return {"Data": None, "Name": name}
        try:
            dirs = [str(self.snapshotter.fs(i.key)) for i in self.snapshotter.chain(top_chain)]
        except NotFound:
            return {"Data": None, "Name": name}
        if name == "vfs":
            return {"Data": None, "Name": name}
        data = {"MergedDir": str(Path(dirs[0]).parent / "merged"), "UpperDir": dirs[0],
                "WorkDir": str(Path(dirs[0]).parent / "work")}
        if len(dirs) > 1:
            data["LowerDir"] = ":".join(dirs[1:])
        return {"Data": dict(sorted(data.items())), "Name": name}

    def history(self, name: str) -> list[dict]:
        """GET /images/{name}/history."""
        iid = self.resolve(name)
        cfg = json.loads(self.get_config_bytes(iid))
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
        chains = chain_ids(diff_ids)
        sizes = {}
        for r in self.store.query("SELECT chain_id, size FROM layers"):
            sizes[r[0]] = r[1]
        items = []
        li = 0
        for h in cfg.get("history") or []:
            size = 0
            if not h.get("empty_layer"):
                if li < len(chains):
                    size = sizes.get(chains[li], 0)
                li += 1
            items.append({
                "Comment": h.get("comment", ""),
                "Created": int(parse_time(h.get("created"))),
                "CreatedBy": h.get("created_by", ""),
                "Id": "<missing>",
                "Size": size,
                "Tags": None,
            })
        items.reverse()
        if not items:
            items = [{"Comment": cfg.get("comment", ""), "Created": int(parse_time(cfg.get("created"))),
                      "CreatedBy": "", "Id": iid, "Size": int(self._row(iid)["size"]), "Tags": None}]
        # walk local parents: each known image gets its ID and tags at its position
        cur, idx = iid, 0
        while cur and idx < len(items):
            items[idx]["Id"] = cur
            tags, _ = self._names(cur)
            items[idx]["Tags"] = tags or None
            row = self.store.query_one("SELECT parent FROM images WHERE id = ?", (cur,))
            parent = row["parent"] if row else ""
            if not parent or not self._exists(parent):
                break
            pcfg = json.loads(self.get_config_bytes(parent))
            idx = len(items) - len(pcfg.get("history") or [])
            cur = parent
        return items

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

    def _image_size(self, top_chain: str | None) -> int:
        size = 0
        chain = top_chain
        while chain:
            row = self._layer(chain)
            if row is None:
                break
            size += row["size"]
            chain = row["parent"]
        return size

    def _store_image(self, config_bytes: bytes, top_chain: str | None, tags: list[refs.Reference],
                     blobs: list[str] = (), parent: str = "", manifest: str | None = None
                     ) -> tuple[str, list[tuple[refs.Reference, str]]]:
        """Record an image whose layers are in place. Returns (id, [(ref, replaced image)])."""
        cfg = json.loads(config_bytes)
        labels = ((cfg.get("config") or {}).get("Labels")) or {}
        replaced = []
        with self._lock, self.store.tx() as db:
            image_id = self.content.write_blob(config_bytes)
            if db.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
                db.execute(
                    "INSERT INTO images (id, created, created_unix, size, top_chain, parent, labels, "
                    "manifest_digest, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (image_id, cfg.get("created") or "", int(parse_time(cfg.get("created"))),
                     self._image_size(top_chain), top_chain, parent or "", json.dumps(labels),
                     manifest, time.time()))
            elif manifest:
                db.execute("UPDATE images SET manifest_digest = COALESCE(manifest_digest, ?) "
                           "WHERE id = ?", (manifest, image_id))
            for d in {image_id, *blobs, *([manifest] if manifest else [])}:
                db.execute("INSERT OR IGNORE INTO image_blobs (image_id, digest) VALUES (?, ?)",
                           (image_id, d))
            for ref in tags:
                old = self._set_ref(db, ref, image_id)
                if old:
                    replaced.append((ref, old))
        return image_id, replaced

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

    # -- remove ----------------------------------------------------------------------
    def remove(self, name: str, force: bool = False, noprune: bool = False) -> list[dict]:
        """DELETE /images/{name}: untag and/or delete, as Docker does."""
        with self._lock:
            return self._remove(name, force, not noprune)

    @staticmethod
    def _is_id_ref(image_id: str, name: str) -> bool:
        """Docker's isImageIDPrefix: the name the user gave is a prefix of the ID."""
        return image_id.startswith(name) or image_id.split(":", 1)[1].startswith(name)

    def _remove(self, name: str, force: bool, prune: bool) -> list[dict]:
        image_id = self.resolve(name)
        records: list[dict] = []
        repo_refs = [refs.parse(n) for n, _ in self._refs_of(image_id)]
        users = self._users(image_id)
        removed_repo_ref = False
        if not self._is_id_ref(image_id, name):
            ref = refs.parse_normalized(name).with_default_tag()
            if not force and _is_single_reference(repo_refs) and users:
                cid = users[0][0]
                raise Conflict(f'conflict: unable to remove repository reference "{name}" '
                               f"(must force) - container {cid[:12]} is using its referenced "
                               f"image {short_id(image_id)}")
            self._remove_ref(ref)
            records.append({"Untagged": ref.familiar()})
            self._emit("untag", image_id, {"name": image_id})
            repo_refs = [refs.parse(n) for n, _ in self._refs_of(image_id)]
            if not ref.digest:
                same_repo_tag = any(r.name == ref.name and not r.digest for r in repo_refs)
                if not same_repo_tag:
                    remaining = []
                    for r in repo_refs:
                        if r.digest and r.name == ref.name:
                            self._remove_ref(r)
                            records.append({"Untagged": r.familiar()})
                        else:
                            remaining.append(r)
                    repo_refs = remaining
            if repo_refs:
                return records
            removed_repo_ref = True
        else:
            if _is_single_reference(repo_refs):
                conflict = self._check_conflict(image_id, hard=True, soft_refs=False,
                                                soft_stopped=not force)
                if conflict:
                    raise conflict
                for r in repo_refs:
                    self._remove_ref(r)
                    records.append({"Untagged": r.familiar()})
                    self._emit("untag", image_id, {"name": image_id})
        self._delete_helper(image_id, records, force, prune, quiet=removed_repo_ref)
        return records

    def _remove_ref(self, ref: refs.Reference) -> None:
        self.store.execute("DELETE FROM refs WHERE name = ?", (str(ref),))

    def _check_conflict(self, image_id: str, hard: bool, soft_refs: bool,
                        soft_stopped: bool) -> Conflict | None:
        sid = short_id(image_id)
        users = self._users(image_id)
        if hard:
            if self.store.query_one("SELECT 1 FROM images WHERE parent = ?", (image_id,)):
                return _conflict(sid, True, "image has dependent child images")
            running = [u for u, r in users if r]
            if running:
                return _conflict(sid, True, f"image is being used by running container "
                                            f"{running[0][:12]}", used=True)
        if soft_refs and self._refs_of(image_id):
            return _conflict(sid, False, "image is referenced in multiple repositories")
        if soft_stopped:
            stopped = [u for u, r in users if not r]
            if stopped:
                return _conflict(sid, False, f"image is being used by stopped container "
                                             f"{stopped[0][:12]}", used=True)
        return None

    def _delete_helper(self, image_id: str, records: list[dict], force: bool, prune: bool,
                       quiet: bool) -> None:
        conflict = self._check_conflict(image_id, hard=True, soft_refs=not force,
                                        soft_stopped=not force)
        if conflict:
            if quiet and (not self._is_dangling(image_id) or conflict.used):
                return
            raise conflict
        row = self._row(image_id)
        parent = row["parent"]
        chains = chain_ids((json.loads(self._config_or_empty(image_id)).get("rootfs") or {})
                           .get("diff_ids") or [])
        for name, _ in self._refs_of(image_id):
            r = refs.parse(name)
            self._remove_ref(r)
            records.append({"Untagged": r.familiar()})
        with self.store.tx() as db:
            db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        self._emit("delete", image_id, {"name": image_id})
        records.append({"Deleted": image_id})
        removed, _ = self.gc()
        # Docker lists removed layers top-down
        order = {c: i for i, c in enumerate(chains)}
        for c in sorted(removed, key=lambda c: -order.get(c, -1)):
            records.append({"Deleted": c})
        if prune and parent and self._exists(parent):
            self._delete_helper(parent, records, False, prune, True)

    def _config_or_empty(self, image_id: str) -> bytes:
        try:
            return self.get_config_bytes(image_id)
        except NotFound:
            return b"{}"

    def _is_dangling(self, image_id: str) -> bool:
        return not self._refs_of(image_id) and not self.store.query_one(
            "SELECT 1 FROM images WHERE parent = ?", (image_id,))

    # -- prune / disk usage ----------------------------------------------------------
    def prune(self, filters: dict | None = None) -> dict:
        """POST /images/prune."""
        filters = _norm_filters(filters)
        for k in filters:
            if k not in ("dangling", "label", "label!", "until"):
                raise InvalidParameter(f"invalid filter '{k}'")
        dangling_only = True
        if "dangling" in filters:
            vals = {v.lower() for v in filters["dangling"]}
            if not vals <= {"true", "false", "1", "0"}:
                raise InvalidParameter(
                    f"invalid filter 'dangling={next(iter(filters['dangling']))}'")
            dangling_only = bool(vals & {"true", "1"})
        until = min((_parse_until(v) for v in filters.get("until", [])), default=None)
        deleted: list[dict] = []
        reclaimed = 0
        with self._lock:
            sizes_before = {r[0]: r[1] for r in self.store.query("SELECT chain_id, size FROM layers")}
            rows = self.store.query("SELECT * FROM images")
            parents = {r["parent"] for r in rows if r["parent"]}
            for row in rows:
                iid = row["id"]
                if iid in parents or not self._exists(iid):
                    continue
                if until is not None and row["created_unix"] >= until:
                    continue
                labels = json.loads(row["labels"] or "null") or {}
                if "label" in filters and not all(_label_match(labels, f) for f in filters["label"]):
                    continue
                if "label!" in filters and any(_label_match(labels, f) for f in filters["label!"]):
                    continue
                names = self._refs_of(iid)
                if dangling_only and names:
                    continue
                if self._users(iid):
                    continue
                # dockerd's: each reference in turn, a conflict or a reference an earlier
                # removal took with it (a tag's digests) skipped, the ID when none is left
                for name, _ in names:
                    if not self._exists(iid):
                        break
                    try:
                        deleted.extend(self._remove(name, False, True))
                    except (Conflict, NotFound):
                        continue
                if self._exists(iid) and not self._refs_of(iid):
                    try:
                        deleted.extend(self._remove(iid, False, True))
                    except (Conflict, NotFound):
                        pass
            for r in deleted:
                d = r.get("Deleted")
                if d and d in sizes_before:
                    reclaimed += sizes_before[d]
        self._emit("prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def disk_usage(self) -> dict:
        """Images part of GET /system/df."""
        rows = self.store.query("SELECT * FROM images ORDER BY created_unix DESC, id")
        layers = {r["chain_id"]: r for r in self.store.query("SELECT * FROM layers")}
        image_chains: dict[str, list[str]] = {}
        count: Counter = Counter()
        for row in rows:
            chain, cl = row["top_chain"], []
            while chain and chain in layers:
                cl.append(chain)
                chain = layers[chain]["parent"]
            image_chains[row["id"]] = cl
            count.update(set(cl))
        images = []
        for row in rows:
            tags, digs = self._names(row["id"])
            s = self._summary(row, tags, digs)
            s["SharedSize"] = sum(layers[c]["size"] for c in image_chains[row["id"]] if count[c] > 1)
            s["Containers"] = len(self._users(row["id"]))
            images.append(s)
        return {"LayersSize": sum(r["size"] for r in layers.values()), "Images": images}

    # -- container root filesystems --------------------------------------------------
    def prepare_rootfs(self, image_id: str, key: str, init: bool = False) -> list[dict]:
        """A writable snapshot for a container on the image's layers; its mounts.

        With ``init``, an init layer (``<key>-init``, as Docker's ``-init`` layer)
        sits between the image and the container's own layer: it holds the mount
        points every container gets (/etc/hosts, /dev, ...), so they show in
        neither ``diff`` nor ``commit``.
        """
        iid = self.resolve(image_id)
        row = self._row(iid)
        with self._lock:
            parent = row["top_chain"]
            if init:
                ikey = f"{key}-init"
                if not self.snapshotter.exists(ikey):
                    active = f"{ikey}-active"
                    if self.snapshotter.exists(active):
                        self.snapshotter.remove(active)
                    self.snapshotter.prepare(active, parent, labels={"dockyard.image": iid})
                    _make_init_layer(self.snapshotter.writable_dir(active),
                                     self.snapshotter.lower_dirs(active)
                                     if hasattr(self.snapshotter, "lower_dirs") else [])
                    self.snapshotter.commit(ikey, active)
                parent = ikey
            return self.snapshotter.prepare(key, parent, labels={"dockyard.image": iid})

    def rootfs_mounts(self, key: str) -> list[dict]:
        return self.snapshotter.mounts(key)

    def rootfs_usage(self, key: str) -> int:
        """Bytes a container's snapshot holds of its own (SizeRw)."""
        if self.snapshotter.whiteout_mode == "overlay":
            return int(self.snapshotter.usage(key)["size"])
        # a full copy: count only what changed against the image
        from dockyard.images import diff
        return diff.naive_size(self.snapshotter.layer_dir(key),
                               (self.snapshotter.lower_dirs(key) or [None])[0])

    def remove_rootfs(self, key: str) -> None:
        with self._lock:
            for k in (key, f"{key}-init"):
                if self.snapshotter.exists(k):
                    self.snapshotter.remove(k)

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

    def changes(self, key: str) -> list[dict]:
        """``docker diff`` of a container's snapshot: [{"Path", "Kind"}] (names that are
        not UTF-8 shown with U+FFFD, as dockerd)."""
        from dockyard.images import diff
        return diff.display(self._raw_changes(key))

    def _raw_changes(self, key: str) -> list[dict]:
        """The changes of snapshot ``key``, paths with their exact bytes (surrogate
        escapes)."""
        from dockyard.images import diff
        self.snapshotter.stat(key)   # NotFound for an unknown snapshot
        if self.snapshotter.whiteout_mode == "overlay":
            return diff.changes(self.snapshotter.layer_dir(key), self.snapshotter.lower_dirs(key))
        lower = self.snapshotter.lower_dirs(key)
        return diff.naive_changes(self.snapshotter.layer_dir(key), lower[0] if lower else None)

    def layer_tar(self, key: str, out: BinaryIO, clamp_mtime: int | None = None
                  ) -> tuple[str, int]:
        """Write the changes of snapshot ``key`` as a layer tar; return (diffID, size).
        ``clamp_mtime``: no time later than it in the tar (SOURCE_DATE_EPOCH)."""
        from dockyard.images import diff
        if self.snapshotter.whiteout_mode == "overlay":
            return diff.write_layer(self.snapshotter.layer_dir(key), out,
                                    clamp_mtime=clamp_mtime)
        return diff.write_changes(self.snapshotter.layer_dir(key), self._raw_changes(key), out,
                                  clamp_mtime=clamp_mtime)

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

    def driver_status(self) -> dict:
        return {"Driver": "overlay2" if self.snapshotter.name == "overlay" else "vfs",
                "DriverStatus": [["Backing Filesystem", "extfs"],
                                 ["Snapshotter", self.snapshotter.name]]}


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


def _digest_ref(r: refs.Reference) -> refs.Reference:
    """Digest references are stored as ``repo@sha256:...`` (Docker drops the tag)."""
    return refs.Reference(r.domain, r.path, None, r.digest)


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


def _conflict(sid: str, hard: bool, message: str, used: bool = False) -> Conflict:
    c = Conflict(f"conflict: unable to delete {sid} "
                 f"({'cannot be forced' if hard else 'must be forced'}) - {message}")
    c.used = used
    c.hard = hard
    return c


def _is_single_reference(repo_refs: list[refs.Reference]) -> bool:
    if len(repo_refs) <= 1:
        return len(repo_refs) == 1
    canonical = [r for r in repo_refs if r.digest]
    tagged = [r for r in repo_refs if not r.digest]
    if len(tagged) > 1:
        return False
    if not tagged:
        names = {r.name for r in canonical}
        return len(names) == 1
    return all(r.name == tagged[0].name for r in canonical)


def _norm_filters(filters) -> dict[str, list[str]]:
    """Accept {"k": ["v"]}, {"k": {"v": True}} (the API's form) or {"k": "v"}."""
    out: dict[str, list[str]] = {}
    for k, v in (filters or {}).items():
        if isinstance(v, dict):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, str):
            out[k] = [v]
        else:
            out[k] = list(v)
    return out


def _label_match(labels: dict, f: str) -> bool:
    k, eq, v = f.partition("=")
    if k not in labels:
        return False
    return not eq or labels[k] == v


def _parse_until(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        pass
    t = parse_time(v)
    if t:
        return t
    import re
    m = re.fullmatch(r"(\d+)([smh])", v)
    if m:
        mult = {"s": 1, "m": 60, "h": 3600}[m.group(2)]
        return time.time() - int(m.group(1)) * mult
    raise InvalidParameter(f"invalid filter 'until={v}'")


# Mount points the runtime needs in every container, made in the init layer.
_INIT_DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc")
_INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerenv")


def _make_init_layer(upper, lowers) -> None:
    """Create the standard mount points in ``upper`` where no lower layer has a non-directory."""
    import os as _os

    def blocked(rel: str) -> bool:
        # a lower layer with a symlink or file at this path (or a parent): leave it be
        parts = rel.split("/")
        for low in lowers:
            for i in range(1, len(parts) + 1):
                p = _os.path.join(str(low), *parts[:i])
                if _os.path.islink(p) or (_os.path.exists(p) and i < len(parts)
                                          and not _os.path.isdir(p)):
                    return True
        return False

    for d in _INIT_DIRS:
        if not blocked(d):
            _os.makedirs(_os.path.join(str(upper), d), mode=0o755, exist_ok=True)
    for f in _INIT_FILES:
        if not blocked(f):
            path = _os.path.join(str(upper), f)
            _os.makedirs(_os.path.dirname(path), exist_ok=True)
            if not _os.path.exists(path):
                with open(path, "w"):
                    pass
                _os.chmod(path, 0o755 if f == ".dockerenv" else 0o644)
