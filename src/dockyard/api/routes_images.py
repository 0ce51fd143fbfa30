"""Image endpoints: translate HTTP to ImageService calls (blocking, run in threads)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from aiohttp import web

from dockyard.api.app import add_route, ctx_of, json_response, query_bool
from dockyard.api.bridge import AsyncBodyReader, stream_response
from dockyard.api.filters import parse_filters
from dockyard.api.streams import ProgressEncoder
from dockyard.errors import DockyardError, InvalidParameter, SystemError_, Unavailable

_DONE = object()


def _images(request: web.Request):
    svc = ctx_of(request).images
    if svc is None:
        raise Unavailable("the image service is not available in this daemon")
    return svc


def split_repo_tag(repo: str, tag: str | None) -> tuple[str | None, str | None]:
    """``repo=busybox:v1`` (how the CLI sends import's target) -> (busybox, v1)."""
    if not repo:
        return None, tag or None
    if not tag:
        slash, colon = repo.rfind("/"), repo.rfind(":")
        if colon > slash and "@" not in repo:
            repo, tag = repo[:colon], repo[colon + 1:]
    return repo, tag or None


async def _drain(request: web.Request) -> None:
    """Read what is left of an upload so that the client sees our error answer."""
    try:
        while await request.content.readany():
            pass
    except Exception:
        pass


async def list_images(request: web.Request) -> web.Response:
    ctx, svc = ctx_of(request), _images(request)
    filters = parse_filters(request.query.get("filters"))
    legacy = request.query.get("filter")
    if legacy:
        filters.setdefault("reference", []).append(legacy)
    all_ = query_bool(request, "all")
    digests = query_bool(request, "digests")
    result = await ctx.run(lambda: svc.list_images(all=all_, filters=filters, digests=digests))
    return json_response(result)


async def inspect_image(request: web.Request) -> web.Response:
    ctx, svc = ctx_of(request), _images(request)
    return json_response(await ctx.run(svc.inspect, request.match_info["name"]))


async def history(request: web.Request) -> web.Response:
    ctx, svc = ctx_of(request), _images(request)
    return json_response(await ctx.run(svc.history, request.match_info["name"]))


async def tag_image(request: web.Request) -> web.Response:
    ctx, svc = ctx_of(request), _images(request)
    repo = request.query.get("repo", "")
    tag = request.query.get("tag") or None
    if not repo:
        raise InvalidParameter("repository name must have at least one component")
    await ctx.run(svc.tag, request.match_info["name"], repo, tag)
    return web.Response(status=201)


async def remove_image(request: web.Request) -> web.Response:
    ctx, svc = ctx_of(request), _images(request)
    force = query_bool(request, "force")
    noprune = query_bool(request, "noprune")
    await _before_image_removal(request)
    result = await ctx.run(lambda: svc.remove(request.match_info["name"], force=force,
                                              noprune=noprune))
    return json_response(result)


async def prune_images(request: web.Request) -> web.Response:
    ctx, svc = ctx_of(request), _images(request)
    filters = parse_filters(request.query.get("filters"))
    for key in filters:
        if key not in ("dangling", "label", "label!", "until"):
            raise InvalidParameter(f"invalid filter '{key}'")
    await _before_image_removal(request)
    return json_response(await ctx.run(svc.prune, filters))


async def _before_image_removal(request: web.Request) -> None:
    """What holds image snapshots without a container record (the warm pool, `--rm`
    containers whose files are still being removed) is done with before an image goes."""
    containers = ctx_of(request).extra.get("containers")
    if containers is not None and hasattr(containers, "before_image_removal"):
        await containers.before_image_removal()


def _open_url(url: str):
    if not url.startswith(("http://", "https://")):
        raise InvalidParameter(f"unsupported source for import: {url!r} "
                               "(use '-' to upload, or an http(s) URL)")
    try:
        return urllib.request.urlopen(url, timeout=60)
    except ValueError as e:   # not a URL urllib can even parse ("http://[::1")
        raise InvalidParameter(f"invalid URL {url!r}: {e}") from None
    except urllib.error.HTTPError as e:
        raise InvalidParameter(f"Get \"{url}\": bad response status: {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SystemError_(f"Get \"{url}\": {reason}") from None


async def create_image(request: web.Request) -> web.StreamResponse:
    ctx, svc = ctx_of(request), _images(request)
    q = request.query
    if q.get("fromImage"):
        pull = getattr(svc, "pull", None)
        if pull is None:
            await _drain(request)
            raise SystemError_(f"pulling images is not supported by this daemon yet "
                               f"(fromImage={q.get('fromImage')})")
        raise SystemError_("pull is not wired into the API yet")
    src = q.get("fromSrc")
    if not src:
        raise InvalidParameter("either fromSrc or fromImage must be given")
    repo, tag = split_repo_tag(q.get("repo", ""), q.get("tag"))
    changes = [c for c in q.getall("changes", []) if c]
    message = q.get("message") or None
    loop = asyncio.get_running_loop()

    def run() -> str:
        if src == "-":
            stream = AsyncBodyReader(request, loop)
            return svc.import_image(stream, repo=repo, tag=tag, changes=changes, message=message)
        with _open_url(src) as stream:
            return svc.import_image(stream, repo=repo, tag=tag, changes=changes, message=message)

    try:
        image_id = await ctx.run(run)
    except DockyardError:
        await _drain(request)
        raise
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(ProgressEncoder().status(image_id))
    await resp.write_eof()
    return resp


async def load_images(request: web.Request) -> web.StreamResponse:
    ctx, svc = ctx_of(request), _images(request)
    quiet = query_bool(request, "quiet")
    reader = AsyncBodyReader(request, asyncio.get_running_loop())
    enc = ProgressEncoder()
    it = await ctx.run(lambda: iter(svc.load_images(reader, quiet=quiet)))
    # As dockerd: whatever the archive's fault, the answer is a 200 whose JSON stream
    # ends with the error (docker-py's images.load() raises ImageLoadError on it, the CLI
    # prints it and exits 1). Quiet output is held back until the end.
    held: list[dict] = []
    resp: web.StreamResponse | None = None
    try:
        while True:
            try:
                msg = await ctx.run(next, it, _DONE)
            except DockyardError as e:
                if resp is None:
                    await _drain(request)
                    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
                    await resp.prepare(request)
                for m in held:
                    await resp.write(enc.message(m))
                held = []
                await resp.write(enc.error(str(e)))
                break
            if msg is _DONE:
                break
            held.append(msg)
            if quiet:
                continue
            if resp is None:
                resp = web.StreamResponse(headers={"Content-Type": "application/json"})
                await resp.prepare(request)
            for m in held:
                await resp.write(enc.message(m))
            held = []
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            await ctx.run(close)
    if resp is None:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
    for m in held:
        await resp.write(enc.message(m))
    await resp.write_eof()
    return resp


async def save_images(request: web.Request) -> web.StreamResponse:
    ctx, svc = ctx_of(request), _images(request)
    if "name" in request.match_info:
        names = [request.match_info["name"]]
    else:
        names = [n for v in request.query.getall("names", []) for n in v.split(",") if n]
    if not names:
        raise InvalidParameter("no images given: use names=IMAGE")
    return await stream_response(request, lambda: {"Content-Type": "application/x-tar"},
                                 lambda out: ctx.run(svc.export_images, names, out))


async def push_image(request: web.Request) -> web.StreamResponse:
    raise SystemError_("pushing images is not supported by this daemon yet")


async def search_images(request: web.Request) -> web.StreamResponse:
    raise SystemError_("searching registries is not supported by this daemon yet")


def register(app: web.Application) -> None:
    # fixed paths before the multi-segment {name} ones
    add_route(app, "GET", "/images/json", list_images)
    add_route(app, "GET", "/images/get", save_images)
    add_route(app, "GET", "/images/search", search_images)
    add_route(app, "POST", "/images/create", create_image)
    add_route(app, "POST", "/images/load", load_images)
    add_route(app, "POST", "/images/prune", prune_images)
    add_route(app, "GET", "/images/{name:.+}/json", inspect_image)
    add_route(app, "GET", "/images/{name:.+}/history", history)
    add_route(app, "GET", "/images/{name:.+}/get", save_images)
    add_route(app, "POST", "/images/{name:.+}/tag", tag_image)
    add_route(app, "POST", "/images/{name:.+}/push", push_image)
    add_route(app, "DELETE", "/images/{name:.+}", remove_image)
