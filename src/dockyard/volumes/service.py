"""The volume service: create, inspect, list, remove, prune; mount and unmount for the
container service; usage for ``system df`` (no HTTP here).

Records are held in memory (loaded at start), so listing a thousand volumes reads no
file. Which containers use a volume is the container service's knowledge, asked
through ``set_users`` (a volume is never removed while any container, running or
not, references it).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Callable

from dockyard import errors
from dockyard.volumes import local, names
from dockyard.volumes.store import VolumeStore

ANON_LABEL = "com.docker.volume.anonymous"


def _rfc3339(t: float) -> str:
    lt = time.localtime(t)
    off = lt.tm_gmtoff
    if off == 0:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", lt)
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"


def _truthy(v: str, key: str) -> bool:
    if v.lower() in ("1", "true"):
        return True
    if v.lower() in ("0", "false"):
        return False
    raise errors.InvalidParameter(f"invalid filter '{key}={v}'")


class VolumeService:
    def __init__(self, root: str, emit: Callable[..., None] | None = None) -> None:
        self.store = VolumeStore(root)
        self.emit = emit or (lambda *a, **k: None)
        self.volumes: dict[str, dict] = self.store.load()
        self._users: Callable[[str], list[str]] = lambda name: []
        self._mounted: dict[str, set[str]] = {}     # name -> containers that mounted it
        self._lock = threading.RLock()
        self._views: dict[str, dict] = {}   # name -> inspect view (without UsageData)

    def set_users(self, fn: Callable[[str], list[str]]) -> None:
        """``fn(name)``: ids of the containers referencing the volume."""
        self._users = fn

    # ---- views -------------------------------------------------------------------
    def _view(self, rec: dict, usage: bool = False) -> dict:
        if not usage:   # records never change after create: their views are kept
            v = self._views.get(rec["Name"])
            if v is None:
                v = self._views[rec["Name"]] = self._make_view(rec)
            return v
        return self._make_view(rec, usage)

    def _make_view(self, rec: dict, usage: bool = False) -> dict:
        out = {"CreatedAt": rec["CreatedAt"], "Driver": rec["Driver"],
               "Labels": rec.get("Labels") or None, "Mountpoint": self.store.data(rec["Name"]),
               "Name": rec["Name"], "Options": rec.get("Options") or None, "Scope": "local"}
        if usage:
            out["UsageData"] = {"Size": self.size(rec["Name"]),
                                "RefCount": len(self._users(rec["Name"]))}
        return out

    def get(self, name: str, usage: bool = False) -> dict:
        rec = self.volumes.get(name)
        if rec is None:
            raise errors.NotFound(f"get {name}: no such volume")
        return self._view(rec, usage)

    def exists(self, name: str) -> bool:
        return name in self.volumes

    def is_anonymous(self, name: str) -> bool:
        rec = self.volumes.get(name)
        return rec is not None and ANON_LABEL in (rec.get("Labels") or {})

    def list(self, filters: dict | None = None) -> dict:
        filters = filters or {}
        for k in filters:
            if k not in ("dangling", "name", "label", "driver"):
                raise errors.InvalidParameter(f"invalid filter '{k}'")
        if not filters:
            out = [self._view(r) for r in list(self.volumes.values())]
        else:
            out = [self._view(r) for r in list(self.volumes.values()) if self._match(r, filters)]
        return {"Volumes": out, "Warnings": None}

    def _match(self, rec: dict, filters: dict) -> bool:
        for v in filters.get("name") or []:
            if not re.search(v, rec["Name"]):
                return False
        if filters.get("name") is not None and not filters["name"]:
            pass
        for v in filters.get("driver") or []:
            if v != rec["Driver"]:
                return False
        labels = rec.get("Labels") or {}
        for want in filters.get("label") or []:
            k, sep, v = want.partition("=")
            if k not in labels or (sep and labels[k] != v):
                return False
        for want in filters.get("label!") or []:
            k, sep, v = want.partition("=")
            if k in labels and (not sep or labels[k] == v):
                return False
        for v in filters.get("dangling") or []:
            if _truthy(v, "dangling") == bool(self._users(rec["Name"])):
                return False
        return True

    def size(self, name: str) -> int:
        from dockyard.snapshots.base import dir_usage

        try:
            return int(dir_usage(self.store.data(name))["size"])
        except OSError:
            return -1

    # ---- create, remove, prune -----------------------------------------------------
    def create(self, name: str | None = None, driver: str | None = None,
               driver_opts: dict | None = None, labels: dict | None = None,
               anonymous: bool = False, created_for: str | None = None) -> tuple[dict, bool]:
        """(the volume, whether it was made now). An existing name returns it.
        ``created_for``: the id of the container whose create makes this anonymous volume
        (kept in its record: boot recovery removes it if that create did not finish)."""
        driver = driver or "local"
        if driver != "local":
            raise errors.NotFound(f"error looking up volume plugin {driver}: plugin "
                                  f"\"{driver}\" not found")
        if labels is not None and not (isinstance(labels, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
            raise errors.InvalidParameter("invalid Labels: expected an object of strings")
        if not name:
            name = names.anonymous()
            anonymous = True
        names.validate(name)
        opts = local.validate_opts(driver_opts, name)
        with self._lock:
            rec = self.volumes.get(name)
            if rec is not None:
                return self._view(rec), False
            labels = dict(labels or {})
            if anonymous:
                labels.setdefault(ANON_LABEL, "")
            rec = {"Name": name, "Driver": driver, "Labels": labels, "Options": opts,
                   "CreatedAt": _rfc3339(time.time())}
            if anonymous and created_for:
                rec["CreatedFor"] = created_for
            try:
                self.store.create(rec)
            except FileExistsError:
                raise errors.Conflict(f"volume {name}: a directory of that name exists in the "
                                      f"data root") from None
            self.volumes[name] = rec
        self.emit("volume", "create", name, {"driver": driver})
        return self._view(rec), True

    def remove(self, name: str, force: bool = False) -> None:
        with self._lock:
            rec = self.volumes.get(name)
            if rec is None:
                if force:
                    return
                raise errors.NotFound(f"get {name}: no such volume")
            users = self._users(name)
            if users:
                raise errors.Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            if self._mounted.get(name):
                raise errors.Conflict(f"remove {name}: volume is in use - "
                                      f"[{', '.join(sorted(self._mounted[name]))}]")
            del self.volumes[name]
            self._views.pop(name, None)
            self.store.remove(name)
        self.emit("volume", "destroy", name, {"driver": rec["Driver"]})

    def made_for(self, container_id: str) -> list[str]:
        """The anonymous volumes made by the create of container ``container_id``."""
        return [n for n, r in list(self.volumes.items())
                if r.get("CreatedFor") == container_id and ANON_LABEL in (r.get("Labels") or {})]

    def prune(self, filters: dict | None = None) -> dict:
        filters = dict(filters or {})
        all_ = False
        for v in filters.pop("all", []) or []:
            all_ = _truthy(v, "all")
        for k in filters:
            if k not in ("label", "label!"):
                raise errors.InvalidParameter(f"invalid filter '{k}'")
        deleted, space = [], 0
        for name, rec in list(self.volumes.items()):
            if not all_ and ANON_LABEL not in (rec.get("Labels") or {}):
                continue
            if not self._match(rec, filters) or self._users(name):
                continue
            size = self.size(name)
            try:
                self.remove(name)
            except errors.Conflict:
                continue
            deleted.append(name)
            space += max(size, 0)
        self.emit("volume", "prune", "", {"reclaimed": str(space)})
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": space}

    # ---- mounts (for the container service) -------------------------------------------
    def mount(self, name: str, container_id: str) -> str:
        """The host path of the volume's content for a container that starts with it
        (the driver's options applied at the first user)."""
        with self._lock:
            rec = self.volumes.get(name)
            if rec is None:
                raise errors.NotFound(f"get {name}: no such volume")
            users = self._mounted.setdefault(name, set())
            path = self.store.data(name)
            opts = rec.get("Options") or {}
            if not users and local.needs_mount(opts):
                from dockyard.snapshots import mount as snapmount

                if not snapmount.is_mountpoint(path):
                    local.mount(opts, path)
            users.add(container_id)
            return path

    def unmount(self, name: str, container_id: str) -> bool:
        """The container no longer uses the volume; False if it had not mounted it."""
        with self._lock:
            users = self._mounted.get(name)
            if not users or container_id not in users:
                return False
            users.discard(container_id)
            rec = self.volumes.get(name)
            if not users:
                self._mounted.pop(name, None)
                if rec is not None and local.needs_mount(rec.get("Options") or {}):
                    local.unmount(self.store.data(name))
            return True

    def restore_mounted(self, name: str, container_id: str) -> None:
        """At boot: a container that kept running holds the volume mounted."""
        with self._lock:
            if name in self.volumes:
                self._mounted.setdefault(name, set()).add(container_id)

    def df(self) -> list[dict]:
        return [self._view(r, usage=True) for r in list(self.volumes.values())]
