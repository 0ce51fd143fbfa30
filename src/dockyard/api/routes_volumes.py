"""Volume endpoints: HTTP in, a VolumeService call, HTTP out."""

from __future__ import annotations

from aiohttp import web

from dockyard.api import schema
from dockyard.api.app import add_route, ctx_of, json_response
from dockyard.api.filters import parse_filters
from dockyard.api.jsonbody import read_json
from dockyard.errors import InvalidParameter, NotFound

VOLUME_CREATE = schema.Struct("CreateOptions", {
    "Name": schema.STR, "Driver": schema.STR, "DriverOpts": schema.STRMAP,
    "Labels": schema.STRMAP, "ClusterVolumeSpec": schema.ANY}, "volume.CreateOptions")


def _vols(request: web.Request):
    v = ctx_of(request).extra.get("volumes")
    if v is None:
        raise NotFound("page not found")
    return v


def _bool(request: web.Request, key: str) -> bool:
    return request.query.get(key, "").lower() in ("1", "true")


async def list_volumes(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    return json_response(await ctx_of(request).run(_vols(request).list, filters))


async def create(request: web.Request) -> web.Response:
    body = await read_json(request, VOLUME_CREATE, required=False)
    if body.get("ClusterVolumeSpec"):
        raise InvalidParameter("ClusterVolumeSpec: cluster volumes need swarm mode, which "
                               "this daemon does not run")
    v = _vols(request)
    out, _ = await ctx_of(request).run(lambda: v.create(
        body.get("Name") or None, body.get("Driver") or None, body.get("DriverOpts"),
        body.get("Labels")))
    return json_response(out, status=201)


async def inspect(request: web.Request) -> web.Response:
    v = _vols(request)
    return json_response(await ctx_of(request).run(v.get, request.match_info["name"]))


async def update(request: web.Request) -> web.Response:
    raise InvalidParameter("volume update is only for cluster volumes (swarm mode), which "
                           "this daemon does not run")


async def remove(request: web.Request) -> web.Response:
    v = _vols(request)
    await ctx_of(request).run(v.remove, request.match_info["name"], _bool(request, "force"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    return json_response(await ctx_of(request).run(_vols(request).prune, filters))


def register(app: web.Application) -> None:
    add_route(app, "GET", "/volumes", list_volumes)
    add_route(app, "POST", "/volumes/create", create)
    add_route(app, "POST", "/volumes/prune", prune)
    add_route(app, "GET", "/volumes/{name}", inspect)
    add_route(app, "PUT", "/volumes/{name}", update)
    add_route(app, "DELETE", "/volumes/{name}", remove)
