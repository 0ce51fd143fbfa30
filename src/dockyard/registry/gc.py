"""Garbage collection: mark every blob reachable from the manifests of every
repository, sweep the rest.

Safe while the registry serves pushes, without a read-only window:
- a blob younger than the grace period is kept (an upload just committed,
  whose manifest has not arrived yet); mounts, re-uploads and manifest PUTs
  refresh a blob's age;
- upload sessions are never touched unless abandoned for longer than
  ``upload_max_age`` (their data is not a blob until committed, so nothing
  in progress can be swept);
- a blob being downloaded keeps its data until the reader closes it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from dockyard.distribution import manifest as mf
from dockyard.distribution.errors import RegistryError
from dockyard.distribution.reference import Digest
from dockyard.registry.storage import Storage

DEFAULT_GRACE = 3600.0
DEFAULT_UPLOAD_MAX_AGE = 7 * 86400.0


@dataclass
class GcResult:
    marked: set[Digest] = field(default_factory=set)
    deleted: list[tuple[Digest, int]] = field(default_factory=list)  # (digest, size)
    kept_young: list[Digest] = field(default_factory=list)
    stale_uploads: list[str] = field(default_factory=list)
    dangling_links: list[tuple[str, Digest]] = field(default_factory=list)
    untagged: list[tuple[str, Digest]] = field(default_factory=list)  # manifests removed

    @property
    def freed(self) -> int:
        return sum(size for _, size in self.deleted)


def _follow(storage: Storage, roots: list[Digest], marked: set[Digest]) -> None:
    """Add ``roots`` and everything they reference (children, config, layers, subject)."""
    todo = list(roots)
    while todo:
        d = todo.pop()
        if d in marked:
            continue
        marked.add(d)
        try:
            body = storage.read_blob(d)
        except FileNotFoundError:
            continue
        try:
            m = mf.parse_manifest(body)
        except RegistryError:
            continue  # not a manifest (or one we cannot read): follow nothing
        if m.config is not None:
            marked.add(m.config.digest)
        for layer in m.layers:
            marked.add(layer.digest)
        for child in m.manifests:
            todo.append(child.digest)
        if m.subject is not None:
            todo.append(m.subject.digest)


def mark(storage: Storage, untagged: bool = True) -> set[Digest]:
    """Every digest reachable from the manifests of every repository.

    With ``untagged`` False the roots are the tags only, plus, repeatedly,
    any manifest whose subject is marked (signatures and other referrers
    live as long as what they refer to).
    """
    marked: set[Digest] = set()
    repos = storage.repositories()
    if untagged:
        _follow(storage, [d for r in repos for d in storage.revisions(r)], marked)
        return marked
    roots = [d for r in repos for t in storage.tags(r) if (d := storage.get_tag(r, t)) is not None]
    _follow(storage, roots, marked)
    subjects = {(r, d): (storage.get_revision(r, d) or {}).get("subject") for r in repos
                for d in storage.revisions(r)}
    while True:
        more = [d for (_, d), subj in subjects.items()
                if subj and d not in marked and Digest.parse(subj) in marked]
        if not more:
            return marked
        _follow(storage, more, marked)


def collect(storage: Storage, grace: float = DEFAULT_GRACE, dry_run: bool = False,
            upload_max_age: float = DEFAULT_UPLOAD_MAX_AGE, delete_untagged: bool = False,
            log=None) -> GcResult:
    log = log or (lambda _msg: None)
    verb = "would delete" if dry_run else "deleted"
    result = GcResult(marked=mark(storage, untagged=not delete_untagged))
    if delete_untagged:
        # Manifests no tag reaches go first; their blobs are then swept below.
        for repo in storage.repositories():
            for d in storage.revisions(repo):
                if d in result.marked:
                    continue
                result.untagged.append((repo, d))
                log(f"{verb} untagged manifest {repo}@{d}")
                if not dry_run:
                    meta = storage.get_revision(repo, d) or {}
                    if meta.get("subject"):
                        storage.remove_referrer(repo, Digest.parse(meta["subject"]), d)
                    storage.delete_revision(repo, d)
    now = time.time()
    for digest, path in list(storage.iter_blobs()):
        if digest in result.marked:
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if now - st.st_mtime < grace:
            result.kept_young.append(digest)
            continue
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
        result.deleted.append((digest, st.st_size))
        log(f"{verb} blob {digest} ({st.st_size} bytes)")
    gone = {d for d, _ in result.deleted}
    for repo in storage.repositories():
        for d in storage.linked_blobs(repo):
            if d in gone or (not dry_run and storage.blob_size(d) is None):
                result.dangling_links.append((repo, d))
                if not dry_run:
                    storage.unlink_blob(repo, d)
    for uuid, _meta, mtime in storage.list_uploads():
        if now - mtime > upload_max_age:
            result.stale_uploads.append(uuid)
            log(f"{verb} abandoned upload {uuid}")
            if not dry_run:
                storage.delete_upload(uuid)
    log(f"{len(result.marked)} marked, {len(result.deleted)} blobs {verb} "
        f"({result.freed} bytes), {len(result.kept_young)} unreferenced but younger than "
        f"{grace:g}s kept, {len(result.stale_uploads)} abandoned uploads {verb}")
    return result
