"""Swarm endpoints answered as a dockerd outside a swarm answers them: 503 with its
words (daemon/cluster/errors.go). Clients rely on those (docker-py, the CLI's `docker
info`/`node ls`); swarm itself is not built: the multi-machine path is Kubernetes."""

from __future__ import annotations

from aiohttp import web

from dockyard.api.app import add_route
from dockyard.errors import Unavailable

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm '
               'join" to connect this node to swarm and try again.')
NOT_IN_SWARM = "This node is not part of a swarm"
NO_SWARM_MODE = ("This node cannot join or create a swarm: swarm mode is not supported by "
                 "Dockyard (use Kubernetes for several machines)")


class _NotManager(Unavailable):
    pass


async def _not_manager(request: web.Request) -> web.Response:
    raise _NotManager(NOT_MANAGER)


async def _leave(request: web.Request) -> web.Response:
    raise _NotManager(NOT_IN_SWARM)


async def _no_swarm_mode(request: web.Request) -> web.Response:
    raise _NotManager(NO_SWARM_MODE)


def register(app: web.Application) -> None:
    r = lambda m, p, h: add_route(app, m, p, h)  # noqa: E731
    r("GET", "/swarm", _not_manager)
    r("POST", "/swarm/leave", _leave)
    r("POST", "/swarm/update", _not_manager)
    r("GET", "/swarm/unlockkey", _not_manager)
    r("POST", "/swarm/unlock", _leave)
    for p in ("/swarm/init", "/swarm/join"):
        r("POST", p, _no_swarm_mode)
    for kind in ("nodes", "services", "tasks", "secrets", "configs"):
        r("GET", f"/{kind}", _not_manager)
        r("GET", f"/{kind}/{{id}}", _not_manager)
        r("DELETE", f"/{kind}/{{id}}", _not_manager)
        r("POST", f"/{kind}/{{id}}/update", _not_manager)
        if kind != "nodes" and kind != "tasks":
            r("POST", f"/{kind}/create", _not_manager)
    r("GET", "/services/{id}/logs", _not_manager)
    r("GET", "/tasks/{id}/logs", _not_manager)
