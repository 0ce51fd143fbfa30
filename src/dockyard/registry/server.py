"""The registry's HTTP face: aiohttp handlers that translate requests into
:class:`~dockyard.registry.service.Registry` calls and errors into the spec's
JSON bodies. Blob bodies are streamed both ways: downloads with sendfile,
uploads through a thread that writes and digests large buffers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl

from aiohttp import web

from dockyard.distribution import auth as proto
from dockyard.distribution import http as dhttp
from dockyard.distribution import manifest as mf
from dockyard.distribution import paths
from dockyard.distribution.errors import SPEC_CODES, ErrorCode, RegistryError
from dockyard.registry.auth import (ANONYMOUS, AccessPolicy, Authenticator, AuthFailure, Htpasswd,
                                    TokenKeys, TokenService)
from dockyard.registry.config import RegistryConfig
from dockyard.registry.service import Registry
from dockyard.registry.storage import Storage

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
FLUSH_SIZE = 4 * 1024 * 1024
WRITES = ("POST", "PUT", "PATCH", "DELETE")


class BlobResponse(web.StreamResponse):
    """A blob (or a byte range of it) sent with sendfile; HEAD sends headers only."""

    def __init__(self, path: str, size: int, digest: str, rng: dhttp.ByteRange | None):
        super().__init__(status=206 if rng else 200)
        self._blob_path = path
        self._blob_start = rng.start if rng else 0
        self._blob_count = rng.length if rng else size
        self.content_type = "application/octet-stream"
        self.content_length = self._blob_count
        self.headers["Docker-Content-Digest"] = digest
        self.headers["ETag"] = f'"{digest}"'
        self.headers["Accept-Ranges"] = "bytes"
        self.headers["Cache-Control"] = "max-age=31536000"
        if rng:
            self.headers["Content-Range"] = rng.content_range(size)

    async def prepare(self, request: web.BaseRequest):
        # Open before answering: a blob deleted by gc in between is a 404, not a
        # truncated body. An open file keeps its data even if unlinked later.
        f = open(self._blob_path, "rb")
        try:
            writer = await super().prepare(request)
            if request.method == "HEAD" or self._blob_count == 0:
                return writer
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            loop = asyncio.get_running_loop()
            try:
                await loop.sendfile(transport, f, self._blob_start, self._blob_count)
            except NotImplementedError:  # TLS: no sendfile through the SSL layer
                f.seek(self._blob_start)
                left = self._blob_count
                while left:
                    chunk = await loop.run_in_executor(None, f.read, min(left, 1 << 20))
                    if not chunk:
                        break
                    await writer.write(chunk)
                    left -= len(chunk)
            await super().write_eof()
            return writer
        finally:
            f.close()


def _error_response(err: RegistryError) -> web.Response:
    """The spec's JSON error body, for the spec's codes only (``SPEC_CODES``):
    any other failure (an unsatisfiable range, a bad page size, a 500) keeps
    its status and says what went wrong in plain text."""
    headers = dict(err.headers)
    if err.code.name in SPEC_CODES:
        return web.Response(status=err.status, body=err.body(), content_type="application/json",
                            headers=headers)
    return web.Response(status=err.status, text=err.message + "\n", headers=headers)


class RegistryServer:
    def __init__(self, config: RegistryConfig):
        self.config = config
        self.storage = Storage(config.root)
        self.registry = Registry(self.storage, allow_delete=config.delete)
        self.policy = AccessPolicy(config.access, config.anonymous_read)
        htpasswd = Htpasswd(config.htpasswd) if config.htpasswd else None
        self.tokens = None
        if config.auth == "token":
            keys = TokenKeys(config.token_key, config.root)
            self.tokens = TokenService(keys, config.token_issuer, config.token_service, config.token_ttl)
        self.auth = Authenticator(config.auth, self.policy, htpasswd, self.tokens, config.token_realm)
        self.scheme = "https" if config.tls_cert else "http"
        self.io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="registry-io")
        self._upload_locks: dict[str, asyncio.Lock] = {}

    # -- app ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=mf.MAX_MANIFEST_SIZE + 1,
                              middlewares=[self._errors])
        app.router.add_route("*", "/v2", self.dispatch)
        app.router.add_route("*", "/v2/{tail:.*}", self.dispatch)
        token_paths = {"/token", "/v2/token"}
        if self.config.token_realm:
            from urllib.parse import urlsplit

            token_paths.add(urlsplit(self.config.token_realm).path or "/token")
        for p in sorted(token_paths):
            if p.startswith("/v2/"):
                continue  # served by dispatch (it owns /v2/*)
            app.router.add_route("GET", p, self.token)
            app.router.add_route("POST", p, self.token)
        app.router.add_get("/v1/search", self.search)
        app.router.add_get("/v1/_ping", self.ping_v1)
        app.on_response_prepare.append(self._add_version_header)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _shutdown(self, app) -> None:
        self.io.shutdown(wait=False)

    @staticmethod
    async def _add_version_header(request, response) -> None:
        response.headers[API_VERSION[0]] = API_VERSION[1]

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except RegistryError as e:
            return _error_response(e)
        except web.HTTPRequestEntityTooLarge:
            err = RegistryError(ErrorCode.SIZE_INVALID, "request body too large", status=413)
            return _error_response(err)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # a bug or the disk: answer in the spec's shape, keep serving
            import traceback

            traceback.print_exc(file=sys.stderr)
            return _error_response(RegistryError(ErrorCode.UNKNOWN, f"internal error: {type(e).__name__}: {e}"))

    def realm(self, request: web.Request) -> str:
        return f"{self.scheme}://{request.host}/token"

    async def _authorize(self, request: web.Request, needed, require_login=False):
        if self.auth.mode == "none":
            return None
        loop = asyncio.get_running_loop()
        header = request.headers.get("Authorization")
        return await loop.run_in_executor(
            self.io, lambda: self.auth.authorize(header, needed, self.realm(request), require_login,
                                                 client=request.remote))

    # -- /v2/ ---------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/v2/token":
            return await self.token(request)
        route = paths.parse_path(request.path)
        if route is None:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, "no such API path", status=404)
        method = request.method
        if route.name is not None:
            self.registry.check_name(route.name)
        if method in WRITES and self.config.read_only:
            raise RegistryError(ErrorCode.UNSUPPORTED, "the registry is read-only")
        needed = route.required_scopes(method)
        await self._authorize(request, needed, require_login=route.kind == paths.BASE_CHECK)
        handler = self._handlers.get((route.kind, "GET" if method == "HEAD" else method))
        if handler is None:
            raise RegistryError(ErrorCode.UNSUPPORTED, f"{method} is not supported on {route.kind}")
        return await handler(self, request, route)

    async def base(self, request, route):
        return web.json_response({})

    # -- blobs -------------------------------------------------------------------

    async def get_blob(self, request, route):
        info = self.registry.blob(route.name, route.arg)
        try:
            rng = dhttp.parse_range(request.headers.get("Range"), info.size)
        except dhttp.RangeNotSatisfiable:
            raise RegistryError(ErrorCode.RANGE_INVALID, "requested range not satisfiable", status=416,
                                headers={"Content-Range": f"bytes */{info.size}"}) from None
        return BlobResponse(str(info.path), info.size, str(info.digest), rng)

    async def delete_blob(self, request, route):
        self.registry.delete_blob(route.name, route.arg)
        return web.Response(status=202, headers={"Content-Length": "0"})

    # -- uploads -------------------------------------------------------------------

    def _upload_headers(self, name: str, uuid: str, offset: int) -> dict:
        return {"Location": paths.upload(name, uuid), "Range": dhttp.format_upload_range(offset),
                "Docker-Upload-UUID": uuid}

    def _lock(self, uuid: str) -> asyncio.Lock:
        lock = self._upload_locks.get(uuid)
        if lock is None:
            lock = self._upload_locks[uuid] = asyncio.Lock()
        return lock

    async def start_upload(self, request, route):
        q = request.query
        name = route.name
        if "mount" in q:
            mounted = await self._try_mount(request, name, q["mount"], q.get("from"))
            if mounted is not None:
                return web.Response(status=201, headers={
                    "Location": paths.blob(name, str(mounted)), "Docker-Content-Digest": str(mounted),
                    "Content-Length": "0"})
        info = self.registry.start_upload(name)
        if "digest" in q:
            # Monolithic: the whole blob in this request.
            async with self._lock(info.uuid):
                return await self._finish(request, name, info, q["digest"])
        return web.Response(status=202, headers={**self._upload_headers(name, info.uuid, 0),
                                                 "Content-Length": "0"})

    async def _try_mount(self, request, name: str, digest: str, from_name: str | None):
        if from_name is None and self.auth.mode != "none":
            return None  # an unnamed source would reveal other repositories' blobs
        if from_name is not None:
            try:
                self.registry.check_name(from_name)
                await self._authorize(request, [proto.Scope.repository(from_name, proto.PULL)])
            except RegistryError:
                return None  # no right to read the source: fall back to an upload
        return self.registry.mount(name, digest, from_name)

    async def upload_status(self, request, route):
        # Wait for a PATCH still writing (e.g. one whose client just went away).
        async with self._lock(route.arg):
            info = self.registry.upload(route.name, route.arg)
        return web.Response(status=204, headers=self._upload_headers(route.name, info.uuid, info.offset))

    def _declared_chunk(self, request) -> tuple[int | None, int | None]:
        """(start, length) declared by Content-Range / Content-Length."""
        length = request.content_length
        cr = request.headers.get("Content-Range")
        if not cr:
            return None, length
        start, end = dhttp.parse_upload_content_range(cr)
        if length is not None and length != end - start + 1:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID,
                                f"Content-Range {cr} does not match Content-Length {length}", status=416)
        return start, end - start + 1

    async def patch_upload(self, request, route):
        name, uuid = route.name, route.arg
        async with self._lock(uuid):
            info = self.registry.upload(name, uuid)
            start, length = self._declared_chunk(request)
            try:
                self.registry.check_chunk(info, start, length)
            except RegistryError as e:
                e.headers.update(self._upload_headers(name, uuid, info.offset))
                raise
            writer = await self._run(self.registry.open_writer, info)
            await self._stream_into(request, writer)
            return web.Response(status=202, headers={**self._upload_headers(name, uuid, writer.offset),
                                                     "Content-Length": "0"})

    async def put_upload(self, request, route):
        name, uuid = route.name, route.arg
        async with self._lock(uuid):
            info = self.registry.upload(name, uuid)
            return await self._finish(request, name, info, request.query.get("digest"))

    async def _finish(self, request, name, info, digest):
        start, length = self._declared_chunk(request)
        if request.can_read_body or start is not None:
            self.registry.check_chunk(info, start, length)
        writer = await self._run(self.registry.open_writer, info)
        try:
            if request.can_read_body:
                await self._stream_into(request, writer)
            else:
                writer.close()
            d = await self._run(self.registry.finish_upload, info, writer, digest)
        finally:
            writer.close()
        self._upload_locks.pop(info.uuid, None)
        return web.Response(status=201, headers={"Location": paths.blob(name, str(d)),
                                                 "Docker-Content-Digest": str(d), "Content-Length": "0"})

    async def cancel_upload(self, request, route):
        async with self._lock(route.arg):
            self.registry.cancel_upload(route.name, route.arg)
        self._upload_locks.pop(route.arg, None)
        return web.Response(status=204)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    async def _stream_into(self, request: web.Request, writer) -> None:
        """Copy the request body into the upload: large buffers written (and
        digested) in a thread while the next buffer is read. Whatever arrived
        before a broken connection is kept, so the client can resume."""
        loop = asyncio.get_running_loop()
        pending = None
        buf = bytearray()
        content = request.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                buf += chunk
                if len(buf) >= FLUSH_SIZE:
                    if pending is not None:
                        await pending
                    data, buf = buf, bytearray()
                    pending = loop.run_in_executor(self.io, writer.write, data)
        finally:
            if pending is not None:
                await asyncio.shield(pending)
            if buf:
                await asyncio.shield(loop.run_in_executor(self.io, writer.write, buf))
            writer.close()

    # -- manifests -----------------------------------------------------------------

    async def put_manifest(self, request, route):
        body = await request.read()
        digest, subject = await self._run(self.registry.put_manifest, route.name, route.arg, body,
                                          request.headers.get("Content-Type"))
        headers = {"Location": paths.manifest(route.name, str(digest)),
                   "Docker-Content-Digest": str(digest), "Content-Length": "0"}
        if subject is not None:
            headers["OCI-Subject"] = str(subject)
        return web.Response(status=201, headers=headers)

    async def get_manifest(self, request, route):
        accept = mf.parse_accept(",".join(request.headers.getall("Accept", [])))
        m = self.registry.get_manifest(route.name, route.arg, accept)
        headers = {"Docker-Content-Digest": str(m.digest), "ETag": f'"{m.digest}"'}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(m.body))
            headers["Content-Type"] = m.media_type
            return web.Response(status=200, headers=headers)
        return web.Response(body=m.body, headers={**headers, "Content-Type": m.media_type})

    async def delete_manifest(self, request, route):
        self.registry.delete_manifest(route.name, route.arg)
        return web.Response(status=202, headers={"Content-Length": "0"})

    # -- listings ------------------------------------------------------------------

    async def list_tags(self, request, route):
        n, last = dhttp.parse_page_params(request.query.get("n"), request.query.get("last"))
        tags, nxt = self.registry.tags(route.name, n, last)
        headers = {}
        if nxt is not None:
            headers["Link"] = dhttp.link_header(paths.tags(route.name), n, nxt)
        return web.json_response({"name": route.name, "tags": tags}, headers=headers)

    async def catalog(self, request, route):
        n, last = dhttp.parse_page_params(request.query.get("n"), request.query.get("last"))
        repos, nxt = await self._run(self.registry.catalog, n, last)
        headers = {}
        if nxt is not None:
            headers["Link"] = dhttp.link_header(paths.CATALOG, n, nxt)
        return web.json_response({"repositories": repos}, headers=headers)

    async def referrers(self, request, route):
        artifact_type = request.query.get("artifactType")
        index = self.registry.referrers(route.name, route.arg, artifact_type)
        headers = {"Content-Type": mf.OCI_INDEX}
        if artifact_type:
            headers["OCI-Filters-Applied"] = "artifactType"
        return web.Response(body=json.dumps(index).encode(), headers=headers)

    _handlers = {
        (paths.BASE_CHECK, "GET"): base,
        (paths.CATALOG_LIST, "GET"): catalog,
        (paths.BLOB, "GET"): get_blob,
        (paths.BLOB, "DELETE"): delete_blob,
        (paths.UPLOADS, "POST"): start_upload,
        (paths.UPLOAD, "GET"): upload_status,
        (paths.UPLOAD, "PATCH"): patch_upload,
        (paths.UPLOAD, "PUT"): put_upload,
        (paths.UPLOAD, "DELETE"): cancel_upload,
        (paths.MANIFEST, "GET"): get_manifest,
        (paths.MANIFEST, "PUT"): put_manifest,
        (paths.MANIFEST, "DELETE"): delete_manifest,
        (paths.TAGS, "GET"): list_tags,
        (paths.REFERRERS, "GET"): referrers,
    }

    # -- token endpoint -----------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        if self.tokens is None:
            raise RegistryError(ErrorCode.UNSUPPORTED, "this registry does not issue tokens", status=404)
        if request.method == "POST":
            return await self._token_oauth(request)
        q = request.query
        service = q.get("service")
        if service and service != self.tokens.service:
            return web.json_response({"errors": [{"code": "DENIED", "message": f"unknown service {service}"}]},
                                     status=400)
        header = request.headers.get("Authorization")
        creds = proto.parse_basic_authorization(header)
        account = await self._token_account(creds, request.remote)
        scopes = proto.parse_scopes(q.getall("scope", []))
        granted = self.policy.grant(account, scopes)
        resp = self.tokens.issue(account, granted, refresh=q.get("offline_token") == "true")
        return web.json_response(resp.to_json())

    async def _token_account(self, creds, client: str | None) -> str:
        if creds is None:
            # Anonymous clients get a token too, holding only what anonymous
            # users may do (maybe nothing), as Docker Hub does: the registry
            # then refuses with insufficient_scope, which clients report at
            # once instead of retrying as they do for a failed token fetch.
            return ANONYMOUS
        ok = await self._run(self.auth.check_password, *creds, client)
        if not ok:
            raise AuthFailure(ErrorCode.UNAUTHORIZED, "invalid username or password",
                              proto.basic_challenge("dockyard token service"))
        return creds[0]

    async def _token_oauth(self, request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode("utf-8", "replace")))
        grant = form.get("grant_type")
        if grant == "password":
            try:
                account = await self._token_account((form.get("username", ""), form.get("password", "")),
                                                    request.remote)
            except AuthFailure:
                return web.json_response({"error": "invalid_grant",
                                          "error_description": "invalid username or password"}, status=401)
        elif grant == "refresh_token":
            try:
                account = self.tokens.verify_refresh(form.get("refresh_token", ""))
            except ValueError as e:
                return web.json_response({"error": "invalid_grant", "error_description": str(e)}, status=401)
        else:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        scopes = proto.parse_scopes(form.get("scope", ""))
        granted = self.policy.grant(account, scopes)
        resp = self.tokens.issue(account, granted, refresh=form.get("access_type") == "offline")
        body = {"access_token": resp.token, "token_type": "Bearer", "expires_in": resp.expires_in,
                "issued_at": resp.issued_at, "scope": " ".join(s.render() for s in granted if s.actions)}
        if resp.refresh_token:
            body["refresh_token"] = resp.refresh_token
        return web.json_response(body)

    # -- v1 search -----------------------------------------------------------------

    async def ping_v1(self, request):
        return web.json_response({}, headers={"X-Docker-Registry-Standalone": "true"})

    async def search(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization")
        identity = await self._run(self.auth.identify, header, request.remote)
        if identity is None or (identity.account == ANONYMOUS and self.auth.mode != "none"
                                and not self.policy.anonymous_read):
            challenge = (proto.basic_challenge() if self.auth.mode == "basic" else
                         proto.bearer_challenge(self.config.token_realm or self.realm(request),
                                                self.tokens.service,
                                                [proto.Scope("registry", "catalog", frozenset({"*"}))]))
            raise AuthFailure(ErrorCode.UNAUTHORIZED, "authentication required", challenge)
        account = identity.account
        if self.auth.mode == "none":
            def visible(_name):
                return True
        else:
            def visible(name):
                return self.policy.permits(account, [proto.Scope.repository(name, proto.PULL)])
        try:
            n = int(request.query.get("n") or 25)
            page = int(request.query.get("page") or 1)
        except ValueError:
            raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID) from None
        result = await self._run(self.registry.search, request.query.get("q", ""), n, page, visible)
        return web.json_response(result)


# -- running ---------------------------------------------------------------------

def ssl_context(config: RegistryConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config.tls_cert, config.tls_key)
    return ctx


async def serve(config: RegistryConfig, ready=None, access_log: bool = False) -> None:
    """Serve until SIGTERM/SIGINT. Prints the bound address on stdout (useful
    with port 0)."""
    server = RegistryServer(config)
    app = server.app()
    logger = None
    if access_log:
        import logging

        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
        logger = logging.getLogger("aiohttp.access")
    runner = web.AppRunner(app, access_log=logger, handle_signals=False)
    await runner.setup()
    host, port = config.host_port
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context(config), backlog=1024,
                       reuse_address=True)
    await site.start()
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(f"dockyard registry listening on {server.scheme}://{shown}:{bound[1]} "
          f"(root {config.root}, auth {config.auth})", flush=True)
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(config: RegistryConfig, access_log: bool = False) -> int:
    problems = config.validate()
    if problems:
        for p in problems:
            print(f"dockyard registry: {p}", file=sys.stderr)
        return 2
    os.makedirs(config.root, exist_ok=True)
    try:
        asyncio.run(serve(config, access_log=access_log))
    except OSError as e:
        print(f"dockyard registry: {e}", file=sys.stderr)
        return 1
    return 0
