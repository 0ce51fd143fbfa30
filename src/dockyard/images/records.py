"""Image records and names: references and tags, lookups, the images table, the views
(inspect, list, history, disk usage) and what pull, push and load read and record."""

from __future__ import annotations

import builtins
import json
import time
from collections import Counter
from pathlib import Path

from dockyard.errors import InvalidParameter, NotFound
from dockyard.images import reference as refs
from dockyard.images.common import (_digest_ref, _label_match, _norm_filters, _parse_until,
                                    chain_ids)
from dockyard.images.config import docker_config_view, normalize_time, parse_time, rfc3339

_all = builtins.all


class Records:
    """Part of ImageService (images/service.py): see the module's docstring."""

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

    def driver_status(self) -> dict:
        return {"Driver": "overlay2" if self.snapshotter.name == "overlay" else "vfs",
                "DriverStatus": [["Backing Filesystem", "extfs"],
                                 ["Snapshotter", self.snapshotter.name]]}
