"""Network endpoints: HTTP in, a NetworkManager call, HTTP out."""

from __future__ import annotations

from aiohttp import web

from dockyard.api import schema
from dockyard.api.app import add_route, ctx_of, json_response
from dockyard.api.jsonbody import read_json
from dockyard.api.filters import parse_filters
from dockyard.errors import Forbidden, InvalidParameter, NotFound


def _net(request: web.Request):
    m = ctx_of(request).extra.get("networks")
    if m is None:
        raise NotFound("page not found")
    return m


def _emit(request: web.Request, action: str, info: dict) -> None:
    ctx_of(request).events.emit("network", action, info["Id"],
                                {"name": info["Name"], "type": info["Driver"]})


async def list_networks(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    filters = parse_filters(request.query.get("filters"))
    return json_response(await ctx.run(_net(request).list_networks, filters))


async def inspect(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    return json_response(await ctx.run(_net(request).inspect_network, request.match_info["id"]))


async def create(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    body = await read_json(request, schema.NETWORK_CREATE, required=False)
    name = body.get("Name")
    if not name or not isinstance(name, str):
        raise InvalidParameter("network name must not be empty")
    driver = body.get("Driver") or "bridge"
    ipam = body.get("IPAM") or {}
    _refuse_unsupported(body, ipam)
    cfg, cfg6 = _ipam_configs(ipam.get("Config") or [])
    m = _net(request)
    out = await ctx.run(lambda: m.create_network(
        name, driver=driver, subnet=cfg.get("Subnet") or None, gateway=cfg.get("Gateway") or None,
        ip_range=cfg.get("IPRange") or None, internal=bool(body.get("Internal")),
        labels=body.get("Labels") or None, options=body.get("Options") or None,
        enable_ipv6=bool(body.get("EnableIPv6")), subnet6=cfg6.get("Subnet") or None,
        gateway6=cfg6.get("Gateway") or None, ip_range6=cfg6.get("IPRange") or None,
        attachable=bool(body.get("Attachable"))))
    info = await ctx.run(m.network_of, out["Id"])
    _emit(request, "create", info)
    return json_response(out, status=201)


def _refuse_unsupported(body: dict, ipam: dict) -> None:
    """Fields of a network create this daemon does not implement: refused unless they
    hold their zero value, with dockerd's words (and status) where dockerd refuses too."""
    scope = body.get("Scope") or ""
    if scope in ("swarm", "global"):
        raise Forbidden("cannot create a swarm scoped network when swarm is not active")
    if scope not in ("", "local"):
        raise InvalidParameter(f"invalid network scope: {scope}")
    if body.get("Ingress"):
        raise Forbidden("Ingress network can only be global scope network")
    if body.get("ConfigOnly"):
        raise InvalidParameter("ConfigOnly: Dockyard does not support configuration-only "
                               "networks")
    if (body.get("ConfigFrom") or {}).get("Network"):
        raise InvalidParameter("ConfigFrom: Dockyard does not support configuration-only "
                               "networks")
    if body.get("EnableIPv4") is False:
        raise InvalidParameter("EnableIPv4=false: Dockyard does not support IPv6-only networks")
    drv = ipam.get("Driver") or "default"
    if drv != "default":
        raise NotFound(f'plugin "{drv}" not found')
    if ipam.get("Options"):
        raise InvalidParameter(f"IPAM Options {ipam['Options']!r}: Dockyard does not support "
                               f"them (the default IPAM driver takes none)")
    for c in ipam.get("Config") or []:
        if (c or {}).get("AuxiliaryAddresses"):
            raise InvalidParameter("IPAM AuxiliaryAddresses: Dockyard does not support them")


def _ipam_configs(cfgs: list[dict]) -> tuple[dict, dict]:
    """IPAM Config entries -> (the IPv4 one, the IPv6 one), each {} if absent; the family
    is the subnet's (a gateway's or range's without a subnet)."""
    out: dict[int, dict] = {}
    for c in cfgs:
        c = c or {}
        probe = c.get("Subnet") or c.get("Gateway") or c.get("IPRange") or ""
        fam = 6 if ":" in probe else 4
        if fam in out:
            raise InvalidParameter(f"only one IPv{fam} subnet per network is supported")
        out[fam] = c
    return out.get(4, {}), out.get(6, {})


async def remove(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    m = _net(request)
    info = await ctx.run(m.network_of, request.match_info["id"])
    await ctx.run(m.remove_network, request.match_info["id"])
    _emit(request, "destroy", info)
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    filters = parse_filters(request.query.get("filters"))
    if ctx.extra.get("networks") is None:
        # networking disabled (--bridge none and no manager): nothing to prune, as
        # `docker system prune` expects an answer
        return json_response({"NetworksDeleted": None})
    deleted = await ctx.run(_net(request).prune_networks, filters)
    return json_response({"NetworksDeleted": deleted or None})


async def connect(request: web.Request) -> web.Response:
    from dockyard.containers.networking import connect_container

    body = await read_json(request, schema.NETWORK_CONNECT, required=False)
    svc = ctx_of(request).extra.get("containers")
    if not body.get("Container"):
        raise InvalidParameter("no container given")
    await connect_container(svc, body["Container"], request.match_info["id"],
                            body.get("EndpointConfig") or {})
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    from dockyard.containers.networking import disconnect_container

    body = await read_json(request, schema.NETWORK_DISCONNECT, required=False)
    svc = ctx_of(request).extra.get("containers")
    if not body.get("Container"):
        raise InvalidParameter("no container given")
    await disconnect_container(svc, body["Container"], request.match_info["id"],
                               bool(body.get("Force")))
    return web.Response(status=200)


def register(app: web.Application) -> None:
    add_route(app, "GET", "/networks", list_networks)
    add_route(app, "GET", "/networks/", list_networks)
    add_route(app, "POST", "/networks/create", create)
    add_route(app, "POST", "/networks/prune", prune)
    add_route(app, "GET", "/networks/{id}", inspect)
    add_route(app, "DELETE", "/networks/{id}", remove)
    add_route(app, "POST", "/networks/{id}/connect", connect)
    add_route(app, "POST", "/networks/{id}/disconnect", disconnect)
