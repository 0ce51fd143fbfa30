"""URL paths of the /v2/ API: build them (client) and parse them (server), and
the access each route needs (the token scope a client asks for)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urljoin

from dockyard.distribution.auth import DELETE, PULL, PUSH, Scope

BASE = "/v2/"
CATALOG = "/v2/_catalog"
TOKEN = "/token"
SEARCH = "/v1/search"


def blob(name: str, digest: str) -> str:
    return f"/v2/{name}/blobs/{digest}"


def uploads(name: str) -> str:
    return f"/v2/{name}/blobs/uploads/"


def upload(name: str, uuid: str) -> str:
    return f"/v2/{name}/blobs/uploads/{uuid}"


def manifest(name: str, reference: str) -> str:
    return f"/v2/{name}/manifests/{quote(reference, safe=':')}"


def resolve_location(request_url: str, location: str) -> str:
    """An upload ``Location`` (often relative) as an absolute URL."""
    return urljoin(request_url, location)


def tags(name: str) -> str:
    return f"/v2/{name}/tags/list"


def referrers(name: str, digest: str) -> str:
    return f"/v2/{name}/referrers/{digest}"


# Routes (kind names)
BASE_CHECK = "base"
CATALOG_LIST = "catalog"
BLOB = "blob"
UPLOADS = "uploads"
UPLOAD = "upload"
MANIFEST = "manifest"
TAGS = "tags"
REFERRERS = "referrers"


@dataclass(frozen=True)
class Route:
    kind: str
    name: str | None = None
    arg: str | None = None  # digest, upload uuid, or manifest reference

    def required_scopes(self, method: str) -> list[Scope]:
        """The access a request needs (empty for the version check)."""
        method = method.upper()
        if self.kind == BASE_CHECK:
            return []
        if self.kind == CATALOG_LIST:
            return [Scope("registry", "catalog", frozenset({"*"}))]
        assert self.name is not None
        if method in ("GET", "HEAD"):
            if self.kind in (UPLOADS, UPLOAD):
                return [Scope.repository(self.name, PUSH)]
            return [Scope.repository(self.name, PULL)]
        if method == "DELETE" and self.kind in (BLOB, MANIFEST):
            return [Scope.repository(self.name, DELETE)]
        # Writes: distribution asks pull+push for uploads and manifest PUTs.
        return [Scope.repository(self.name, PULL, PUSH)]


_V2_RE = re.compile(
    r"^/v2/(?P<name>.+?)/(?:"
    r"blobs/uploads/(?P<uuid>[^/]*)"
    r"|blobs/(?P<digest>[^/]+)"
    r"|manifests/(?P<ref>[^/]+)"
    r"|(?P<tags>tags/list)"
    r"|referrers/(?P<rdigest>[^/]+)"
    r")$"
)


def parse_path(path: str) -> Route | None:
    """A request path -> Route, or None if it is not an API path.

    The name is not validated here (the caller answers NAME_INVALID). Names
    may hold several segments (``a/b/c``); the route suffix is matched at the end.
    """
    if path in ("/v2", "/v2/"):
        return Route(BASE_CHECK)
    if path in ("/v2/_catalog", "/v2/_catalog/"):
        return Route(CATALOG_LIST)
    if not path.startswith("/v2/"):
        return None
    # The name is matched lazily: the shortest name whose remainder is a whole
    # route suffix wins ("a/blobs/uploads/" is name "a" + uploads).
    m = _V2_RE.match(path)
    if not m:
        return None
    name = m.group("name")
    if m.group("uuid") is not None:
        return Route(UPLOADS, name) if m.group("uuid") == "" else Route(UPLOAD, name, m.group("uuid"))
    if m.group("digest") is not None:
        return Route(BLOB, name, m.group("digest"))
    if m.group("ref") is not None:
        return Route(MANIFEST, name, m.group("ref"))
    if m.group("tags") is not None:
        return Route(TAGS, name)
    return Route(REFERRERS, name, m.group("rdigest"))
