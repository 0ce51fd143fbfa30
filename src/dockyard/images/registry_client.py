"""An aiohttp transport for the distribution protocol.

It owns the sockets; everything protocol-shaped comes from
:mod:`dockyard.distribution` (auth state machine, paths, ranges, errors,
manifest media types). One :class:`RegistryClient` talks to one registry host
and keeps its auth state (tokens per scope) for the life of an operation.

Scheme rules, as Docker's: loopback registries (127.0.0.0/8, ``localhost``,
``::1``) and those named in the insecure list are tried over HTTPS without
certificate checks first, then over plain HTTP; every other registry is HTTPS
with verification. ``docker.io`` is served by ``registry-1.docker.io``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable
from urllib.parse import urlencode, urlsplit

import aiohttp

from dockyard.distribution import paths
from dockyard.distribution.auth import PULL, PUSH, Scope
from dockyard.distribution.client import ClientAuth, FetchToken, GiveUp, Send
from dockyard.distribution.errors import ErrorCode, RegistryError, parse_error_response
from dockyard.distribution.http import format_range_request, parse_content_range, parse_link_next
from dockyard.distribution.manifest import ACCEPT_ALL
from dockyard.distribution.reference import DEFAULT_DOMAIN, Digest

USER_AGENT = "dockyard/0.1 (linux) distribution-client"
HUB_API_HOST = "registry-1.docker.io"
HUB_INDEX = "index.docker.io"
CHUNK = 256 * 1024


class RegistryUnreachable(RegistryError):
    """No connection to the registry (or it broke): not a spec error."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.UNKNOWN, message, status=500)


def api_host(domain: str) -> str:
    """The host that serves /v2/ for a reference's domain."""
    return HUB_API_HOST if domain in (DEFAULT_DOMAIN, HUB_INDEX) else domain


def is_loopback(host: str) -> bool:
    h = host
    if h.startswith("["):
        h = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        h = h.rsplit(":", 1)[0]
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def is_insecure(host: str, insecure: tuple[str, ...] | list[str] = ()) -> bool:
    """Docker's rule: loopback, or listed (host, host:port or a CIDR of its address)."""
    if is_loopback(host):
        return True
    bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host.strip("[]")
    for item in insecure or ():
        item = item.strip()
        if item.startswith(("http://", "https://")):
            item = urlsplit(item).netloc
        if item in (host, bare):
            return True
        if "/" in item:
            try:
                if ipaddress.ip_address(bare) in ipaddress.ip_network(item, strict=False):
                    return True
            except ValueError:
                continue
    return False


@dataclass
class BlobStream:
    """An open blob GET: ``offset`` is where its bytes start (Range honoured or not)."""

    response: aiohttp.ClientResponse
    offset: int
    total: int | None

    async def chunks(self, size: int = CHUNK) -> AsyncIterator[bytes]:
        async for chunk in self.response.content.iter_chunked(size):
            yield chunk

    def close(self) -> None:
        self.response.close()


class RegistryClient:
    """One registry host; ``credentials`` = (user, password) or None."""

    def __init__(self, domain: str, credentials: tuple[str, str] | None = None,
                 insecure_registries: tuple[str, ...] | list[str] = (),
                 session: aiohttp.ClientSession | None = None, timeout: float = 300.0,
                 offline: bool = False):
        """``credentials``: a distribution.client.IdentityToken pair for an identity
        token; ``offline``: ask the token server for one (``login``)."""
        self.domain = domain
        self.host = api_host(domain)
        self.insecure = is_insecure(self.host, insecure_registries)
        self.auth = ClientAuth(credentials, offline=offline)
        self._session = session
        self._own_session = session is None
        self._timeout = timeout
        self._base: str | None = None

    # -- plumbing ---------------------------------------------------------------------
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self._timeout),
                headers={"User-Agent": USER_AGENT},
                connector=aiohttp.TCPConnector(limit=16, force_close=False),
                auto_decompress=False)
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "RegistryClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _ssl(self, scheme: str):
        if scheme != "https":
            return None
        return False if self.insecure else ssl.create_default_context()

    async def base(self) -> str:
        """``scheme://host`` that answers, probed once per client (HTTPS first): a
        registry may come back on the same port with or without TLS."""
        if self._base:
            return self._base
        schemes = ["https", "http"] if self.insecure else ["https"]
        last: Exception | None = None
        url = f"https://{self.host}/v2/"
        for scheme in schemes:
            url = f"{scheme}://{self.host}/v2/"
            try:
                async with self.session().get(url, ssl=self._ssl(scheme), allow_redirects=False) as r:
                    await r.read()
                self._base = f"{scheme}://{self.host}"
                return self._base
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                last = e
        raise RegistryUnreachable(f'Get "{url}": {_describe(last)}')

    def url(self, path: str, query: dict | list | None = None) -> str:
        assert self._base
        q = ("?" + urlencode(query)) if query else ""
        return self._base + path + q

    async def _fetch_token(self, step: FetchToken) -> None:
        url = step.url
        scheme = urlsplit(url).scheme or "https"
        try:
            async with self.session().request(
                    step.method, url, headers=step.headers, data=step.body,
                    ssl=self._ssl(scheme) if scheme == "https" else None) as r:
                body = await r.read()
                status = r.status
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise RegistryUnreachable(f'{step.method.capitalize()} "{url}": {_describe(e)}') from None
        try:
            self.auth.token_fetched(step, status, body, time.time())
        except RegistryError as e:
            if status == 401:
                e.token_url = url
            raise

    async def request(self, method: str, path_or_url: str, scopes: list[Scope],
                      headers: dict | None = None, data: Callable[[], object] | bytes | None = None,
                      query: dict | list | None = None, allow_redirects: bool = True,
                      ) -> aiohttp.ClientResponse:
        """Send with auth; returns the response (caller releases it). ``data`` may be a
        factory so that a body can be sent again after an auth challenge."""
        await self.base()
        url = path_or_url if "://" in path_or_url else self.url(path_or_url, query)
        for _ in range(4):
            step = self.auth.before_request(scopes, time.time())
            if isinstance(step, FetchToken):
                await self._fetch_token(step)
                step = self.auth.before_request(scopes, time.time())
            h = dict(headers or {})
            h.update(step.headers if isinstance(step, Send) else {})
            body = data() if callable(data) else data
            scheme = urlsplit(url).scheme
            try:
                resp = await self.session().request(method, url, headers=h, data=body,
                                                    ssl=self._ssl(scheme),
                                                    allow_redirects=allow_redirects)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                raise RegistryUnreachable(f'{method.capitalize()} "{url}": {_describe(e)}') from None
            if resp.status != 401:
                return resp
            www = resp.headers.get("WWW-Authenticate")
            err_body = await resp.read()
            resp.release()
            nxt = self.auth.on_unauthorized(www, scopes, time.time(),
                                            sent=h.get("Authorization"))
            if isinstance(nxt, GiveUp):
                e = parse_error_response(401, err_body)
                if e.code is ErrorCode.UNKNOWN or nxt.error.code is ErrorCode.DENIED:
                    e = nxt.error
                e.status = 403 if e.code is ErrorCode.DENIED else 401
                e.url = url
                raise e
            if isinstance(nxt, FetchToken):
                await self._fetch_token(nxt)
            # Retry: loop, before_request now adds credentials
        raise RegistryError(ErrorCode.UNAUTHORIZED, "authentication loop", status=401)

    async def _checked(self, resp: aiohttp.ClientResponse, ok: tuple[int, ...]) -> aiohttp.ClientResponse:
        if resp.status in ok:
            return resp
        body = await resp.read()
        resp.release()
        err = parse_error_response(resp.status, body)
        err.url = str(resp.url)
        raise err

    # -- API --------------------------------------------------------------------------
    async def ping(self) -> None:
        """GET /v2/ with credentials (what ``login`` checks). Raises on refusal."""
        await self.base()
        resp = await self.request("GET", paths.BASE, [])
        await self._checked(resp, (200,))
        resp.release()

    async def login(self) -> None:
        """Verify credentials as ``docker login`` does: /v2/, then a token for no scope."""
        await self.base()
        url = self.url(paths.BASE)
        try:
            async with self.session().get(url, ssl=self._ssl(urlsplit(url).scheme)) as r:
                await r.read()
                status, www = r.status, r.headers.get("WWW-Authenticate")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise RegistryUnreachable(f'Get "{url}": {_describe(e)}') from None
        if status == 200:
            return
        if status != 401:
            raise RegistryError(ErrorCode.UNKNOWN, f"login attempt to {url} failed with status: "
                                f"{status}", status=500)
        nxt = self.auth.on_unauthorized(www, [], time.time())
        if isinstance(nxt, GiveUp):
            raise _unauthorized(url, nxt.error.message)
        if isinstance(nxt, FetchToken):
            try:
                await self._fetch_token(nxt)
            except RegistryError as e:
                raise _unauthorized(getattr(e, "token_url", nxt.url), e.message) from None
            return
        try:
            resp = await self.request("GET", paths.BASE, [])
        except RegistryUnreachable:
            raise
        except RegistryError as e:
            if e.status in (401, 403):
                raise _unauthorized(url, e.message) from None
            raise
        body = await resp.read()
        resp.release()
        if resp.status != 200:
            raise _unauthorized(url, parse_error_response(resp.status, body).message)

    async def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, Digest]:
        """(body, media type, digest) of a manifest; the digest is verified when
        ``reference`` is one."""
        resp = await self.request("GET", paths.manifest(repo, reference),
                                  [Scope.repository(repo, PULL)], headers={"Accept": ACCEPT_ALL})
        await self._checked(resp, (200,))
        try:
            body = await resp.read()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise RegistryUnreachable(f"reading manifest {reference}: {_describe(e)}") from None
        finally:
            resp.release()
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        digest = Digest.from_bytes(body)
        if ":" in reference:
            want = Digest.parse(reference)
            if Digest.from_bytes(body, want.algorithm) != want:
                raise RegistryError(ErrorCode.DIGEST_INVALID,
                                    f"manifest verification failed for digest {reference}")
            digest = want
        return body, ctype, digest

    async def head_manifest(self, repo: str, reference: str) -> str | None:
        resp = await self.request("HEAD", paths.manifest(repo, reference),
                                  [Scope.repository(repo, PULL)], headers={"Accept": ACCEPT_ALL})
        resp.release()
        if resp.status == 200:
            return resp.headers.get("Docker-Content-Digest")
        return None

    async def get_blob_bytes(self, repo: str, digest: str, limit: int = 64 << 20) -> bytes:
        """A small blob (a config), verified."""
        resp = await self.request("GET", paths.blob(repo, digest), [Scope.repository(repo, PULL)])
        await self._checked(resp, (200,))
        try:
            body = await resp.content.read(limit + 1)
        finally:
            resp.release()
        if len(body) > limit:
            raise RegistryError(ErrorCode.SIZE_INVALID, f"blob {digest} is too large")
        d = Digest.parse(digest)
        if not d.verify(body):
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"filesystem layer verification "
                                f"failed for digest {digest}")
        return body

    async def open_blob(self, repo: str, digest: str, offset: int = 0) -> BlobStream:
        """GET a blob from ``offset`` (Range). If the server ignores the Range the
        stream starts at 0: look at ``BlobStream.offset``."""
        headers = {"Range": format_range_request(offset)} if offset else {}
        resp = await self.request("GET", paths.blob(repo, digest), [Scope.repository(repo, PULL)],
                                  headers=headers)
        if offset and resp.status == 416:
            resp.release()
            return await self.open_blob(repo, digest, 0)
        await self._checked(resp, (200, 206))
        if resp.status == 206:
            start, _, total = parse_content_range(resp.headers.get("Content-Range", ""))
            return BlobStream(resp, start, total)
        return BlobStream(resp, 0, resp.content_length)

    async def blob_size(self, repo: str, digest: str) -> int | None:
        """HEAD a blob: its size, or None when the registry does not have it."""
        resp = await self.request("HEAD", paths.blob(repo, digest), [Scope.repository(repo, PULL)])
        resp.release()
        if resp.status == 200:
            return int(resp.headers.get("Content-Length") or 0)
        if resp.status == 404:
            return None
        raise parse_error_response(resp.status, b"")

    async def start_upload(self, repo: str, mount: str | None = None,
                           from_repo: str | None = None) -> tuple[bool, str | None]:
        """POST an upload; with ``mount``/``from_repo`` try a cross-repo mount.
        Returns (mounted, upload location)."""
        scopes = [Scope.repository(repo, PULL, PUSH)]
        query = None
        if mount and from_repo:
            scopes.append(Scope.repository(from_repo, PULL))
            query = {"mount": mount, "from": from_repo}
        resp = await self.request("POST", paths.uploads(repo), scopes, query=query,
                                  headers={"Content-Length": "0"})
        await self._checked(resp, (201, 202))
        resp.release()
        if resp.status == 201:
            return True, None
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "upload answered without a Location")
        return False, paths.resolve_location(str(resp.url), loc)

    async def put_blob(self, repo: str, location: str, digest: str, size: int,
                       body: Callable[[], object]) -> None:
        """Monolithic upload: PUT the whole blob at the session's location."""
        url = _add_query(location, {"digest": digest})
        resp = await self.request("PUT", url, [Scope.repository(repo, PULL, PUSH)], data=body,
                                  headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": str(size)})
        await self._checked(resp, (201, 204))
        resp.release()

    async def patch_chunks(self, repo: str, location: str, chunks: AsyncIterator[bytes]) -> str:
        """Chunked upload: PATCH each chunk with Content-Range; returns the last location."""
        from dockyard.distribution.http import format_upload_content_range

        offset = 0
        async for chunk in chunks:
            resp = await self.request("PATCH", location, [Scope.repository(repo, PULL, PUSH)],
                                      data=chunk, headers={
                                          "Content-Type": "application/octet-stream",
                                          "Content-Range": format_upload_content_range(offset, len(chunk)),
                                          "Content-Length": str(len(chunk))})
            await self._checked(resp, (202, 204))
            resp.release()
            offset += len(chunk)
            location = paths.resolve_location(str(resp.url), resp.headers.get("Location") or location)
        return location

    async def finish_upload(self, repo: str, location: str, digest: str) -> None:
        url = _add_query(location, {"digest": digest})
        resp = await self.request("PUT", url, [Scope.repository(repo, PULL, PUSH)], data=b"",
                                  headers={"Content-Length": "0"})
        await self._checked(resp, (201, 204))
        resp.release()

    async def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        resp = await self.request("PUT", paths.manifest(repo, reference),
                                  [Scope.repository(repo, PULL, PUSH)], data=body,
                                  headers={"Content-Type": media_type})
        await self._checked(resp, (201, 200, 204))
        resp.release()
        return resp.headers.get("Docker-Content-Digest") or str(Digest.from_bytes(body))

    async def tags(self, repo: str) -> list[str]:
        out: list[str] = []
        url: str | None = paths.tags(repo)
        while url:
            resp = await self.request("GET", url, [Scope.repository(repo, PULL)])
            await self._checked(resp, (200,))
            data = json.loads(await resp.read() or b"{}")
            resp.release()
            out += data.get("tags") or []
            nxt = parse_link_next(resp.headers.get("Link"))
            url = (self._base + nxt if nxt and nxt.startswith("/") else nxt) if nxt else None
        return out

    async def search(self, term: str, limit: int | None = None) -> dict:
        query = {"q": term}
        if limit:
            query["n"] = str(limit)
        resp = await self.request("GET", paths.SEARCH, [], query=query)
        await self._checked(resp, (200,))
        try:
            return json.loads(await resp.read())
        finally:
            resp.release()


def _add_query(url: str, params: dict) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _unauthorized(url: str, message: str) -> RegistryError:
    e = RegistryError(ErrorCode.UNAUTHORIZED, f'Get "{url}": unauthorized: {message}', status=401)
    return e


def _describe(e: BaseException | None) -> str:
    if e is None:
        return "unknown error"
    if isinstance(e, aiohttp.ClientConnectorError):
        import os
        err = e.os_error
        why = os.strerror(err.errno).lower() if getattr(err, "errno", None) else str(err).lower()
        return f"dial tcp {e.host}:{e.port}: connect: {why}"
    if isinstance(e, asyncio.TimeoutError):
        return "i/o timeout"
    return str(e) or type(e).__name__

