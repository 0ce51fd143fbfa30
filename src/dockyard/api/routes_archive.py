"""`/containers/{id}/archive` (docker cp): HEAD stats a path, GET streams a tar of it,
PUT extracts a tar into a directory. The work is :mod:`dockyard.containers.archive`'s."""

from __future__ import annotations

import asyncio

from aiohttp import web

from dockyard.api.app import add_route, ctx_of, query_bool
from dockyard.errors import DockyardError, InvalidParameter, NotFound

STAT_HEADER = "X-Docker-Container-Path-Stat"


def _archive(request: web.Request):
    from dockyard.containers.archive import ArchiveService

    svc = ctx_of(request).extra.get("containers")
    if svc is None:
        raise NotFound("page not found")
    return ArchiveService(svc)


def _path(request: web.Request) -> str:
    if "path" not in request.query:
        raise InvalidParameter("path is required")   # dockerd: a missing query parameter
    return request.query["path"]


def _bool_param(request: web.Request, name: str) -> bool:
    v = request.query.get(name)
    if v is None or v == "":
        return False
    if v.strip().lower() in ("1", "true", "0", "false"):
        return query_bool(request, name)
    raise InvalidParameter(f"invalid value for {name}: {v!r} (a boolean is expected)")


async def head_archive(request: web.Request) -> web.Response:
    from dockyard.containers.archive import encode_path_stat

    st = await _archive(request).stat(request.match_info["id"], _path(request))
    return web.Response(status=200, headers={STAT_HEADER: encode_path_stat(st),
                                             "Content-Type": "application/json"})


async def get_archive(request: web.Request) -> web.StreamResponse:
    from dockyard.api.bridge import stream_response
    from dockyard.containers.archive import encode_path_stat

    path = _path(request)
    stat_box: dict = {}
    archive = _archive(request)

    def headers() -> dict[str, str]:
        return {"Content-Type": "application/x-tar",
                STAT_HEADER: encode_path_stat(stat_box["stat"])}

    return await stream_response(request, headers, lambda writer: archive.get(
        request.match_info["id"], path, lambda st: stat_box.__setitem__("stat", st), writer))


async def put_archive(request: web.Request) -> web.Response:
    from dockyard.api.bridge import AsyncBodyReader

    path = _path(request)
    no_overwrite = _bool_param(request, "noOverwriteDirNonDir")
    copy_uid_gid = _bool_param(request, "copyUIDGID")
    reader = AsyncBodyReader(request, asyncio.get_running_loop())
    try:
        await _archive(request).put(request.match_info["id"], path, reader,
                                    no_overwrite_dir_non_dir=no_overwrite,
                                    copy_uid_gid=copy_uid_gid)
    except DockyardError:
        # read what the client still sends, so it gets our answer rather than a reset
        try:
            while await request.content.read(1 << 16):
                pass
        except Exception:  # noqa: BLE001 - the answer matters more
            pass
        raise
    return web.Response(status=200)


def register(app: web.Application) -> None:
    add_route(app, "HEAD", "/containers/{id}/archive", head_archive)
    add_route(app, "GET", "/containers/{id}/archive", get_archive)
    add_route(app, "PUT", "/containers/{id}/archive", put_archive)
