"""``POST /build``: dockerd's classic build API over the build service.

The context (tar body, plain or compressed) is unpacked while it arrives; the Dockerfile is
parsed and planned before the 200, so a parse error or a missing COPY source is a plain
error status (the CLI prints ``Error response from daemon: ...``) - unless a base image must
be pulled first (missing, or ``pull``): then the pull's progress is streamed (credentials
from ``X-Registry-Config``) and planning errors travel in-band. Then
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
             "q", "version", "networkmode", "extrahosts", "shmsize", "memory", "memswap",
             "cpushares", "cpusetcpus", "cpusetmems", "cpuperiod", "cpuquota", "ulimits",
             "cachefrom", "pull", "platform", "remote", "contextsession"}
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
_INT_PARAMS = {"shmsize": "ShmSize", "memory": "Memory", "memswap": "MemorySwap",
               "cpushares": "CpuShares", "cpuperiod": "CpuPeriod", "cpuquota": "CpuQuota"}


def _run_host_config(request: web.Request) -> dict:
    """The HostConfig every RUN container gets from the build parameters."""
    from dockyard import boundedjson
    q = request.query
    host: dict = {}
    net = q.get("networkmode") or "default"
    host["NetworkMode"] = "default" if net == "bridge" else net
    hosts: list[str] = []
    for v in q.getall("extrahosts", []):
        if v.startswith("["):
            try:
                items = boundedjson.loads(v)
            except ValueError:
                raise InvalidParameter("invalid extrahosts parameter: not JSON") from None
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise InvalidParameter("invalid extrahosts parameter: a list of strings")
            hosts += items
        elif v:
            hosts.append(v)
    for h in hosts:
        name, sep, addr = h.partition(":")
        if not sep or not name or not addr:
            raise InvalidParameter(f"invalid extra host {h!r}: host:ip is needed")
    if hosts:
        host["ExtraHosts"] = hosts
    for k, field_ in _INT_PARAMS.items():
        v = q.get(k)
        if v in (None, ""):
            continue
        try:
            n = int(v)
        except ValueError:
            raise InvalidParameter(f"invalid {k} parameter: {v} is not a number") from None
        if n and (n > 0 or k == "memswap"):
            host[field_] = n
        elif n < 0:
            raise InvalidParameter(f"invalid {k} parameter: {v} must not be negative")
    for k, field_ in (("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems")):
        if q.get(k):
            host[field_] = q[k]
    raw = q.get("ulimits")
    if raw and raw not in ("null", "[]"):
        try:
            ul = boundedjson.loads(raw)
        except ValueError:
            raise InvalidParameter("invalid ulimits parameter: not JSON") from None
        if not isinstance(ul, list) or not all(
                isinstance(u, dict) and isinstance(u.get("Name"), str)
                and isinstance(u.get("Soft", 0), int) and isinstance(u.get("Hard", 0), int)
                for u in ul):
            raise InvalidParameter("invalid ulimits parameter: a list of {Name, Soft, Hard}")
        host["Ulimits"] = ul
    return host


def _cache_from(request: web.Request) -> list[str]:
    from dockyard import boundedjson
    raw = request.query.get("cachefrom")
    if not raw:
        return []
    try:
        v = boundedjson.loads(raw)
    except ValueError:
        raise InvalidParameter("invalid cachefrom parameter: not JSON") from None
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidParameter("invalid cachefrom parameter: a JSON list of image names")
    return v


def _check_platform(value: str) -> None:
    """Only the host's platform can be built (no emulation)."""
    if not value:
        return
    import platform as _pf
    machine = _pf.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    for p in value.split(","):
        parts = p.strip().lower().split("/")
        if parts[0] != "linux" or (len(parts) > 1 and parts[1] not in (arch, machine)) \
                or len(parts) > 3:
            raise InvalidParameter(f"platform {p.strip()} is not supported: this builder runs "
                                   f"steps natively and builds only for linux/{arch}")


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


def _check_params(request: web.Request, also: tuple[str, ...] = ()) -> None:
    for k, v in request.query.items():
        if k in SUPPORTED or k in also:
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
    _check_platform(request.query.get("platform", ""))


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


async def build(request: web.Request, session_token: str = "") -> web.StreamResponse:
    """``POST /build``; or, with ``session_token``, the build a context session's offer
    asked for (``POST /build/session?build=1``) when it needs no file sent."""
    _check_params(request, ("key", "build") if session_token else ())
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
                   forcerm=_bool(q.get("forcerm"), False), quiet=quiet,
                   host=_run_host_config(request), cache_from=tuple(_cache_from(request)))
    dockerfile = q.get("dockerfile") or ""
    remote = q.get("remote") or ""
    try:
        if remote:
            await _drain(request)
            bctx, dockerfile = await ctx.run(svc.receive_remote, remote, dockerfile)
        else:
            token = session_token or q.get("contextsession") or ""
            if session_token:
                import io
                reader = io.BytesIO(bytes(1024))   # an empty tar: nothing was sent
            else:
                reader = AsyncBodyReader(request, asyncio.get_running_loop())
            if token:
                bctx = await ctx.run(svc.receive_session, token, reader,
                                     dockerfile or "Dockerfile")
            else:
                bctx = await ctx.run(svc.receive, reader, dockerfile or "Dockerfile")
    except DockyardError:
        await _drain(request)
        raise
    try:
        def bases() -> list[str]:
            refs_ = svc.base_refs(bctx, dockerfile=dockerfile, build_args=build_args,
                                  target=target)
            # missing bases are pulled, as dockerd's legacy builder does; all with pull
            return refs_ if _bool(q.get("pull"), False) else svc.missing(refs_)

        pulls = await ctx.run(bases)
        from dockyard.images import reference as refs

        def prepare():
            return svc.prepare(bctx, dockerfile=dockerfile, build_args=build_args,
                               target=target, labels=labels)

        # bad names are refused before anything is built; shown as dockerd shows them
        tags = [refs.parse_normalized(t).with_default_tag().familiar() for t in tags]
        if pulls:
            # the pulls stream their progress: planning follows in-band
            from dockyard.images import credentials
            auths = credentials.decode_config_header(request.headers.get("X-Registry-Config"))
            insecure = tuple(ctx.extra.get("insecure_registries") or ())

            async def before(emit):
                # dockerd pulls while it runs the step that uses the image: its progress
                # shows under that step's line. The first FROM's pull is shown live (the
                # lines up to it go first); the others' progress is held for their step.
                sites, total, head = await ctx.run(
                    lambda: svc.pull_layout(bctx, pulls, dockerfile=dockerfile,
                                            build_args=build_args, target=target,
                                            labels=labels))
                for ref in sorted(pulls, key=lambda r: sites.get(r, len(head))):
                    n = sites.get(ref, len(head))
                    live = n == len(head)
                    if live and opts.shown < n:
                        for i, text in enumerate(head, 1):
                            emit({"stream": f"Step {i}/{total} : {text}\n"})
                        opts.shown = n
                    held = opts.after_step.setdefault(n, [])
                    async for msg in svc.pull([ref], insecure, auths):
                        if live:
                            emit(msg)
                        else:
                            held.append(msg)
                return await ctx.run(prepare)
            return await _stream(request, svc, before, bctx, opts, tags, StepFailed)
        plan = await ctx.run(prepare)
        return await _stream(request, svc, plan, bctx, opts, tags, StepFailed)
    finally:
        await asyncio.shield(ctx.run(bctx.close))


async def _stream(request, svc, plan, bctx, opts, tags, StepFailed) -> web.StreamResponse:
    enc = ProgressEncoder()
    # (the header tells a context session's offer that asked for the build this stream)
    resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                       "X-Dockyard-Build": "1"})
    await resp.prepare(request)
    queue: asyncio.Queue = asyncio.Queue()
    held: list[dict] = []
    build_task = asyncio.current_task()

    def emit(msg: dict) -> None:
        if opts.quiet and ("stream" in msg or "status" in msg):
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
            if callable(plan):
                plan = await plan(emit)
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
    # the context's spool goes before the response ends: a client that has seen the end
    # finds nothing of its build left on disk
    await asyncio.shield(asyncio.to_thread(bctx.close))
    try:
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError, RuntimeError):
        pass
    return resp


_PRUNE_PARAMS = {"all", "filters", "keep-storage", "reserved-space", "max-used-space",
                 "min-free-space"}


async def prune(request: web.Request) -> web.Response:
    """``POST /build/prune``: {"CachesDeleted": [...], "SpaceReclaimed": n}."""
    from dockyard.api.app import json_response
    from dockyard.api.filters import parse_filters
    from dockyard.builder import cache

    ctx = ctx_of(request)
    if ctx.images is None:
        raise Unavailable("the build cache needs the image service")
    q = request.query
    for k in q:
        if k not in _PRUNE_PARAMS:
            raise InvalidParameter(f"unknown build prune parameter: {k}")
    sizes = {}
    for k in ("keep-storage", "reserved-space", "max-used-space", "min-free-space"):
        try:
            sizes[k] = int(q.get(k) or 0)
        except ValueError:
            raise InvalidParameter(f"{k} is in bytes and expects an integer, got "
                                   f"{q.get(k)!r}") from None
        if sizes[k] < 0:
            raise InvalidParameter(f"{k} cannot be negative")
    if sizes["max-used-space"] or sizes["min-free-space"]:
        raise InvalidParameter("max-used-space and min-free-space are not supported by this "
                               "builder: use keep-storage")
    filters = parse_filters(q.get("filters"))
    keep = sizes["keep-storage"] or sizes["reserved-space"]
    report = await ctx.run(lambda: cache.prune(ctx.images.store, ctx.images,
                                               all_=_bool(q.get("all"), False),
                                               filters=filters, keep_storage=keep))
    svc = ctx.extra.get("builder")
    if svc is not None:
        # context sessions whose kept spool was pruned start afresh
        await ctx.run(svc.sessions.sync)
    return json_response(report)


MAX_MANIFEST = 256 << 20


async def session(request: web.Request) -> web.Response:
    """``POST /build/session?key=K``: a context's manifest in, the files the daemon lacks
    out (``{"Token": ..., "Missing": [...]}``); see builder/sessions.py. With ``build=1``
    and the build's own parameters, when no file is missing the build runs at once and
    its stream is the answer (``X-Dockyard-Build: 1``): a rebuild with no change is one
    request."""
    from dockyard.api.app import json_response

    ctx = ctx_of(request)
    svc = _service(request)
    if request.content_length is not None and request.content_length > MAX_MANIFEST:
        raise InvalidParameter("context session: the manifest is too large")
    raw = bytearray()
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        raw += chunk
        if len(raw) > MAX_MANIFEST:
            raise InvalidParameter("context session: the manifest is too large")
    key = request.query.get("key", "")
    answer = await ctx.run(svc.session_offer, key, bytes(raw))
    if _bool(request.query.get("build"), False) and not answer["Missing"]:
        return await build(request, answer["Token"])
    return json_response(answer)


def register(app: web.Application) -> None:
    add_route(app, "POST", "/build", build)
    add_route(app, "POST", "/build/session", session)
    add_route(app, "POST", "/build/prune", prune)
