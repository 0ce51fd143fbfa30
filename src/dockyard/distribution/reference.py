"""Names, tags and digests as the OCI distribution spec writes them.

    >>> validate_name("library/busybox")
    >>> Digest.parse("sha256:" + "0" * 64).hex[:4]
    '0000'
    >>> ImageReference.parse("127.0.0.1:5000/x/busybox:v1").repository
    'x/busybox'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from dockyard.distribution.errors import ErrorCode, RegistryError

# <name> = path-component ("/" path-component)*, each component lowercase
# alphanumerics joined by one ".", one or two "_", or any number of "-".
PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME = rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"
TAG = r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
# A registry host as a user types it: a DNS name or IPv4 or [IPv6], optional port.
DOMAIN = r"(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]+)?"

NAME_RE = re.compile(rf"^{NAME}$")
TAG_RE = re.compile(rf"^{TAG}$")
DIGEST_RE = re.compile(rf"^{DIGEST}$")

NAME_MAX_LENGTH = 255

# Algorithms we can verify, with the exact shape of their encoded part.
ALGORITHMS = {
    "sha256": re.compile(r"^[a-f0-9]{64}$"),
    "sha512": re.compile(r"^[a-f0-9]{128}$"),
}


def is_valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX_LENGTH and bool(NAME_RE.match(name))


def validate_name(name: str) -> None:
    """Raise NAME_INVALID unless ``name`` is a repository name."""
    if not is_valid_name(name):
        raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": name})


def is_valid_tag(tag: str) -> bool:
    return bool(TAG_RE.match(tag))


def validate_tag(tag: str) -> None:
    if not is_valid_tag(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, detail={"tag": tag})


def looks_like_digest(ref: str) -> bool:
    """True when ``ref`` is meant as a digest (it has the ``alg:`` shape)."""
    return ":" in ref


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> "Digest":
        """Parse ``alg:encoded``; raise DIGEST_INVALID for bad or unsupported ones."""
        if not isinstance(value, str) or not DIGEST_RE.match(value):
            raise RegistryError(ErrorCode.DIGEST_INVALID, "invalid digest format",
                                detail={"digest": value})
        algorithm, _, encoded = value.partition(":")
        shape = ALGORITHMS.get(algorithm)
        if shape is None:
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"unsupported digest algorithm {algorithm}",
                                detail={"digest": value})
        if not shape.match(encoded):
            raise RegistryError(ErrorCode.DIGEST_INVALID, "invalid digest encoding",
                                detail={"digest": value})
        return cls(algorithm, encoded)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> "Digest":
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def verify(self, data: bytes) -> bool:
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    def digester(self) -> "Digester":
        return Digester(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class Digester:
    """Incremental digest: feed chunks while streaming, read the digest at the end."""

    __slots__ = ("algorithm", "_h", "size")

    def __init__(self, algorithm: str = "sha256"):
        if algorithm not in ALGORITHMS:
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"unsupported digest algorithm {algorithm}")
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._h.hexdigest())


def parse_reference(ref: str) -> str | Digest:
    """A manifest reference from a URL: a Digest, or a tag string (validated)."""
    if looks_like_digest(ref):
        return Digest.parse(ref)
    validate_tag(ref)
    return ref


DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"

_IMAGE_REF_RE = re.compile(
    rf"^(?:(?P<domain>{DOMAIN})/)?(?P<path>{NAME})(?::(?P<tag>{TAG}))?(?:@(?P<digest>{DIGEST}))?$"
)


@dataclass(frozen=True)
class ImageReference:
    """A reference as users write it, normalized as Docker does.

    ``busybox`` -> docker.io / library/busybox : latest;
    ``127.0.0.1:5000/x/busybox:v1`` -> 127.0.0.1:5000 / x/busybox : v1.
    """

    domain: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, value: str, default_tag: str | None = "latest") -> "ImageReference":
        from dockyard.errors import InvalidParameter

        m = _IMAGE_REF_RE.match(value)
        if not m:
            raise InvalidParameter(f"invalid reference format: {value!r}")
        domain, path = m.group("domain"), m.group("path")
        # The first component is a domain only if it looks like one (Docker's rule).
        if domain is not None and not ("." in domain or ":" in domain or domain == "localhost"
                                       or domain != domain.lower()):
            path, domain = f"{domain}/{path}", None
            if not NAME_RE.match(path):
                raise InvalidParameter(f"invalid reference format: {value!r}")
        if domain in (None, LEGACY_DEFAULT_DOMAIN):
            domain = DEFAULT_DOMAIN
        if domain == DEFAULT_DOMAIN and "/" not in path:
            path = OFFICIAL_REPO_PREFIX + path
        if len(path) > NAME_MAX_LENGTH:
            raise InvalidParameter(f"repository name too long: {value!r}")
        digest = None
        if m.group("digest"):
            try:
                digest = Digest.parse(m.group("digest"))
            except RegistryError as e:
                raise InvalidParameter(f"invalid reference format: {e.message}") from None
        tag = m.group("tag")
        if tag is None and digest is None:
            tag = default_tag
        return cls(domain, path, tag, digest)

    @property
    def reference(self) -> str:
        """What goes in /v2/<name>/manifests/<reference>: the digest if any, else the tag."""
        return str(self.digest) if self.digest else (self.tag or "latest")

    @property
    def name(self) -> str:
        """The familiar repository name: ``busybox``, ``127.0.0.1:5000/x/busybox``."""
        if self.domain == DEFAULT_DOMAIN:
            repo = self.repository
            return repo[len(OFFICIAL_REPO_PREFIX):] if repo.startswith(OFFICIAL_REPO_PREFIX) else repo
        return f"{self.domain}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s
