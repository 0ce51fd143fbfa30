"""Container and exec endpoints: HTTP in, a ContainerService call, HTTP out."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from dockyard.api import hijack, schema, versions
from dockyard.api.app import add_route, ctx_of, json_response, query_bool
from dockyard.api.bridge import while_connected
from dockyard.api.filters import parse_filters
from dockyard.api.jsonbody import MAX_JSON_BODY, TooLarge, decode, read_json, read_raw
from dockyard.api.timestamps import parse_timestamp_ns
from dockyard.errors import InvalidParameter, NotFound
from dockyard.supervisor import protocol


def _svc(request: web.Request):
    svc = ctx_of(request).extra.get("containers")
    if svc is None:
        raise NotFound("page not found")
    return svc


def _int_query(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = request.query.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise InvalidParameter(f"invalid value for {name}: {v!r}") from None


def _mount_version_gates(version: str, body: dict) -> bool:
    """dockerd's per-version treatment of HostConfig.Mounts (its create handler):
    before 1.44 a ``ReadOnlyForceRecursive`` is refused, ``ReadOnlyNonRecursive`` is
    ignored and read-only binds stay non-recursively read-only (the old behaviour,
    returned True); before 1.45 a volume ``Subpath`` is refused."""
    host = body.get("HostConfig") if isinstance(body, dict) else None
    mounts = (host.get("Mounts") if isinstance(host, dict) else None) or []
    v = versions.parse(version)
    old_ro = v < (1, 44)
    for m in mounts:
        if not isinstance(m, dict):
            continue
        if old_ro and m.get("Type") == "bind" and isinstance(m.get("BindOptions"), dict):
            if m["BindOptions"].get("ReadOnlyForceRecursive"):
                raise InvalidParameter("BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer")
            m["BindOptions"].pop("ReadOnlyNonRecursive", None)
        if v < (1, 45) and isinstance(m.get("VolumeOptions"), dict) and \
                m["VolumeOptions"].get("Subpath"):
            raise InvalidParameter("VolumeOptions.Subpath needs API v1.45 or newer")
    return old_ro


async def create(request: web.Request) -> web.Response:
    body = await read_json(request, schema.CREATE)
    name = request.query.get("name") or None
    ro_non_recursive = _mount_version_gates(request["api_version"], body)
    return json_response(await _svc(request).create(
        name, body, ro_non_recursive=ro_non_recursive,
        platform=request.query.get("platform") or None), status=201)


async def list_containers(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    out = _svc(request).list(all=query_bool(request, "all"), limit=_int_query(request, "limit", -1),
                             filters=filters, size=query_bool(request, "size"))
    return json_response(out)


async def inspect(request: web.Request) -> web.Response:
    return json_response(_svc(request).inspect(request.match_info["id"], query_bool(request, "size")))


async def start(request: web.Request) -> web.Response:
    await _svc(request).start(request.match_info["id"])
    return web.Response(status=204)


async def stop(request: web.Request) -> web.Response:
    await _svc(request).stop(request.match_info["id"], _int_query(request, "t"),
                             request.query.get("signal") or None)
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    await _svc(request).restart(request.match_info["id"], _int_query(request, "t"))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    await _svc(request).kill(request.match_info["id"], request.query.get("signal") or None)
    return web.Response(status=204)


async def wait(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    cid = request.match_info["id"]
    condition = request.query.get("condition", "not-running")
    svc.get(cid)  # 404 before the 200 goes out
    if condition not in ("not-running", "next-exit", "removed", ""):
        raise InvalidParameter(f"invalid condition: \"{condition}\"")
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)  # the CLI waits for these headers before it starts
    try:
        code = await svc.wait(cid, condition)
        body = {"Error": None, "StatusCode": code}
    except Exception as e:  # noqa: BLE001 - reported in-band after the 200
        body = {"Error": {"Message": str(e)}, "StatusCode": -1}
    try:
        await resp.write(json.dumps(body).encode() + b"\n")
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client went away (`docker run` drops its wait when it is done)
    return resp


async def remove_link(request: web.Request) -> web.Response:
    """``DELETE /containers//parent/alias?link=1``: the link's name has slashes."""
    if not query_bool(request, "link"):
        raise NotFound(f"No such container: {request.match_info['name']}")
    _svc(request).remove_link(request.match_info["name"])
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    if query_bool(request, "link"):
        _svc(request).remove_link(request.match_info["id"])
        return web.Response(status=204)
    await _svc(request).remove(request.match_info["id"], force=query_bool(request, "force"),
                               volumes=query_bool(request, "v"))
    return web.Response(status=204)


async def attach(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    try:
        keys = hijack.parse_detach_keys(request.query.get("detachKeys"))
    except ValueError as e:
        raise InvalidParameter(str(e)) from None
    stdin = query_bool(request, "stdin")
    stdout = query_bool(request, "stdout")
    stderr = query_bool(request, "stderr")
    tty = bool(c["Config"].get("Tty"))
    logs = query_bool(request, "logs")
    stream = query_bool(request, "stream")
    reader = writer = None
    # The 101 goes out first: `docker run` sends start only after it has it.
    transport = await hijack.upgrade(request)
    if stream:
        try:
            _, reader, writer = await svc.attach(c["Id"], stdin, stdout, stderr)
        except Exception:  # noqa: BLE001 - the stream is already raw: just end it
            transport.close()
            return request["hijack_response"]
    if logs:
        async for batch in svc.log_batches(c["Id"]):
            out = _log_output(batch, stdout, stderr, tty)
            if out:
                transport.write(out)
    if not stream:
        transport.close()
        return request["hijack_response"]
    await hijack.relay(request, transport, reader, writer, stdin, keys)
    return request["hijack_response"]


async def resize(request: web.Request) -> web.Response:
    h, w = _int_query(request, "h", 0), _int_query(request, "w", 0)
    await _svc(request).resize(request.match_info["id"], h, w)
    return web.Response(status=200)


async def logs(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    stdout, stderr = query_bool(request, "stdout"), query_bool(request, "stderr")
    if not stdout and not stderr:
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    tail_s = request.query.get("tail", "all")
    tail = -1 if tail_s in ("all", "") else int(tail_s) if tail_s.lstrip("-").isdigit() else -1
    since = parse_timestamp_ns(request.query.get("since")) or 0
    until = parse_timestamp_ns(request.query.get("until")) or 0
    timestamps = query_bool(request, "timestamps")
    details = query_bool(request, "details")
    tty = bool(c["Config"].get("Tty"))
    svc.check_logs_readable(c)   # before the 200
    resp = web.StreamResponse()
    resp.content_type = "application/vnd.docker.multiplexed-stream" if not tty \
        else "application/vnd.docker.raw-stream"
    await resp.prepare(request)
    batches = svc.log_batches(c["Id"], follow=query_bool(request, "follow"), since_ns=since,
                              until_ns=until, tail=tail)
    async for batch in while_connected(request, batches):
        out = _log_output(batch, stdout, stderr, tty, timestamps, details)
        if out:
            await resp.write(out)   # one write a batch; it waits while the client is behind
    await resp.write_eof()
    return resp


def _log_output(batch, stdout: bool, stderr: bool, tty: bool, timestamps: bool = False,
                details: bool = False) -> bytes:
    """A batch of log entries as the stream's bytes, as dockerd sends them: with
    ``details`` the entry's attrs (``k=v,...``, sorted, query-escaped) and a space
    before the text, with ``timestamps`` its time with nine digits of fraction and a
    space before that."""
    from urllib.parse import quote_plus

    from dockyard.supervisor.jsonlog import rfc3339nano_fixed

    out = []
    for e in batch:
        if (e.stream == "stderr" and not stderr) or (e.stream == "stdout" and not stdout):
            continue
        data = e.data
        if details:
            attrs = ",".join(f"{quote_plus(str(k))}={quote_plus(str(v))}"
                             for k, v in sorted(e.attrs.items())) if e.attrs else ""
            data = attrs.encode() + b" " + data
        if timestamps:
            data = rfc3339nano_fixed(e.time).encode() + b" " + data
        out.append(data if tty else protocol.frame(2 if e.stream == "stderr" else 1, data))
    return b"".join(out)


async def top(request: web.Request) -> web.Response:
    return json_response(await _svc(request).top(request.match_info["id"],
                                                 request.query.get("ps_args", "-ef")))


async def pause(request: web.Request) -> web.Response:
    await _svc(request).pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await _svc(request).unpause(request.match_info["id"])
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    await _svc(request).rename(request.match_info["id"], request.query.get("name", ""))
    return web.Response(status=204)


async def update(request: web.Request) -> web.Response:
    body = await read_json(request, schema.UPDATE)
    return json_response(await _svc(request).update(request.match_info["id"], body))


async def changes(request: web.Request) -> web.Response:
    return json_response(await _svc(request).changes(request.match_info["id"]))


async def export(request: web.Request) -> web.StreamResponse:
    from dockyard.api.bridge import stream_response

    svc = _svc(request)
    c = svc.get(request.match_info["id"])
    return await stream_response(request, lambda: {"Content-Type": "application/x-tar"},
                                 lambda writer: svc.export(c["Id"], writer))


async def prune(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    return json_response(await _svc(request).prune(filters))


async def stats(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    cid = svc.get(request.match_info["id"])["Id"]
    if not query_bool(request, "stream", True) or query_bool(request, "one-shot"):
        first = svc.stats(cid)
        if not query_bool(request, "one-shot"):
            await asyncio.sleep(1)  # like dockerd: a second sample gives precpu
            second = svc.stats(cid)
            second["precpu_stats"] = first["cpu_stats"]
            second["preread"] = first["read"]
            first = second
        return json_response(first)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    prev = None
    while True:
        try:
            cur = svc.stats(cid)
        except NotFound:
            break
        if prev:
            cur["precpu_stats"] = prev["cpu_stats"]
            cur["preread"] = prev["read"]
        await resp.write(json.dumps(cur).encode() + b"\n")
        prev = cur
        await asyncio.sleep(1)
    await resp.write_eof()
    return resp


async def exec_create(request: web.Request) -> web.Response:
    body = await read_json(request, schema.EXEC_CREATE)
    eid = await _svc(request).exec_create(request.match_info["id"], body)
    return json_response({"Id": eid}, status=201)


async def _exec_start_body(request: web.Request) -> dict:
    if not request.headers.get("Upgrade"):
        return await read_json(request, schema.EXEC_START, required=False)
    # An upgrading request's payload is the raw stream that follows: only the declared
    # Content-Length is the JSON body.
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise InvalidParameter("invalid Content-Length") from None
    if length < 0:
        raise InvalidParameter("invalid Content-Length")
    if length > MAX_JSON_BODY:
        raise TooLarge(f"request body too large: a JSON body may be at most {MAX_JSON_BODY} bytes")
    try:
        raw = await request.content.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise InvalidParameter("invalid JSON: the body ended early") from None
    if not raw.strip():
        return {}
    body = decode(raw)
    return {} if body is None else schema.check(schema.EXEC_START, body)


async def exec_start(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    eid = request.match_info["id"]
    body = await _exec_start_body(request)
    ex = svc.exec_inspect(eid)
    # dockerd's: the start's console size (API 1.42+, with Tty) is the pty's first size
    size = body.get("ConsoleSize") if body.get("Tty") and \
        versions.parse(request["api_version"]) >= (1, 42) else None
    if body.get("Detach"):
        await svc.exec_start(eid, detach=True, console_size=size)
        return web.Response(status=200, content_type="application/json", body=b"")
    try:
        keys = hijack.parse_detach_keys(ex.get("DetachKeys") or None)
    except ValueError as e:
        raise InvalidParameter(str(e)) from None
    # As dockerd: the connection is hijacked first; a failure to start the process is
    # then written into the stream (the CLI prints it and reads the exit code, 126/127,
    # from the exec's inspect).
    transport = await hijack.upgrade(request)
    try:
        tty, reader, writer = await svc.exec_start(eid, console_size=size)
    except Exception as e:  # noqa: BLE001 - reported in-band after the 101
        msg = (str(e) + "\r\n").encode()
        transport.write(msg if ex["ProcessConfig"]["tty"] else protocol.frame(1, msg))
        transport.close()
        return request["hijack_response"]
    await hijack.relay(request, transport, reader, writer, ex["OpenStdin"], keys)
    return request["hijack_response"]


async def exec_resize(request: web.Request) -> web.Response:
    await _svc(request).exec_resize(request.match_info["id"], _int_query(request, "h", 0),
                                    _int_query(request, "w", 0))
    return web.Response(status=200)


async def exec_inspect(request: web.Request) -> web.Response:
    return json_response(_svc(request).exec_inspect(request.match_info["id"]))


async def commit(request: web.Request) -> web.Response:
    svc = _svc(request)
    q = request.query
    raw = await read_raw(request)
    config = None
    if raw.strip():
        config = decode(raw)
        if config is not None:
            config = schema.check(schema.CONFIG, config)
    cid = q.get("container") or ""
    if not cid:
        raise InvalidParameter("No container specified")
    image_id = await svc.commit(cid, repo=q.get("repo") or None, tag=q.get("tag") or None,
                                author=q.get("author", ""), comment=q.get("comment", ""),
                                changes=q.getall("changes", []),
                                pause=query_bool(request, "pause", True), config=config)
    return json_response({"Id": image_id}, status=201)


def register(app: web.Application) -> None:
    r = lambda m, p, h: add_route(app, m, p, h)  # noqa: E731
    r("POST", "/containers/create", create)
    r("GET", "/containers/json", list_containers)
    r("POST", "/containers/prune", prune)
    r("GET", "/containers/{id}/json", inspect)
    r("POST", "/containers/{id}/start", start)
    r("POST", "/containers/{id}/stop", stop)
    r("POST", "/containers/{id}/restart", restart)
    r("POST", "/containers/{id}/kill", kill)
    r("POST", "/containers/{id}/wait", wait)
    r("DELETE", "/containers/{id}", remove)
    r("DELETE", "/containers/{name:/*[^/]+/[^/]+}", remove_link)
    r("POST", "/containers/{id}/attach", attach)
    r("POST", "/containers/{id}/resize", resize)
    r("GET", "/containers/{id}/logs", logs)
    r("GET", "/containers/{id}/top", top)
    r("POST", "/containers/{id}/pause", pause)
    r("POST", "/containers/{id}/unpause", unpause)
    r("POST", "/containers/{id}/rename", rename)
    r("POST", "/containers/{id}/update", update)
    r("GET", "/containers/{id}/changes", changes)
    r("GET", "/containers/{id}/export", export)
    r("GET", "/containers/{id}/stats", stats)
    r("POST", "/containers/{id}/exec", exec_create)
    r("POST", "/exec/{id}/start", exec_start)
    r("POST", "/exec/{id}/resize", exec_resize)
    r("GET", "/exec/{id}/json", exec_inspect)
    r("POST", "/commit", commit)
