"""Removing images as Docker does (untag, delete, conflicts with children and
containers) and pruning them."""

from __future__ import annotations

import json

from dockyard.errors import Conflict, InvalidParameter, NotFound
from dockyard.images import reference as refs
from dockyard.images.common import _label_match, _norm_filters, _parse_until, chain_ids, short_id


class Removal:
    """Part of ImageService (images/service.py): see the module's docstring."""

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
