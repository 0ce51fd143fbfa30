"""The Engine API application: routes -> handlers; errors and versions in middlewares.

The API only translates: HTTP in, a service call, HTTP out.  Services are
handed in by the daemon's composition root as an :class:`ApiContext`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from dockyard import __version__
from dockyard.api import versions
from dockyard.errors import DockyardError, NotModified

log = logging.getLogger("dockyard.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ApiContext:
    system: Any                    # dockyard.daemon.system.SystemService
    events: Any                    # dockyard.daemon.events.EventBus
    images: Any = None             # dockyard.images.service.ImageService
    executor: Executor | None = None
    extra: dict = field(default_factory=dict)   # later services (containers, ...)

    async def run(self, fn: Callable, *args: Any) -> Any:
        """Run a blocking service call in the executor."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


CTX = web.AppKey("ctx", ApiContext)

_VERSION_PREFIX = r"/v{api_version:[0-9]+\.[0-9]+}"


def add_route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Register ``path`` both unversioned and under ``/v1.NN``."""
    app.router.add_route(method, path, handler)
    app.router.add_route(method, _VERSION_PREFIX + path, handler)


def go_json_bytes(data: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, with <, > and & escaped."""
    s = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    s = (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
         .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return s.encode()


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=go_json_bytes(data) + b"\n",
                        content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    if status == 304:
        return web.Response(status=304)
    return json_response({"message": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place where service errors become HTTP statuses."""
    try:
        return await handler(request)
    except NotModified:
        return web.Response(status=304)
    except DockyardError as e:
        if request.get("response_started"):
            raise
        if e.status >= 500 and type(e).__name__ != "_NotManager":
            log.error("%s %s: %s", request.method, request.path, e)
        return error_response(e.status, str(e))
    except web.HTTPNotFound:
        return error_response(404, "page not found")
    except web.HTTPMethodNotAllowed:
        return error_response(405, "method not allowed")
    except web.HTTPException as e:
        if e.status >= 400:
            return error_response(e.status, e.text or e.reason)
        raise
    except ConnectionResetError:
        # the client left a stream (logs -f, events, stats, pull...) while we wrote: the
        # response already went out as far as it could; aiohttp finishes it quietly
        prepared = request.get("prepared_response")
        if prepared is not None:
            return prepared
        raise
    except asyncio.CancelledError:
        raise
    except Exception as e:
        full = _no_space(e)
        if full is not None and not request.get("response_started"):
            log.error("%s %s: %s", request.method, request.path, full)
            return error_response(500, full)
        # a bug: log it, answer 500
        log.exception("%s %s failed", request.method, request.path)
        if request.get("response_started"):
            raise
        return error_response(500, f"internal error: {type(e).__name__}: {e}")


def _no_space(e: BaseException) -> str | None:
    """A full disk, whichever layer met it (a write's ENOSPC/EDQUOT, SQLite's "database
    or disk is full"), in words a user acts on; None for anything else."""
    import errno
    import sqlite3

    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f": {e.filename}" if e.filename else ""
            return f"no space left on device{where}"
        if isinstance(e, sqlite3.OperationalError) and "full" in str(e):
            return "no space left on device: the metadata database cannot be written"
        e = e.__cause__ or e.__context__
        seen += 1
    return None


@web.middleware
async def version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    v = request.match_info.get("api_version")
    if log.isEnabledFor(logging.DEBUG):
        log.debug("Calling %s %s", request.method, request.path_qs)
    if v is not None:
        versions.check(v)
    request["api_version"] = v or versions.API_VERSION
    return await handler(request)


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h["Api-Version"] = versions.API_VERSION
    h["Docker-Experimental"] = "false"
    h["Ostype"] = "linux"
    h["Server"] = f"Dockyard/{__version__} (linux)"
    request["response_started"] = True
    request["prepared_response"] = response


def create_app(ctx: ApiContext) -> web.Application:
    # the version check runs inside the error middleware so its 400 is JSON
    app = web.Application(middlewares=[error_middleware, version_middleware],
                          client_max_size=1024 ** 3, handler_args={"max_field_size": 65536})
    app[CTX] = ctx
    app.on_response_prepare.append(_on_prepare)
    from dockyard.api import (routes_containers, routes_distribution, routes_images,
                              routes_networks, routes_system)

    routes_system.register(app)
    routes_distribution.register(app)   # before the image routes: it takes /images/create?fromImage=
    routes_images.register(app)
    routes_containers.register(app)
    routes_networks.register(app)
    from dockyard.api import routes_archive
    routes_archive.register(app)   # docker cp: /containers/{id}/archive
    from dockyard.api import routes_build
    routes_build.register(app)     # docker build: /build (the classic builder)
    from dockyard.api import routes_volumes
    routes_volumes.register(app)   # /volumes
    from dockyard.api import routes_swarm
    routes_swarm.register(app)     # 503 as a dockerd outside a swarm
    return app


def ctx_of(request: web.Request) -> ApiContext:
    return request.app[CTX]


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    """Docker's boolean query values: 1/true/True are true, 0/false/"" false."""
    v = request.query.get(name)
    if v is None:
        return default
    return v.strip().lower() not in ("", "0", "false", "no")
