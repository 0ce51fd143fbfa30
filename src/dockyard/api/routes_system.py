"""/_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import time

from aiohttp import web

from dockyard.api.app import add_route, ctx_of, json_response
from dockyard.api.bridge import while_connected
from dockyard.api.filters import parse_filters
from dockyard.api.streams import encode_event
from dockyard.api.timestamps import parse_timestamp_ns
from dockyard.api.versions import API_VERSION
from dockyard.errors import InvalidParameter

_PING_HEADERS = {
    "Api-Version": API_VERSION,
    "Builder-Version": "1",
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Swarm": "inactive",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


async def ping(request: web.Request) -> web.Response:
    body = b"" if request.method == "HEAD" else b"OK"
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers=_PING_HEADERS)


async def version(request: web.Request) -> web.Response:
    return json_response(ctx_of(request).system.version())


async def info(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    return json_response(await ctx.run(ctx.system.info))


async def system_df(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    return json_response(await ctx.run(ctx.system.disk_usage))


async def events(request: web.Request) -> web.StreamResponse:
    from dockyard.daemon.events import EVENT_FILTERS

    ctx = ctx_of(request)
    since = parse_timestamp_ns(request.query.get("since"))
    until = parse_timestamp_ns(request.query.get("until"))
    filters = parse_filters(request.query.get("filters"))
    for key in filters:
        if key not in EVENT_FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
    now = time.time_ns()
    if since is not None and until is not None and until < since:
        raise InvalidParameter("`since` time must be before `until` time")
    past, sub = ctx.events.subscribe(filters, since_ns=since)
    try:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)  # headers go out at once
        for ev in past:
            if until is not None and ev["timeNano"] > until:
                break
            await resp.write(encode_event(ev))
        if until is not None and until <= now:
            await resp.write_eof()
            return resp
        async def live():
            while True:
                timeout = None
                if until is not None:
                    timeout = (until - time.time_ns()) / 1e9
                    if timeout <= 0:
                        return
                ev = await sub.get(timeout)
                if ev is None or (until is not None and ev["timeNano"] > until):
                    return
                yield ev

        async for ev in while_connected(request, live()):
            await resp.write(encode_event(ev))
        await resp.write_eof()
        return resp
    finally:
        sub.close()


def register(app: web.Application) -> None:
    app.router.add_route("GET", "/_ping", ping)
    app.router.add_route("HEAD", "/_ping", ping)
    app.router.add_route("GET", r"/v{api_version:[0-9]+\.[0-9]+}/_ping", ping)
    app.router.add_route("HEAD", r"/v{api_version:[0-9]+\.[0-9]+}/_ping", ping)
    add_route(app, "GET", "/version", version)
    add_route(app, "GET", "/info", info)
    add_route(app, "GET", "/events", events)
    add_route(app, "GET", "/system/df", system_df)
