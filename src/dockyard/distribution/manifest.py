"""Manifests: media types, parsing and validation, references, negotiation.

Covers Docker schema 2 manifests and manifest lists, OCI image manifests and
indexes, including the OCI 1.1 ``subject`` and ``artifactType`` fields that the
referrers API is built on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dockyard import boundedjson
from dockyard.distribution.errors import ErrorCode, RegistryError
from dockyard.distribution.reference import Digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

IMAGE_MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
MANIFEST_TYPES = IMAGE_MANIFESTS + INDEXES

# What a client should send as Accept when fetching a manifest.
ACCEPT_ALL = ", ".join(MANIFEST_TYPES)

MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    platform: dict | None = None
    artifact_type: str | None = None
    annotations: dict | None = None

    @classmethod
    def from_json(cls, d: Any, where: str) -> "Descriptor":
        if not isinstance(d, dict):
            raise _invalid(f"{where}: descriptor must be an object")
        mt = d.get("mediaType")
        if not isinstance(mt, str) or not mt:
            raise _invalid(f"{where}: descriptor needs a mediaType")
        try:
            digest = Digest.parse(d.get("digest"))
        except RegistryError:
            raise _invalid(f"{where}: invalid digest {d.get('digest')!r}") from None
        size = d.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _invalid(f"{where}: descriptor needs a non-negative size")
        urls = d.get("urls") or ()
        if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
            raise _invalid(f"{where}: urls must be a list of strings")
        platform = d.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise _invalid(f"{where}: platform must be an object")
        annotations = d.get("annotations")
        if annotations is not None and not isinstance(annotations, dict):
            raise _invalid(f"{where}: annotations must be an object")
        at = d.get("artifactType")
        return cls(mt, digest, size, tuple(urls), platform, at if isinstance(at, str) else None,
                   annotations)

    def to_json(self) -> dict:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            d["urls"] = list(self.urls)
        if self.platform:
            d["platform"] = self.platform
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        if self.annotations:
            d["annotations"] = self.annotations
        return d


@dataclass(frozen=True)
class Manifest:
    """A parsed and validated manifest or index."""

    media_type: str
    digest: Digest
    size: int
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    def blob_references(self) -> list[Descriptor]:
        """Blobs that must exist in the repository: config and layers (foreign
        layers, served from their ``urls``, are not required)."""
        out = [self.config] if self.config else []
        out += [layer for layer in self.layers if not layer.urls]
        return out

    def manifest_references(self) -> list[Descriptor]:
        """Manifests an index points at; they must exist in the repository."""
        return list(self.manifests)

    def descriptor(self) -> Descriptor:
        """How this manifest appears in an index (e.g. a referrers list)."""
        artifact = self.artifact_type
        if artifact is None and self.config is not None and not self.is_index:
            artifact = self.config.media_type if self.config.media_type != OCI_EMPTY else None
        return Descriptor(self.media_type, self.digest, self.size, artifact_type=artifact,
                          annotations=self.annotations)


def _invalid(message: str) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, message)


def _base_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def parse_manifest(body: bytes, content_type: str | None = None) -> Manifest:
    """Parse and validate a manifest as uploaded with ``Content-Type``.

    The media type is the ``mediaType`` field, else the Content-Type; they must
    agree when both are given. Raises MANIFEST_INVALID (or UNSUPPORTED for
    schema 1, which is long deprecated).
    """
    if len(body) > MAX_MANIFEST_SIZE:
        raise _invalid(f"manifest larger than {MAX_MANIFEST_SIZE} bytes")
    try:
        doc = boundedjson.loads(body)   # a 100k-deep body is refused, not a RecursionError
    except (ValueError, UnicodeDecodeError) as e:
        raise _invalid(f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    ctype = _base_type(content_type)
    field_type = doc.get("mediaType")
    if field_type is not None and not isinstance(field_type, str):
        raise _invalid("mediaType must be a string")
    if ctype in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or doc.get("schemaVersion") == 1:
        raise RegistryError(ErrorCode.MANIFEST_INVALID, "schema 1 manifests are not supported")
    if field_type and ctype and ctype != "application/json" and field_type != ctype:
        raise _invalid(f"mediaType {field_type!r} does not match Content-Type {ctype!r}")
    media_type = field_type or (ctype if ctype != "application/json" else None)
    if media_type is None:
        # OCI allows omitting mediaType; tell manifest from index by shape.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type {media_type!r}")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")

    digest = Digest.from_bytes(body)
    subject = Descriptor.from_json(doc["subject"], "subject") if doc.get("subject") is not None else None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    annotations = doc.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise _invalid("annotations must be an object")

    if media_type in IMAGE_MANIFESTS:
        if "config" not in doc:
            raise _invalid("image manifest needs a config")
        config = Descriptor.from_json(doc["config"], "config")
        layers_doc = doc.get("layers")
        if layers_doc is None:
            layers_doc = []
        if not isinstance(layers_doc, list):
            raise _invalid("layers must be a list")
        layers = tuple(Descriptor.from_json(d, f"layers[{i}]") for i, d in enumerate(layers_doc))
        if "manifests" in doc:
            raise _invalid("image manifest must not have manifests")
        return Manifest(media_type, digest, len(body), config=config, layers=layers, subject=subject,
                        artifact_type=artifact_type, annotations=annotations, raw=doc)

    manifests_doc = doc.get("manifests")
    if not isinstance(manifests_doc, list):
        raise _invalid("index needs a manifests list")
    manifests = tuple(Descriptor.from_json(d, f"manifests[{i}]") for i, d in enumerate(manifests_doc))
    if "layers" in doc or "config" in doc:
        raise _invalid("index must not have config or layers")
    return Manifest(media_type, digest, len(body), manifests=manifests, subject=subject,
                    artifact_type=artifact_type, annotations=annotations, raw=doc)


def parse_accept(header: str | None) -> list[str]:
    """Media types named in Accept headers (q values ignored, order kept)."""
    if not header:
        return []
    out = []
    for part in header.split(","):
        t = part.split(";", 1)[0].strip().lower()
        if t:
            out.append(t)
    return out


SERVE = "serve"
PICK_PLATFORM = "pick-platform"
NOT_ACCEPTABLE = "not-acceptable"


def negotiate(stored_type: str, accept: list[str]) -> str:
    """What to answer a GET for a manifest stored as ``stored_type``.

    SERVE when the client accepts it (or states nothing / ``*/*``); for an index
    the client does not accept but single manifests it does, PICK_PLATFORM (serve
    the entry for the default platform, as distribution does for old clients);
    otherwise NOT_ACCEPTABLE for an index, and SERVE for a single manifest
    (every client of schema 2 understands it).
    """
    if not accept or "*/*" in accept or stored_type in accept:
        return SERVE
    if stored_type in INDEXES:
        if any(t in IMAGE_MANIFESTS for t in accept):
            return PICK_PLATFORM
        return NOT_ACCEPTABLE
    return SERVE


def select_platform(index: Manifest, os_: str = "linux", architecture: str = "amd64",
                    variant: str | None = None) -> Descriptor | None:
    """The index entry for a platform (variant matched when both name one)."""
    best = None
    for d in index.manifests:
        p = d.platform or {}
        if p.get("os") != os_ or p.get("architecture") != architecture:
            continue
        if variant and p.get("variant") and p.get("variant") != variant:
            continue
        if d.media_type not in IMAGE_MANIFESTS:
            continue
        if best is None or (variant and p.get("variant") == variant):
            best = d
    return best


def referrers_index(descriptors: list[Descriptor], artifact_type: str | None = None) -> dict:
    """The body of GET /v2/<name>/referrers/<digest>: an OCI index."""
    manifests = [d.to_json() for d in descriptors
                 if artifact_type is None or d.artifact_type == artifact_type]
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
