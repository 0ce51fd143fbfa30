"""The registry's filesystem layout. Plain files, no HTTP, no protocol rules.

    <root>/blobs/<alg>/<xx>/<hex>                  content-addressed data (blobs and manifests)
    <root>/uploads/<uuid>/data                     bytes received so far
    <root>/uploads/<uuid>/session.json             {"name", "started_at", "state"}
    <root>/repositories/<name>/_layers/<alg>/<hex>                 blob visible in <name>
    <root>/repositories/<name>/_manifests/revisions/<alg>/<hex>    manifest in <name> (JSON metadata)
    <root>/repositories/<name>/_manifests/tags/<tag>               digest the tag points at
    <root>/repositories/<name>/_referrers/<alg>/<subject-hex>/<alg>-<hex>   descriptor JSON

Invariants (the crash story): a file under ``blobs/`` only ever appears by
``rename`` of a fully written and verified upload, so it is whole; links and
tags are written to a temporary name and renamed. A kill -9 at any moment
leaves at worst an upload session (resumable, or swept by gc) and never a
blob with the wrong content.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from dockyard import statefiles
from dockyard.distribution.errors import ErrorCode, RegistryError
from dockyard.distribution.reference import Digest, Digester

WRITE_BUFFER = 4 * 1024 * 1024


def _write_atomic(path: Path, data: bytes) -> None:
    statefiles.makedirs(path.parent)
    tmp = path.with_name(f".{path.name}.{uuidlib.uuid4().hex[:8]}.tmp")
    with open(statefiles.create(tmp, os.O_WRONLY | os.O_EXCL), "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class UploadInfo:
    uuid: str
    name: str
    offset: int
    started_at: float


class UploadWriter:
    """Appends to an upload's data file and digests what it writes.

    Blocking calls: the server runs them in a thread so the event loop keeps
    serving; hashlib releases the GIL for large buffers.
    """

    def __init__(self, storage: "Storage", info: UploadInfo, digester: Digester):
        self.storage = storage
        self.info = info
        self.digester = digester
        self._f = open(storage.upload_dir(info.uuid) / "data", "ab", buffering=0)

    @property
    def offset(self) -> int:
        return self.digester.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = self._f.write(view)
            view = view[n:]
        self.digester.update(data)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
        # Keep the running digest so the next chunk need not re-read the file.
        self.storage._digesters[self.info.uuid] = self.digester


class Storage:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.uploads = self.root / "uploads"
        self.repos = self.root / "repositories"
        # Owner-only (0700 directories, 0600 files): what was pushed is for the registry's
        # clients, through its auth, not for other local users. A root made 0755 (by an
        # older version, or by mkdir) is tightened.
        statefiles.makedirs(self.root)
        try:
            statefiles.restrict(self.root, file_mode=None)
        except PermissionError:
            pass            # someone else's directory: its owner decides
        for d in (self.blobs, self.uploads, self.repos):
            statefiles.makedirs(d)
        # uuid -> digest of the data file so far (a cache; the file is the truth)
        self._digesters: dict[str, Digester] = {}

    # -- blobs ---------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        return self.blobs / digest.algorithm / digest.hex[:2] / digest.hex

    def blob_size(self, digest: Digest) -> int | None:
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            return None

    def read_blob(self, digest: Digest) -> bytes:
        return self.blob_path(digest).read_bytes()

    def put_blob_bytes(self, data: bytes, digest: Digest) -> None:
        """Store small content (a manifest) already verified against ``digest``."""
        path = self.blob_path(digest)
        if not self._refresh(path):
            _write_atomic(path, data)

    def iter_blobs(self):
        """(Digest, path) for every stored blob."""
        for alg_dir in sorted(self.blobs.iterdir()):
            if not alg_dir.is_dir():
                continue
            for fan in sorted(alg_dir.iterdir()):
                if not fan.is_dir():
                    continue
                for f in sorted(fan.iterdir()):
                    if f.name.startswith("."):
                        continue
                    yield Digest(alg_dir.name, f.name), f

    @staticmethod
    def _refresh(path: Path) -> bool:
        """Mark an existing blob as fresh; False if it is not there (or a
        concurrent gc just removed it), so the caller writes it."""
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            return False

    def touch_blob(self, digest: Digest) -> None:
        """Mark a blob as recently used (gc's grace period counts from here)."""
        try:
            os.utime(self.blob_path(digest))
        except FileNotFoundError:
            pass

    # -- repositories: links -------------------------------------------------

    def repo_dir(self, name: str) -> Path:
        return self.repos / name

    def repo_exists(self, name: str) -> bool:
        d = self.repo_dir(name)
        return (d / "_manifests").is_dir() or (d / "_layers").is_dir()

    def _layer_link(self, name: str, digest: Digest) -> Path:
        return self.repo_dir(name) / "_layers" / digest.algorithm / digest.hex

    def link_blob(self, name: str, digest: Digest) -> None:
        link = self._layer_link(name, digest)
        if not link.exists():
            _write_atomic(link, str(digest).encode())

    def blob_linked(self, name: str, digest: Digest) -> bool:
        return self._layer_link(name, digest).exists()

    def unlink_blob(self, name: str, digest: Digest) -> bool:
        try:
            self._layer_link(name, digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def linked_blobs(self, name: str) -> list[Digest]:
        out = []
        base = self.repo_dir(name) / "_layers"
        if base.is_dir():
            for alg in base.iterdir():
                for f in alg.iterdir():
                    if not f.name.startswith("."):
                        out.append(Digest(alg.name, f.name))
        return out

    # -- repositories: manifests, tags, referrers ------------------------------

    def _revision(self, name: str, digest: Digest) -> Path:
        return self.repo_dir(name) / "_manifests" / "revisions" / digest.algorithm / digest.hex

    def _tag(self, name: str, tag: str) -> Path:
        return self.repo_dir(name) / "_manifests" / "tags" / tag

    def put_revision(self, name: str, digest: Digest, meta: dict) -> None:
        _write_atomic(self._revision(name, digest), json.dumps(meta).encode())

    def get_revision(self, name: str, digest: Digest) -> dict | None:
        try:
            return json.loads(self._revision(name, digest).read_bytes())
        except FileNotFoundError:
            return None

    def delete_revision(self, name: str, digest: Digest) -> bool:
        try:
            self._revision(name, digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def revisions(self, name: str) -> list[Digest]:
        out = []
        base = self.repo_dir(name) / "_manifests" / "revisions"
        if base.is_dir():
            for alg in base.iterdir():
                for f in alg.iterdir():
                    if not f.name.startswith("."):
                        out.append(Digest(alg.name, f.name))
        return out

    def set_tag(self, name: str, tag: str, digest: Digest) -> None:
        _write_atomic(self._tag(name, tag), str(digest).encode())

    def get_tag(self, name: str, tag: str) -> Digest | None:
        try:
            return Digest.parse(self._tag(name, tag).read_text().strip())
        except (FileNotFoundError, RegistryError):
            return None

    def delete_tag(self, name: str, tag: str) -> bool:
        try:
            self._tag(name, tag).unlink()
            return True
        except FileNotFoundError:
            return False

    def tags(self, name: str) -> list[str]:
        base = self.repo_dir(name) / "_manifests" / "tags"
        if not base.is_dir():
            return []
        return sorted(f.name for f in base.iterdir() if not f.name.startswith("."))

    def _referrers_dir(self, name: str, subject: Digest) -> Path:
        return self.repo_dir(name) / "_referrers" / subject.algorithm / subject.hex

    def add_referrer(self, name: str, subject: Digest, descriptor: dict) -> None:
        d = Digest.parse(descriptor["digest"])
        _write_atomic(self._referrers_dir(name, subject) / f"{d.algorithm}-{d.hex}",
                      json.dumps(descriptor).encode())

    def remove_referrer(self, name: str, subject: Digest, referrer: Digest) -> None:
        try:
            (self._referrers_dir(name, subject) / f"{referrer.algorithm}-{referrer.hex}").unlink()
        except FileNotFoundError:
            pass

    def referrers(self, name: str, subject: Digest) -> list[dict]:
        base = self._referrers_dir(name, subject)
        if not base.is_dir():
            return []
        out = []
        for f in sorted(base.iterdir()):
            if f.name.startswith("."):
                continue
            try:
                out.append(json.loads(f.read_bytes()))
            except (OSError, ValueError):
                continue
        return out

    def repositories(self) -> list[str]:
        """Every repository name (directories holding _manifests or _layers)."""
        out = []
        if not self.repos.is_dir():
            return out
        for dirpath, dirnames, _ in os.walk(self.repos):
            rel = os.path.relpath(dirpath, self.repos)
            if "_manifests" in dirnames or "_layers" in dirnames:
                out.append(rel)
            # never descend into our own bookkeeping
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(out)

    # -- uploads ---------------------------------------------------------------

    def upload_dir(self, uuid: str) -> Path:
        return self.uploads / uuid

    def create_upload(self, name: str) -> UploadInfo:
        uuid = str(uuidlib.uuid4())
        tmp = self.uploads / f".{uuid}.tmp"
        tmp.mkdir(statefiles.DIR_MODE)
        os.close(statefiles.create(tmp / "data"))
        now = time.time()
        statefiles.write(tmp / "session.json",
                         json.dumps({"name": name, "started_at": now, "state": "open"}))
        os.rename(tmp, self.upload_dir(uuid))
        self._digesters[uuid] = Digester()
        return UploadInfo(uuid, name, 0, now)

    def get_upload(self, name: str, uuid: str) -> UploadInfo:
        """The session ``uuid`` of repository ``name``, or BLOB_UPLOAD_UNKNOWN."""
        unknown = RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": uuid})
        if not uuid or "/" in uuid or uuid.startswith("."):
            raise unknown
        d = self.upload_dir(uuid)
        try:
            meta = json.loads((d / "session.json").read_bytes())
            size = os.stat(d / "data").st_size
        except (OSError, ValueError):
            raise unknown from None
        if meta.get("name") != name:
            raise unknown
        return UploadInfo(uuid, name, size, float(meta.get("started_at", 0)))

    def list_uploads(self) -> list[tuple[str, dict, float]]:
        """(uuid, session metadata, mtime of its data) for every session on disk."""
        out = []
        for d in self.uploads.iterdir():
            if d.name.startswith("."):
                continue
            try:
                meta = json.loads((d / "session.json").read_bytes())
                mtime = os.stat(d / "data").st_mtime
            except (OSError, ValueError):
                meta, mtime = {}, d.stat().st_mtime
            out.append((d.name, meta, mtime))
        return out

    def open_writer(self, info: UploadInfo) -> UploadWriter:
        """A writer positioned at the end of the data received so far.

        The running digest is reused when it matches the file; after a
        restart it is rebuilt by reading the file once.
        """
        dg = self._digesters.get(info.uuid)
        if dg is None or dg.size != info.offset:
            dg = Digester()
            with open(self.upload_dir(info.uuid) / "data", "rb") as f:
                while dg.size < info.offset:
                    chunk = f.read(min(WRITE_BUFFER, info.offset - dg.size))
                    if not chunk:
                        break
                    dg.update(chunk)
        return UploadWriter(self, info, dg)

    def commit_upload(self, info: UploadInfo, expected: Digest, writer_digest: Digest) -> None:
        """Turn a finished upload into a blob: verified, synced, renamed.

        Raises DIGEST_INVALID (and discards the data) when the content is not
        what the client said.
        """
        d = self.upload_dir(info.uuid)
        data = d / "data"
        if expected.algorithm != writer_digest.algorithm:
            # The client names another algorithm: digest the file with it.
            dg = Digester(expected.algorithm)
            with open(data, "rb") as f:
                while chunk := f.read(WRITE_BUFFER):
                    dg.update(chunk)
            writer_digest = dg.digest()
        if writer_digest != expected:
            self.delete_upload(info.uuid)
            raise RegistryError(ErrorCode.DIGEST_INVALID,
                                f"content digest {writer_digest} does not match {expected}",
                                detail={"digest": str(expected)})
        target = self.blob_path(expected)
        if not self._refresh(target):
            with open(data, "rb+") as f:
                os.fsync(f.fileno())
            statefiles.makedirs(target.parent)
            os.replace(data, target)
        self.link_blob(info.name, expected)
        self.delete_upload(info.uuid)

    def delete_upload(self, uuid: str) -> None:
        self._digesters.pop(uuid, None)
        d = self.upload_dir(uuid)
        # Rename first so a reader never sees a half-deleted session.
        trash = self.uploads / f".{uuid}.{uuidlib.uuid4().hex[:6]}.del"
        try:
            os.rename(d, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)
