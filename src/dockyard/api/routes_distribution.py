"""Registry endpoints: pull (POST /images/create?fromImage=), push, login (POST /auth),
search. Pull and push stream Docker's JSON progress; an error before the first
message is a plain HTTP error (404 for an unknown repository), later ones travel
in-band after the 200.

``register(app)`` must run before ``routes_images.register(app)``: this module's
POST /images/create handles ``fromImage`` and hands every other request
(``fromSrc`` imports) to the image routes' handler.

Insecure registries come from ``ctx.extra["insecure_registries"]`` (the daemon's
``--insecure-registry`` list); loopback registries are always plain-HTTP-capable.
"""

from __future__ import annotations

import logging

from aiohttp import web

from dockyard.api import schema
from dockyard.api.app import add_route, ctx_of, json_response
from dockyard.api.jsonbody import read_json
from dockyard.api.streams import ProgressEncoder
from dockyard.errors import DockyardError, InvalidParameter, SystemError_, Unauthorized

log = logging.getLogger("dockyard.api.distribution")


def _images(request: web.Request):
    from dockyard.api.routes_images import _images as images
    return images(request)


def _insecure(request: web.Request) -> tuple[str, ...]:
    return tuple(ctx_of(request).extra.get("insecure_registries") or ())


def _auth(request: web.Request):
    from dockyard.images import credentials
    return credentials.as_credentials(credentials.decode_header(request.headers.get("X-Registry-Auth")))


async def _stream(request: web.Request, agen) -> web.StreamResponse:
    """Stream an async generator of progress messages; errors before the first
    message propagate (plain HTTP error), later ones go in-band."""
    enc = ProgressEncoder()
    try:
        first = await agen.__anext__()
    except StopAsyncIteration:
        first = None
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        if first is not None:
            await resp.write(enc.message(first))
        async for msg in agen:
            await resp.write(enc.message(msg))
    except (ConnectionResetError, ConnectionError):
        await agen.aclose()
        raise
    except DockyardError as e:
        await resp.write(enc.error(str(e)))
    except Exception as e:  # a bug: still tell the client in-band
        log.exception("%s %s failed", request.method, request.path)
        await resp.write(enc.error(f"{type(e).__name__}: {e}"))
    finally:
        await agen.aclose()
    await resp.write_eof()
    return resp


async def create_image(request: web.Request) -> web.StreamResponse:
    q = request.query
    if not q.get("fromImage"):
        from dockyard.api.routes_images import create_image as import_image
        return await import_image(request)
    from dockyard.images import reference as refs
    from dockyard.images.pull import pull

    svc = _images(request)
    image, tag = q.get("fromImage", ""), q.get("tag") or None
    try:
        parsed = refs.parse_normalized(image)
    except InvalidParameter:
        raise
    all_tags = tag is None and parsed.tag is None and parsed.digest is None
    agen = pull(svc, image, tag, platform=q.get("platform") or None, all_tags=all_tags,
                auth=_auth(request), insecure_registries=_insecure(request))
    return await _stream(request, agen)


async def push_image(request: web.Request) -> web.StreamResponse:
    from dockyard.images.push import push

    svc = _images(request)
    agen = push(svc, request.match_info["name"], request.query.get("tag") or None,
                auth=_auth(request), insecure_registries=_insecure(request))
    return await _stream(request, agen)


async def login(request: web.Request) -> web.Response:
    from dockyard.distribution.errors import RegistryError
    from dockyard.images import credentials
    from dockyard.images.registry_client import RegistryClient, RegistryUnreachable

    body = await read_json(request, schema.AUTH, required=False)
    auth = credentials.AuthConfig(str(body.get("username") or ""), str(body.get("password") or ""),
                                  str(body.get("serveraddress") or ""),
                                  str(body.get("identitytoken") or ""))
    host = credentials.registry_host(auth.serveraddress)
    # offline: a token server is asked for a refresh token, the login's IdentityToken
    client = RegistryClient(host, credentials.as_credentials(auth), _insecure(request),
                            offline=True)
    try:
        await client.login()
    except RegistryUnreachable as e:
        raise SystemError_(e.message) from None
    except RegistryError as e:
        if e.status == 401:
            raise Unauthorized(e.message) from None
        raise SystemError_(e.message) from None
    finally:
        await client.close()
    return json_response({"IdentityToken": client.auth.refresh_token or "",
                          "Status": "Login Succeeded"})


def _bool_filter(values: list[str], name: str) -> bool | None:
    if not values:
        return None
    v = values[-1].lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise InvalidParameter(f"invalid filter '{name}={values[-1]}'")


async def search_images(request: web.Request) -> web.Response:
    from dockyard.api.filters import parse_filters
    from dockyard.distribution.errors import RegistryError
    from dockyard.images.registry_client import RegistryClient, RegistryUnreachable

    term = request.query.get("term", "")
    if not term:
        raise InvalidParameter("term is required")
    limit_s = request.query.get("limit")
    limit = 25
    if limit_s:
        try:
            limit = int(limit_s)
        except ValueError:
            raise InvalidParameter(f"invalid limit {limit_s!r}") from None
        if not 1 <= limit <= 100:
            raise InvalidParameter(f"limit {limit} is outside the range of [1, 100]")
    filters = parse_filters(request.query.get("filters"))
    for k in filters:
        if k not in ("stars", "is-official", "is-automated"):
            raise InvalidParameter(f"invalid filter '{k}'")
    stars = 0
    for v in filters.get("stars", []):
        try:
            stars = max(stars, int(v))
        except ValueError:
            raise InvalidParameter(f"invalid filter 'stars={v}'") from None
    official = _bool_filter(filters.get("is-official", []), "is-official")
    automated = _bool_filter(filters.get("is-automated", []), "is-automated")
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        index, remote = first, rest
    else:
        index, remote = "index.docker.io", term
    client = RegistryClient(index, _auth(request), _insecure(request))
    if index == "index.docker.io":
        client.host = index          # the Hub answers searches on the index host
    try:
        data = await client.search(remote, limit)
    except RegistryUnreachable as e:
        raise SystemError_(e.message) from None
    except RegistryError as e:
        raise SystemError_(f"Unexpected status code {e.status}") from None
    finally:
        await client.close()
    out = []
    for r in data.get("results") or []:
        if stars and int(r.get("star_count") or 0) < stars:
            continue
        if official is not None and bool(r.get("is_official")) != official:
            continue
        if automated is not None and bool(r.get("is_automated")) != automated:
            continue
        out.append({"star_count": int(r.get("star_count") or 0),
                    "is_official": bool(r.get("is_official")),
                    "name": r.get("name", ""),
                    "is_automated": bool(r.get("is_automated")),
                    "description": r.get("description") or ""})
    return json_response(out[:limit])


def register(app: web.Application) -> None:
    add_route(app, "POST", "/auth", login)
    add_route(app, "GET", "/images/search", search_images)
    add_route(app, "POST", "/images/create", create_image)
    add_route(app, "POST", "/images/{name:.+}/push", push_image)
