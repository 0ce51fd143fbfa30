"""The UI's JSON API (``/api/...``): each handler is one or a few Engine API calls.

Only what the pages need, checked here (names, actions, kinds), so the browser
never gets a general proxy to the daemon. Engine errors pass through with the
engine's status and message (the guard in :mod:`dockyard.ui.app` maps them).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

from aiohttp import web

from dockyard.ui.app import ENGINE

CONTAINER_LIST = web.AppKey("container_list", object)   # a containerlist.ContainerList
ACTIONS = ("start", "stop", "restart", "pause", "unpause", "kill")
PRUNE_KINDS = {"containers": "/containers/prune", "images": "/images/prune",
               "volumes": "/volumes/prune", "networks": "/networks/prune", "build": "/build/prune"}


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _q(request: web.Request, name: str) -> str:
    v = request.query.get(name, "")
    if not v:
        raise web.HTTPBadRequest(text=json.dumps({"message": f"{name} is required"}),
                                 content_type="application/json")
    return _name(v, name)


async def _body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        b = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"message": "the body is not JSON"}),
                                 content_type="application/json")
    if not isinstance(b, dict):
        raise web.HTTPBadRequest(text=json.dumps({"message": "the body must be a JSON object"}),
                                 content_type="application/json")
    return b


_REF_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/@+")


def _name(v: str, what: str) -> str:
    """An image reference, volume name or network id as one path piece of ours:
    the characters references use, no empty, '.' or '..' segment."""
    if (not v or len(v) > 512 or not set(v) <= _REF_CHARS
            or any(seg in ("", ".", "..") for seg in v.split("/"))):
        raise web.HTTPBadRequest(text=json.dumps({"message": f"bad {what} {v!r}"}),
                                 content_type="application/json")
    return v


def _cid(request: web.Request) -> str:
    cid = request.match_info["id"]
    if "/" in cid:
        raise web.HTTPBadRequest(text=json.dumps({"message": "bad container id"}),
                                 content_type="application/json")
    return _name(cid, "container id")


# ---- containers ---------------------------------------------------------------------

def container_row(c: dict) -> dict:
    names = c.get("Names") or []
    status = c.get("Status") or ""
    health = ""
    for h in ("(healthy)", "(unhealthy)", "(health: starting)"):
        if h in status:
            health = h.strip("()").replace("health: ", "")
    ports = []
    for p in c.get("Ports") or []:
        ports.append({"ip": p.get("IP") or "", "private": p.get("PrivatePort"),
                      "public": p.get("PublicPort"), "type": p.get("Type") or "tcp"})
    return {"id": c.get("Id", ""), "name": (names[0] if names else "").lstrip("/"),
            "image": c.get("Image", ""), "state": c.get("State", ""), "status": status,
            "health": health, "ports": ports}


def encode_containers(rows: list) -> bytes:
    """The page's list as compact JSON (no spaces; 1,000 containers are ~200 KB)."""
    return json.dumps({"containers": [container_row(c) for c in rows]}, separators=(",", ":")).encode()



async def containers(request: web.Request) -> web.Response:
    body, kept = await request.app[CONTAINER_LIST].get()
    return web.Response(body=body, content_type="application/json",
                        headers={"Cache-Control": "no-store", "X-Dockyard-List": "kept" if kept else "fetched"})


async def container_inspect(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ENGINE].get(f"/containers/{_cid(request)}/json"))


async def container_top(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ENGINE].get(f"/containers/{_cid(request)}/top"))


async def container_changes(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ENGINE].get(f"/containers/{_cid(request)}/changes") or [])


async def container_action(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    if action not in ACTIONS:
        return _bad(f"unknown action {action!r}", 404)
    params = {}
    if action in ("stop", "restart") and request.query.get("t"):
        params["t"] = request.query["t"]
    try:
        await request.app[ENGINE].request("POST", f"/containers/{_cid(request)}/{action}", params)
    finally:
        request.app[CONTAINER_LIST].changed()
    return web.json_response({"ok": True, "action": action})


async def container_remove(request: web.Request) -> web.Response:
    force = "1" if request.query.get("force") in ("1", "true") else None
    try:
        await request.app[ENGINE].request("DELETE", f"/containers/{_cid(request)}",
                                          {"force": force, "v": "1" if request.query.get("v") else None})
    finally:
        request.app[CONTAINER_LIST].changed()
    return web.json_response({"ok": True})


# ---- images -------------------------------------------------------------------------

async def images(request: web.Request) -> web.Response:
    rows = await request.app[ENGINE].get("/images/json")
    out = [{"id": i.get("Id", ""), "tags": [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"],
            "digests": i.get("RepoDigests") or [], "size": i.get("Size", 0),
            "created": i.get("Created", 0), "containers": i.get("Containers", -1)} for i in rows or []]
    return web.json_response({"images": out})


async def image_detail(request: web.Request) -> web.Response:
    ref = _q(request, "ref")
    eng = request.app[ENGINE]
    inspect, history = await asyncio.gather(eng.get(f"/images/{ref}/json"), eng.get(f"/images/{ref}/history"))
    return web.json_response({"inspect": inspect, "history": history})


async def image_remove(request: web.Request) -> web.Response:
    ref = _q(request, "ref")
    res = await request.app[ENGINE].request("DELETE", f"/images/{ref}",
                                            {"force": "1" if request.query.get("force") in ("1", "true") else None})
    return web.json_response({"ok": True, "result": res})


async def image_tag(request: web.Request) -> web.Response:
    b = await _body(request)
    source, repo, tag = str(b.get("source") or ""), str(b.get("repo") or ""), str(b.get("tag") or "latest")
    if not source or not repo:
        return _bad("source and repo are required")
    _name(source, "image"), _name(repo, "repository"), _name(tag, "tag")
    await request.app[ENGINE].request("POST", f"/images/{source}/tag", {"repo": repo, "tag": tag})
    return web.json_response({"ok": True})


def split_ref(ref: str) -> tuple[str, str]:
    """"host:5000/a/b:tag" -> ("host:5000/a/b", "tag"); a digest stays whole."""
    if "@" in ref:
        return ref, ""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"


async def _progress_stream(request: web.Request, method: str, path: str, params: dict) -> web.StreamResponse:
    from dockyard.ui.progress import Progress

    eng = request.app[ENGINE]
    auth = base64.urlsafe_b64encode(b"{}").decode()
    it = eng.json_lines(method, path, params, headers={"X-Registry-Auth": auth})
    first = await it.__anext__()     # an engine error before the stream starts is a status
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
    await resp.prepare(request)
    prog = Progress()
    last = 0.0
    snap = prog.feed(first)
    await resp.write((json.dumps(snap) + "\n").encode())
    async for msg in it:
        snap = prog.feed(msg)
        now = time.monotonic()
        if now - last >= 0.1 or snap["error"]:
            last = now
            await resp.write((json.dumps(snap) + "\n").encode())
    snap = prog.snapshot()
    snap["done"] = True
    if not snap["error"]:
        snap["percent"] = 100.0
    await resp.write((json.dumps(snap) + "\n").encode())
    await resp.write_eof()
    return resp


async def image_pull(request: web.Request) -> web.StreamResponse:
    ref = str((await _body(request)).get("image") or "").strip()
    if not ref or any(c.isspace() for c in ref):
        return _bad("an image reference is required")
    name, tag = split_ref(ref)
    params = {"fromImage": name, "tag": tag or None}
    return await _progress_stream(request, "POST", "/images/create", params)


async def image_push(request: web.Request) -> web.StreamResponse:
    ref = str((await _body(request)).get("image") or "").strip()
    if not ref or any(c.isspace() for c in ref):
        return _bad("an image reference is required")
    name, tag = split_ref(_name(ref, "image"))
    return await _progress_stream(request, "POST", f"/images/{name}/push", {"tag": tag or None})


# ---- builds -------------------------------------------------------------------------

MAX_TAGS = 20
MAX_BUILD_ARGS = 200


def build_params(query) -> dict:
    """The allow-listed build parameters of ``/api/build``'s query, checked, as the
    engine's ``POST /build`` parameters: ``dockerfile``, ``t`` (repeated), ``buildargs``
    (a JSON object of strings), ``nocache``, ``pull``."""
    dockerfile = query.get("dockerfile") or "Dockerfile"
    if len(dockerfile) > 4096 or any(ord(ch) < 32 for ch in dockerfile):
        raise web.HTTPBadRequest(text=json.dumps({"message": f"bad Dockerfile path {dockerfile!r}"}),
                                 content_type="application/json")
    tags = [t for t in query.getall("t", []) if t]
    if len(tags) > MAX_TAGS:
        raise web.HTTPBadRequest(text=json.dumps({"message": f"at most {MAX_TAGS} tags"}),
                                 content_type="application/json")
    for t in tags:
        _name(t, "tag")
    # intermediate containers go, a failed step's too (the CLI's --force-rm)
    params: dict = {"dockerfile": dockerfile, "t": tags or None, "rm": "1", "forcerm": "1"}
    raw = query.get("buildargs")
    if raw:
        try:
            args = json.loads(raw)
        except ValueError:
            args = None
        if (not isinstance(args, dict) or len(args) > MAX_BUILD_ARGS
                or not all(isinstance(k, str) and k and "=" not in k and (v is None or isinstance(v, str))
                           for k, v in args.items())):
            raise web.HTTPBadRequest(text=json.dumps({"message": "buildargs must be a JSON object of "
                                                                 "NAME: string"}),
                                     content_type="application/json")
        params["buildargs"] = json.dumps(args)
    for flag in ("nocache", "pull"):
        if query.get(flag) in ("1", "true"):
            params[flag] = "1"
    return params


async def build(request: web.Request) -> web.StreamResponse:
    """Stream the uploaded context (a tar, plain or compressed) to the engine's classic
    ``POST /build`` and its output back as JSON lines (:class:`BuildOutput`)."""
    from dockyard.ui.progress import BuildOutput

    params = build_params(request.query)
    if not request.can_read_body or request.content_length == 0:
        return _bad("a build context (a tar of the directory) is required")

    async def body():
        async for chunk in request.content.iter_chunked(1 << 16):
            yield chunk

    it = request.app[ENGINE].json_lines("POST", "/build", params, data=body(),
                                        headers={"Content-Type": "application/x-tar"})
    out = BuildOutput()
    try:
        first = await it.__anext__()   # an error before the build starts is a status
    except StopAsyncIteration:
        first = None
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    try:
        if first is not None:
            line = out.feed(first)
            if line:
                await resp.write((json.dumps(line) + "\n").encode())
            async for msg in it:
                line = out.feed(msg)
                if line:
                    await resp.write((json.dumps(line) + "\n").encode())
    finally:
        await it.aclose()
    await resp.write((json.dumps(out.summary()) + "\n").encode())
    await resp.write_eof()
    return resp


# ---- volumes, networks, system ------------------------------------------------------

async def volumes(request: web.Request) -> web.Response:
    res = await request.app[ENGINE].get("/volumes") or {}
    return web.json_response({"volumes": res.get("Volumes") or [], "warnings": res.get("Warnings") or []})


async def volume_remove(request: web.Request) -> web.Response:
    await request.app[ENGINE].request("DELETE", f"/volumes/{_q(request, 'name')}",
                                      {"force": "1" if request.query.get("force") else None})
    return web.json_response({"ok": True})


async def networks(request: web.Request) -> web.Response:
    eng = request.app[ENGINE]
    rows = await eng.get("/networks") or []
    details = await asyncio.gather(*(eng.get(f"/networks/{n['Id']}") for n in rows), return_exceptions=True)
    out = []
    for n, d in zip(rows, details):
        conts = (d.get("Containers") if isinstance(d, dict) else None) or n.get("Containers") or {}
        ipam = ((n.get("IPAM") or {}).get("Config") or [])
        out.append({"id": n.get("Id", ""), "name": n.get("Name", ""), "driver": n.get("Driver", ""),
                    "scope": n.get("Scope", ""), "internal": n.get("Internal", False),
                    "subnets": [c.get("Subnet") for c in ipam if c.get("Subnet")],
                    "containers": [{"id": cid, "name": c.get("Name", ""), "ipv4": c.get("IPv4Address", "")}
                                   for cid, c in conts.items()]})
    return web.json_response({"networks": out})


async def network_remove(request: web.Request) -> web.Response:
    await request.app[ENGINE].request("DELETE", f"/networks/{_q(request, 'id')}")
    return web.json_response({"ok": True})


async def system(request: web.Request) -> web.Response:
    eng = request.app[ENGINE]
    info, version, df = await asyncio.gather(eng.get("/info"), eng.get("/version"), eng.get("/system/df"),
                                             return_exceptions=True)
    def ok(v):
        return None if isinstance(v, BaseException) else v
    return web.json_response({"info": ok(info), "version": ok(version), "df": ok(df),
                              "df_error": str(df) if isinstance(df, BaseException) else None})


async def prune(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    path = PRUNE_KINDS.get(kind)
    if path is None:
        return _bad(f"unknown prune kind {kind!r}", 404)
    params = {}
    if kind == "images" and request.query.get("all") in ("1", "true"):
        params["filters"] = json.dumps({"dangling": {"false": True}})
    res = await request.app[ENGINE].request("POST", path, params, timeout=600)
    return web.json_response({"ok": True, "result": res})


def register(app: web.Application) -> None:
    from dockyard.ui.containerlist import ContainerList

    app[CONTAINER_LIST] = ContainerList(app[ENGINE], encode_containers)
    r = app.router
    r.add_get("/api/containers", containers)
    r.add_get("/api/containers/{id}", container_inspect)
    r.add_get("/api/containers/{id}/top", container_top)
    r.add_get("/api/containers/{id}/changes", container_changes)
    r.add_post("/api/containers/{id}/{action}", container_action)
    r.add_delete("/api/containers/{id}", container_remove)
    r.add_get("/api/images", images)
    r.add_get("/api/image", image_detail)
    r.add_delete("/api/image", image_remove)
    r.add_post("/api/images/tag", image_tag)
    r.add_post("/api/images/pull", image_pull)
    r.add_post("/api/images/push", image_push)
    r.add_post("/api/build", build)
    r.add_get("/api/volumes", volumes)
    r.add_delete("/api/volume", volume_remove)
    r.add_get("/api/networks", networks)
    r.add_delete("/api/network", network_remove)
    r.add_get("/api/system", system)
    r.add_post("/api/prune/{kind}", prune)
