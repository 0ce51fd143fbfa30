"""``POST /build``: dockerd's classic build API over the build service.

The context (tar body, plain or compressed) is unpacked while it arrives; the Dockerfile is
parsed and planned before the 200, so a parse error, a missing base image or a missing COPY
source is a plain error status (the CLI prints ``Error response from daemon: ...``). Then
the legacy builder's JSON stream: ``{"stream": "Step 1/3 : ..."}``, ``{"aux": {"ID": ...}}``,
``Successfully built``/``Successfully tagged``; a failure after the 200 travels in-band as
``errorDetail`` (with the RUN's exit code, which the CLI exits with). Query parameters the
builder does not implement are refused unless they hold their default value.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from dockyard import boundedjson
from dockyard.api.app import add_route, ctx_of
from dockyard.api.bridge import AsyncBodyReader
from dockyard.api.streams import ProgressEncoder
from dockyard.errors import DockyardError, InvalidParameter, Unavailable

SUPPORTED = {"t", "dockerfile", "buildargs", "labels", "target", "nocache", "rm", "forcerm",
             "q", "version", "networkmode"}
# accepted only with their default value (what the CLI sends when the flag is not used)
DEFAULTS = {
    "cachefrom": ("", "[]", "null"), "cgroupparent": ("",), "cpuperiod": ("", "0"),
    "cpuquota": ("", "0"), "cpushares": ("", "0"), "cpusetcpus": ("",), "cpusetmems": ("",),
    "memory": ("", "0"), "memswap": ("", "0"), "shmsize": ("", "0"),
    "ulimits": ("", "null", "[]"), "pull": ("", "0", "false", "False"),
    "squash": ("", "0", "false", "False"), "extrahosts": ("", "[]", "null"),
    "platform": ("",), "isolation": ("", "default"), "remote": ("",), "session": ("",),
    "buildid": ("",), "outputs": ("", "null", "[]"),
}
NETWORK_MODES = ("", "default", "bridge", "host", "none")


def _bool(v: str | None, default: bool) -> bool:
    if v is None:
        return default
    return v.strip().lower() not in ("", "0", "false", "no")


def _json_map(request: web.Request, name: str) -> dict:
    raw = request.query.get(name)
    if not raw:
        return {}
    try:
        v = boundedjson.loads(raw)
    except ValueError:
        raise InvalidParameter(f"invalid {name} parameter: not JSON") from None
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and (x is None or isinstance(x, str))
                                          for k, x in v.items()):
        raise InvalidParameter(f"invalid {name} parameter: a JSON object of strings is needed")
    return v


def _check_params(request: web.Request) -> None:
    for k, v in request.query.items():
        if k in SUPPORTED:
            continue
        if k in DEFAULTS:
            if v not in DEFAULTS[k]:
                raise InvalidParameter(f"build parameter {k}={v} is not supported by this "
                                       "builder yet")
            continue
        raise InvalidParameter(f"unknown build parameter: {k}")
    if request.query.get("version", "1") not in ("", "1"):
        raise InvalidParameter("only the classic builder (version=1) is available: this "
                               "daemon has no BuildKit session support")
    if request.query.get("networkmode", "") not in NETWORK_MODES:
        raise InvalidParameter(f"build network mode {request.query['networkmode']} is not "
                               "supported (default, bridge, host, none)")


def _service(request: web.Request):
    ctx = ctx_of(request)
    svc = ctx.extra.get("builder")
    if svc is None:
        containers = ctx.extra.get("containers")
        if ctx.images is None or containers is None:
            raise Unavailable("the builder needs the image and container services")
        from dockyard.builder.service import BuildService
        svc = ctx.extra["builder"] = BuildService(ctx.images, containers, ctx.images.store,
                                                  ctx.images.root)
    return svc


async def _drain(request: web.Request) -> None:
    try:
        while await request.content.readany():
            pass
    except Exception:
        pass


async def build(request: web.Request) -> web.StreamResponse:
    _check_params(request)
    ctx = ctx_of(request)
    svc = _service(request)
    q = request.query
    from dockyard.builder.executor import Options, StepFailed
    tags = q.getall("t", [])
    for t in tags:
        if not t:
            raise InvalidParameter("invalid reference format: an empty tag")
    build_args = _json_map(request, "buildargs")
    labels = _json_map(request, "labels")
    target = q.get("target") or None
    quiet = _bool(q.get("q"), False)
    opts = Options(nocache=_bool(q.get("nocache"), False), rm=_bool(q.get("rm"), True),
                   forcerm=_bool(q.get("forcerm"), False), quiet=quiet)
    net = q.get("networkmode") or "default"
    reader = AsyncBodyReader(request, asyncio.get_running_loop())
    try:
        bctx = await ctx.run(svc.receive, reader, q.get("dockerfile") or "Dockerfile")
    except DockyardError:
        await _drain(request)
        raise
    try:
        plan = await ctx.run(lambda: svc.prepare(bctx, dockerfile=q.get("dockerfile") or "",
                                                 build_args=build_args, target=target,
                                                 labels=labels))
        if net not in ("default", "bridge"):
            plan = _with_network(plan, net)
        from dockyard.images import reference as refs
        # bad names are refused before anything is built; shown as dockerd shows them
        tags = [refs.parse_normalized(t).with_default_tag().familiar() for t in tags]
        return await _stream(request, svc, plan, bctx, opts, tags, StepFailed)
    finally:
        await asyncio.shield(ctx.run(bctx.close))


def _with_network(plan, net: str):
    import dataclasses
    stages = []
    for s in plan.stages:
        steps = tuple(dataclasses.replace(st, run=dataclasses.replace(st.run, network=net))
                      if st.run is not None and st.run.network == "default" else st
                      for st in s.steps)
        stages.append(dataclasses.replace(s, steps=steps))
    return dataclasses.replace(plan, stages=tuple(stages))


async def _stream(request, svc, plan, bctx, opts, tags, StepFailed) -> web.StreamResponse:
    enc = ProgressEncoder()
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    queue: asyncio.Queue = asyncio.Queue()
    held: list[dict] = []
    build_task = asyncio.current_task()

    def emit(msg: dict) -> None:
        if opts.quiet and "stream" in msg:
            held.append(msg)
        else:
            queue.put_nowait(msg)

    async def writer() -> None:
        try:
            while True:
                msg = await queue.get()
                if msg is None:
                    return
                await resp.write(enc.message(msg))
        except (ConnectionResetError, ConnectionError, RuntimeError):
            build_task.cancel()   # the client is gone: stop the build, clean up

    async def watch() -> None:
        # a silent RUN writes nothing for a long time: notice a client that went away
        while True:
            await asyncio.sleep(0.25)
            tr = request.transport
            if tr is None or tr.is_closing():
                build_task.cancel()
                return

    wtask = asyncio.ensure_future(writer())
    watcher = asyncio.ensure_future(watch())
    try:
        try:
            image_id = await svc.execute(plan, bctx, opts, emit)
            emit({"aux": {"ID": image_id}})
            if opts.quiet:
                queue.put_nowait({"stream": image_id + "\n"})
            else:
                emit({"stream": f"Successfully built {image_id.split(':', 1)[-1][:12]}\n"})
            for t in tags:
                await asyncio.to_thread(svc.tag, image_id, [t])
                emit({"stream": f"Successfully tagged {t}\n"})
        except DockyardError as e:
            for m in held:
                queue.put_nowait(m)
            detail = {"message": str(e)}
            if isinstance(e, StepFailed):
                detail = {"code": e.code, "message": str(e)}
            queue.put_nowait({"errorDetail": detail, "error": str(e)})
        queue.put_nowait(None)
        await wtask
    finally:
        watcher.cancel()
        if not wtask.done():
            wtask.cancel()
    try:
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError, RuntimeError):
        pass
    return resp


def register(app: web.Application) -> None:
    add_route(app, "POST", "/build", build)
