"""The registry's semantics over its storage. Knows the protocol's rules and
errors, nothing of HTTP: the server translates requests into these calls.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dockyard.distribution import manifest as mf
from dockyard.distribution.errors import ErrorCode, RegistryError
from dockyard.distribution.http import paginate
from dockyard.distribution.reference import Digest, parse_reference, validate_name
from dockyard.distribution.upload import Chunk, Commit, UploadSession, UploadState
from dockyard.registry.storage import Storage, UploadInfo, UploadWriter


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int
    path: Path


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    body: bytes


def _host_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def _digest(value: str) -> Digest:
    return Digest.parse(value)


class Registry:
    def __init__(self, storage: Storage, allow_delete: bool = True):
        self.storage = storage
        self.allow_delete = allow_delete

    # -- names -------------------------------------------------------------------

    @staticmethod
    def check_name(name: str) -> None:
        validate_name(name)

    def _require_repo(self, name: str) -> None:
        if not self.storage.repo_exists(name):
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": name})

    # -- blobs -------------------------------------------------------------------

    def blob(self, name: str, digest: str) -> BlobInfo:
        """A blob visible in ``name`` (uploaded or mounted there, or one of its
        manifests), or BLOB_UNKNOWN."""
        d = _digest(digest)
        st = self.storage
        if st.blob_linked(name, d) or st.get_revision(name, d) is not None:
            size = st.blob_size(d)
            if size is not None:
                return BlobInfo(d, size, st.blob_path(d))
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})

    def delete_blob(self, name: str, digest: str) -> None:
        self._check_delete()
        d = _digest(digest)
        if not self.storage.unlink_blob(name, d):
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})

    def _check_delete(self) -> None:
        if not self.allow_delete:
            raise RegistryError(ErrorCode.UNSUPPORTED, "deletes are disabled on this registry")

    def mount(self, name: str, digest: str, from_name: str | None) -> Digest | None:
        """Cross-repository mount: link ``digest`` into ``name`` if ``from_name``
        (or, when None, any repository) has it. None means "not possible"."""
        d = _digest(digest)
        st = self.storage
        if st.blob_size(d) is None:
            return None
        if from_name is not None:
            validate_name(from_name)
            if not (st.blob_linked(from_name, d) or st.get_revision(from_name, d) is not None):
                return None
        st.touch_blob(d)
        st.link_blob(name, d)
        return d

    # -- uploads -----------------------------------------------------------------

    def start_upload(self, name: str) -> UploadInfo:
        return self.storage.create_upload(name)

    def upload(self, name: str, uuid: str) -> UploadInfo:
        return self.storage.get_upload(name, uuid)

    @staticmethod
    def session(info: UploadInfo) -> UploadSession:
        """The state machine for a session on disk: open, at its data size."""
        return UploadSession(UploadState.OPEN, info.offset)

    def check_chunk(self, info: UploadInfo, start: int | None, length: int | None) -> None:
        """Raise (416 with the current Range) unless a chunk may go at ``start``."""
        self.session(info).check(Chunk(length or 0, start))

    def open_writer(self, info: UploadInfo) -> UploadWriter:
        return self.storage.open_writer(info)

    def finish_upload(self, info: UploadInfo, writer: UploadWriter, digest: str | None) -> Digest:
        """Verify and commit. The session is gone afterwards, either way."""
        if not digest:
            # Leave the session open: the client can still PUT with a digest.
            raise RegistryError(ErrorCode.DIGEST_INVALID, "digest parameter missing")
        try:
            expected = _digest(digest)
        except RegistryError:
            self.storage.delete_upload(info.uuid)
            raise
        self.session(info).check(Commit())
        self.storage.commit_upload(info, expected, writer.digester.digest())
        return expected

    def cancel_upload(self, name: str, uuid: str) -> None:
        self.storage.get_upload(name, uuid)
        self.storage.delete_upload(uuid)

    # -- manifests -----------------------------------------------------------------

    def put_manifest(self, name: str, reference: str, body: bytes,
                     content_type: str | None) -> tuple[Digest, Digest | None]:
        """Validate and store; returns (digest, subject digest or None).

        Nothing is stored unless everything checks out.
        """
        ref = self._reference(name, reference, put=True)
        m = mf.parse_manifest(body, content_type)
        if isinstance(ref, Digest):
            actual = m.digest if ref.algorithm == "sha256" else Digest.from_bytes(body, ref.algorithm)
            if actual != ref:
                raise RegistryError(ErrorCode.DIGEST_INVALID,
                                    f"manifest digest {actual} does not match {ref}",
                                    detail={"digest": str(ref)})
        st = self.storage
        missing = []
        for desc in m.blob_references():
            if not st.blob_linked(name, desc.digest) or st.blob_size(desc.digest) is None:
                missing.append(str(desc.digest))
        for desc in m.manifest_references():
            if st.get_revision(name, desc.digest) is None:
                missing.append(str(desc.digest))
        if missing:
            raise RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN,
                                f"manifest references unknown blobs or manifests: {', '.join(missing)}",
                                detail={"digests": missing})
        # Referenced blobs count as fresh for gc's grace period from now on.
        for desc in m.blob_references():
            st.touch_blob(desc.digest)
        digest = m.digest if not isinstance(ref, Digest) else ref
        st.put_blob_bytes(body, digest)
        meta = {"mediaType": m.media_type, "size": len(body)}
        if m.subject is not None:
            meta["subject"] = str(m.subject.digest)
        st.put_revision(name, digest, meta)
        if isinstance(ref, str):
            st.set_tag(name, ref, digest)
        if m.subject is not None:
            desc = m.descriptor()
            desc_json = mf.Descriptor(desc.media_type, digest, desc.size,
                                      artifact_type=desc.artifact_type,
                                      annotations=desc.annotations).to_json()
            st.add_referrer(name, m.subject.digest, desc_json)
        return digest, (m.subject.digest if m.subject else None)

    def _reference(self, name: str, reference: str, put: bool = False) -> str | Digest:
        """A URL's manifest reference (a digest or a tag). Not a valid tag: no
        manifest can be known by it, so a read or delete answers 404
        MANIFEST_UNKNOWN (the spec's clients expect it; TAG_INVALID is not a
        spec code) and a PUT 400 MANIFEST_INVALID."""
        try:
            return parse_reference(reference)
        except RegistryError as e:
            if e.code is not ErrorCode.TAG_INVALID:
                raise
        if put:
            raise RegistryError(ErrorCode.MANIFEST_INVALID, f"invalid tag {reference!r}",
                                detail={"tag": reference})
        self._require_repo(name)
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": reference})

    def resolve(self, name: str, reference: str) -> Digest:
        ref = self._reference(name, reference)
        if isinstance(ref, Digest):
            if self.storage.get_revision(name, ref) is None:
                self._require_repo(name)
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": reference})
            return ref
        d = self.storage.get_tag(name, ref)
        if d is None or self.storage.get_revision(name, d) is None:
            self._require_repo(name)
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": ref})
        return d

    def get_manifest(self, name: str, reference: str, accept: list[str] = ()) -> StoredManifest:
        d = self.resolve(name, reference)
        stored = self._load(name, d)
        decision = mf.negotiate(stored.media_type, list(accept))
        if decision == mf.SERVE:
            return stored
        if decision == mf.PICK_PLATFORM:
            index = mf.parse_manifest(stored.body, stored.media_type)
            pick = mf.select_platform(index, "linux", _host_arch()) or mf.select_platform(index)
            if pick is not None and self.storage.get_revision(name, pick.digest) is not None:
                child = self._load(name, pick.digest)
                if mf.negotiate(child.media_type, list(accept)) == mf.SERVE:
                    return child
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN,
                            f"manifest is {stored.media_type}, which the Accept header does not allow",
                            detail={"reference": reference})

    def _load(self, name: str, d: Digest) -> StoredManifest:
        meta = self.storage.get_revision(name, d) or {}
        try:
            body = self.storage.read_blob(d)
        except FileNotFoundError:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(d)}) from None
        media_type = meta.get("mediaType") or json.loads(body).get("mediaType") or mf.OCI_MANIFEST
        return StoredManifest(d, media_type, body)

    def delete_manifest(self, name: str, reference: str) -> None:
        self._check_delete()
        ref = self._reference(name, reference)
        st = self.storage
        if isinstance(ref, str):
            if not st.delete_tag(name, ref):
                self._require_repo(name)
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": ref})
            return
        meta = st.get_revision(name, ref)
        if meta is None:
            self._require_repo(name)
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(ref)})
        for tag in st.tags(name):
            if st.get_tag(name, tag) == ref:
                st.delete_tag(name, tag)
        if meta.get("subject"):
            st.remove_referrer(name, Digest.parse(meta["subject"]), ref)
        st.delete_revision(name, ref)

    # -- listings ------------------------------------------------------------------

    def tags(self, name: str, n: int | None, last: str | None) -> tuple[list[str], str | None]:
        self._require_repo(name)
        return paginate(self.storage.tags(name), n, last)

    def catalog(self, n: int | None, last: str | None) -> tuple[list[str], str | None]:
        return paginate(self.storage.repositories(), n, last)

    def referrers(self, name: str, digest: str, artifact_type: str | None) -> dict:
        d = _digest(digest)
        descs = []
        for raw in self.storage.referrers(name, d):
            try:
                descs.append(mf.Descriptor.from_json(raw, "referrer"))
            except RegistryError:
                continue
            # a referrer deleted since is not listed
            if self.storage.get_revision(name, descs[-1].digest) is None:
                descs.pop()
        return mf.referrers_index(descs, artifact_type)

    def search(self, query: str, n: int, page: int, visible: Callable[[str], bool]) -> dict:
        """Docker Hub's /v1/search answer over the repositories held here."""
        q = query.strip().lower()
        names = [r for r in self.storage.repositories() if q in r.lower() and visible(r)]
        n = max(1, min(n, 100))
        page = max(1, page)
        chunk = names[(page - 1) * n: page * n]
        return {
            "num_results": len(names),
            "num_pages": max(1, -(-len(names) // n)),
            "page": page,
            "page_size": n,
            "query": query,
            "results": [{"name": r, "description": "", "star_count": 0, "is_official": False,
                         "is_automated": False} for r in chunk],
        }


