"""The build cache: image ID by cache key, in the daemon's metadata database, and its
lifecycle (``system df``'s BuildCache records, ``POST /build/prune``).

A row is a step's result: ``key`` (the planner's content-addressed cache key) -> the
image the step made, with when it was made, last used and how often. A row goes with its
image: a trigger on the ``images`` table deletes it when the image is deleted (``rmi``,
image prune), and a row whose image is missing anyway is dropped when met.

The records as dockerd reports BuildKit's: one per row, ``Size`` the layer the step added
(0 for a config-only step), ``Shared`` when the image is kept by something else (it is, or is
an ancestor of, a tagged image or one a container uses), ``InUse`` when a container uses it.
Pruning removes the images of unshared records (children first; an image something else
still needs stays) and their rows; with ``all`` the rows of shared records go too (their
images stay: tagged images need them), so later builds no longer take them from the cache.

Build cache that is no image is listed and pruned beside them as BuildKit shows it: each
``RUN --mount=type=cache`` directory (``exec.cachemount``; one a build is using is InUse and
stays) and each context session's kept spool (``source.local``).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any

from dockyard.errors import Conflict, InvalidParameter, NotFound

_SCHEMA = ("CREATE TABLE IF NOT EXISTS build_cache ("
           "key TEXT PRIMARY KEY, image_id TEXT NOT NULL, created REAL NOT NULL)")
_COLUMNS = {"last_used": "REAL", "usage_count": "INTEGER NOT NULL DEFAULT 0"}
_TRIGGER = ("CREATE TRIGGER IF NOT EXISTS build_cache_image_gone AFTER DELETE ON images "
            "BEGIN DELETE FROM build_cache WHERE image_id = OLD.id; END")

FILTERS = {"until", "unused-for", "unusedfor", "id", "parent", "type", "description",
           "inuse", "shared", "private", "label", "label!"}


def ensure_schema(store: Any) -> None:
    store.execute(_SCHEMA)
    have = {r["name"] for r in store.query("PRAGMA table_info(build_cache)")}
    for col, decl in _COLUMNS.items():
        if col not in have:
            store.execute(f"ALTER TABLE build_cache ADD COLUMN {col} {decl}")
    if store.query_one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'images'"):
        store.execute(_TRIGGER)


class BuildCache:
    def __init__(self, store: Any, has_image) -> None:
        self.store = store
        self.has_image = has_image
        ensure_schema(store)

    def get(self, key: str) -> str | None:
        row = self.store.query_one("SELECT image_id FROM build_cache WHERE key = ?", (key,))
        if row is None:
            return None
        if not self.has_image(row["image_id"]):
            self.store.execute("DELETE FROM build_cache WHERE key = ?", (key,))
            return None
        self.store.execute("UPDATE build_cache SET last_used = ?, usage_count = usage_count + 1"
                           " WHERE key = ?", (time.time(), key))
        return row["image_id"]

    def put(self, key: str, image_id: str) -> None:
        now = time.time()
        self.store.execute("INSERT OR REPLACE INTO build_cache (key, image_id, created, "
                           "last_used, usage_count) VALUES (?, ?, ?, ?, 1)",
                           (key, image_id, now, now))

    def count(self) -> int:
        return self.store.query_one("SELECT COUNT(*) AS n FROM build_cache")["n"]


# -- records (system df) and prune ---------------------------------------------------------

def _rfc3339(t: float | None) -> str | None:
    if not t:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _graph(images: Any) -> tuple[dict[str, dict], set[str]]:
    """Every image's summary by ID, and the IDs something keeps (tagged or used by a
    container, and all their ancestors)."""
    summaries = {im["Id"]: im for im in images.disk_usage().get("Images") or []}
    kept: set[str] = set()
    for iid, im in summaries.items():
        if not (im.get("RepoTags") or im.get("RepoDigests") or (im.get("Containers") or 0) > 0):
            continue
        cur = iid
        while cur and cur not in kept:
            kept.add(cur)
            cur = (summaries.get(cur) or {}).get("ParentId") or ""
    return summaries, kept


def _description(images: Any, image_id: str) -> str:
    try:
        hist = images.history(image_id)
    except NotFound:
        return ""
    created = (hist[0].get("CreatedBy") if hist else "") or ""
    return created.replace("/bin/sh -c #(nop) ", "").strip()


def records(store: Any, images: Any) -> list[dict]:
    """The BuildCache section of ``GET /system/df`` (blocking)."""
    ensure_schema(store)
    rows = store.query("SELECT * FROM build_cache ORDER BY created, key")
    summaries, kept = _graph(images)
    by_image = {r["image_id"]: r["key"] for r in rows}
    out = []
    for r in rows:
        im = summaries.get(r["image_id"])
        if im is None:    # the image went (an older database without the trigger)
            store.execute("DELETE FROM build_cache WHERE key = ?", (r["key"],))
            continue
        parent = summaries.get(im.get("ParentId") or "")
        size = max(int(im.get("Size") or 0) - int(parent.get("Size") or 0 if parent else 0), 0)
        pkey = by_image.get(im.get("ParentId") or "")
        out.append({
            "ID": _record_id(r["key"]),
            "Parent": _record_id(pkey) if pkey else "",
            "Parents": [_record_id(pkey)] if pkey else None,
            "Type": "regular",
            "Description": _description(images, r["image_id"]),
            "InUse": (im.get("Containers") or 0) > 0,
            "Shared": r["image_id"] in kept,
            "Size": size,
            "CreatedAt": _rfc3339(r["created"]),
            "LastUsedAt": _rfc3339(r["last_used"] or r["created"]),
            "UsageCount": int(r["usage_count"] or 0),
            "_image": r["image_id"], "_key": r["key"],
            "_labels": im.get("Labels") or {},
            "_last": float(r["last_used"] or r["created"]),
        })
    root = getattr(images, "root", None)
    if root is not None:
        out += storage_records(root)
    return out


def storage_records(data_root) -> list[dict]:
    """Build cache that is not an image, as BuildKit lists it: ``RUN --mount=type=cache``
    directories (``exec.cachemount``) and the context sessions' kept spools
    (``source.local``)."""
    import hashlib
    import os
    from dockyard.builder import mounts, sessions
    out = []
    for m in mounts.cache_usage(data_root):
        desc = f"cached mount {m['Target'] or m['ID']}"
        if m["Target"] and m["ID"] != m["Target"]:
            desc += f" (id {m['ID']})"
        out.append({
            "ID": m["Dir"][:25], "Parent": "", "Parents": None, "Type": "exec.cachemount",
            "Description": desc, "InUse": m["InUse"], "Shared": False, "Size": m["Size"],
            "CreatedAt": _rfc3339(m["CreatedAt"]), "LastUsedAt": _rfc3339(m["LastUsedAt"]),
            "UsageCount": m["UsageCount"], "_image": None, "_key": m["Dir"], "_labels": {},
            "_last": m["LastUsedAt"], "_remove": ("mount", m["Dir"]),
        })
    sdir = os.path.join(os.fspath(data_root), "builder", "sessions")
    for sp in sessions.spool_usage(sdir):
        rid = hashlib.sha256(sp["Name"].encode()).hexdigest()
        out.append({
            "ID": rid[:25], "Parent": "", "Parents": None, "Type": "source.local",
            "Description": "local source for context", "InUse": False, "Shared": False,
            "Size": sp["Size"], "CreatedAt": _rfc3339(sp["CreatedAt"]),
            "LastUsedAt": _rfc3339(sp["LastUsedAt"]), "UsageCount": 1, "_image": None,
            "_key": rid, "_labels": {}, "_last": sp["LastUsedAt"],
            "_remove": ("session", sp["Name"]),
        })
    return out


def _remove_storage(data_root, how: tuple[str, str]) -> int | None:
    import os
    from dockyard.builder import mounts, sessions
    kind, name = how
    if kind == "mount":
        return mounts.remove_cache(data_root, name)
    return sessions.remove_spool(os.path.join(os.fspath(data_root), "builder", "sessions"),
                                 name)


def public(recs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in recs]


def _record_id(key: str) -> str:
    return key.split(":", 1)[-1][:25]


_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(v: str) -> float:
    """Go's time.ParseDuration (seconds); ValueError if it is not one."""
    s = v.strip()
    neg = s.startswith("-")
    if s[:1] in ("+", "-"):
        s = s[1:]
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DUR.finditer(s):
        if m.start() != pos:
            raise ValueError(v)
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(v)
    return -total if neg else total


def _cutoff(v: str, now: float) -> float:
    """``until``/``unused-for``: a duration (ago) or a timestamp, as dockerd takes them."""
    try:
        return now - parse_duration(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"{v!r} is not a valid duration or timestamp") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def _bool(key: str, vals: set[str]) -> bool:
    if not vals <= {"true", "false", "1", "0"} or len(vals) != 1:
        raise InvalidParameter(f"invalid filter '{key}={next(iter(vals))}'")
    return vals == {"true"} or vals == {"1"}


def _label_match(labels: dict, f: str) -> bool:
    k, eq, v = f.partition("=")
    return k in labels and (not eq or labels[k] == v)


def _select(recs: list[dict], filters: dict[str, list[str]], all_: bool,
            now: float) -> list[dict]:
    for k in filters:
        if k not in FILTERS:
            raise InvalidParameter(f"invalid filter '{k}'")
    cut = None
    for k in ("until", "unused-for", "unusedfor"):
        for v in filters.get(k, []):
            c = _cutoff(v, now)
            cut = c if cut is None else min(cut, c)
    out = []
    for r in recs:
        if r["InUse"]:
            continue       # never what a container or a running build uses
        if cut is not None and r["_last"] > cut:
            continue
        if "id" in filters and not any(r["ID"].startswith(v) or r["_key"].startswith(v)
                                       for v in filters["id"]):
            continue
        if "parent" in filters and r["Parent"] not in filters["parent"]:
            continue
        if "type" in filters and r["Type"] not in filters["type"]:
            continue
        if "description" in filters and not any(v in r["Description"]
                                                for v in filters["description"]):
            continue
        if "inuse" in filters and r["InUse"] != _bool("inuse", set(filters["inuse"])):
            continue
        if "shared" in filters and r["Shared"] != _bool("shared", set(filters["shared"])):
            continue
        if "private" in filters and r["Shared"] == _bool("private", set(filters["private"])):
            continue
        if "label" in filters and not all(_label_match(r["_labels"], f)
                                          for f in filters["label"]):
            continue
        if "label!" in filters and any(_label_match(r["_labels"], f)
                                       for f in filters["label!"]):
            continue
        if r["Shared"] and not all_ and "shared" not in filters:
            continue       # without all: only what nothing else keeps
        out.append(r)
    return out


def prune(store: Any, images: Any, *, all_: bool = False, filters: dict | None = None,
          keep_storage: int = 0, now: float | None = None) -> dict:
    """``POST /build/prune`` (blocking): {"CachesDeleted": [...], "SpaceReclaimed": n}."""
    now = time.time() if now is None else now
    norm: dict[str, list[str]] = {}
    for k, v in (filters or {}).items():
        norm[k] = list(v.keys()) if isinstance(v, dict) else ([v] if isinstance(v, str)
                                                              else list(v))
    recs = records(store, images)
    chosen = _select(recs, norm, all_, now)
    if keep_storage > 0:
        # the least recently used first, until what stays fits
        total = sum(r["Size"] for r in recs)
        keep = []
        for r in sorted(chosen, key=lambda r: r["_last"]):
            if total <= keep_storage:
                break
            keep.append(r)
            total -= r["Size"]
        chosen = keep
    deleted, reclaimed = [], 0
    for r in chosen:
        if r.get("_remove"):
            freed = _remove_storage(getattr(images, "root", ""), r["_remove"])
            if freed is not None:
                deleted.append(r["ID"])
                reclaimed += freed
    chosen = [r for r in chosen if not r.get("_remove")]
    doomed = {r["_image"]: r for r in chosen if not r["Shared"]}
    # children before parents: an image whose child is also doomed waits for it
    du = {im["Id"]: im.get("ParentId") or "" for im in images.disk_usage().get("Images") or []}
    parent_of = {iid: du.get(iid, "") for iid in doomed}
    left = dict(doomed)
    while left:
        progressed = False
        for iid in list(left):
            if any(parent_of.get(c) == iid for c in left if c != iid):
                continue
            r = left.pop(iid)
            progressed = True
            try:
                if images.has_image(iid):
                    images.remove(iid, force=False, noprune=True)
            except (Conflict, NotFound):
                continue   # something else (a container, a child image) still needs it
            store.execute("DELETE FROM build_cache WHERE key = ?", (r["_key"],))
            deleted.append(r["ID"])
            reclaimed += r["Size"]
        if not progressed:
            break
    for r in chosen:
        if r["Shared"]:
            store.execute("DELETE FROM build_cache WHERE key = ?", (r["_key"],))
            deleted.append(r["ID"])
    return {"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed}
