"""Live streams to the browser: events, logs and stats over server-sent events,
the terminal over a WebSocket.

Stats are shared: :class:`StatsHub` keeps one engine stats stream per watched
container whoever watches it, folds each sample to a few numbers
(:mod:`dockyard.ui.stats`) and each subscriber gets one message a second with
the latest of its containers. A stream nobody watches is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from aiohttp import WSMsgType, web

from dockyard.ui.app import ENGINE
from dockyard.ui.engine import Engine, EngineError
from dockyard.ui.routes import CONTAINER_LIST, _cid

HEARTBEAT = 15.0
MAX_STATS_IDS = 500


async def sse_response(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    await resp.write(b"retry: 2000\n\n")
    return resp


def sse(data, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()


async def _pump_with_heartbeat(resp: web.StreamResponse, agen) -> None:
    """Write each item of ``agen`` (bytes) and a comment every HEARTBEAT seconds of
    silence (a closed browser is noticed at the next write)."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=1000)

    async def produce():
        try:
            async for item in agen:
                await queue.put(item)
        except EngineError as e:
            await queue.put(sse({"message": e.message}, "error"))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            await queue.put(None)

    task = asyncio.create_task(produce())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), HEARTBEAT)
            except asyncio.TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if item is None:
                await resp.write(sse({}, "end"))
                break
            await resp.write(item)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


# ---- events -------------------------------------------------------------------------

async def events(request: web.Request) -> web.StreamResponse:
    eng: Engine = request.app[ENGINE]
    params = {"since": request.query.get("since") or None}
    it = eng.json_lines("GET", "/events", params)

    kept = request.app[CONTAINER_LIST]

    async def items():
        async for ev in it:
            if isinstance(ev, dict) and ev.get("Type") == "container":
                kept.changed()   # a page that reloads on this event gets a list that has it
            yield sse(ev)

    resp = await sse_response(request)
    await _pump_with_heartbeat(resp, items())
    return resp


# ---- logs ---------------------------------------------------------------------------

async def logs(request: web.Request) -> web.StreamResponse:
    from dockyard.streamframes import FrameDecoder

    eng: Engine = request.app[ENGINE]
    cid = _cid(request)
    info = await eng.get(f"/containers/{cid}/json")
    tty = bool((info.get("Config") or {}).get("Tty"))
    q = request.query
    tail = q.get("tail", "500")
    if tail != "all" and not tail.isdigit():
        tail = "500"
    params = {"stdout": "1", "stderr": "1", "timestamps": "1", "tail": tail,
              "follow": "1" if q.get("follow", "1") in ("1", "true") else None,
              "since": q.get("since") or None}
    resp_engine = await eng.stream("GET", f"/containers/{cid}/logs", params)

    async def items():
        dec = None if tty else FrameDecoder()
        partial = {1: b"", 2: b""}
        try:
            async for chunk in resp_engine.content.iter_any():
                frames = [(1, chunk)] if dec is None else dec.feed(chunk)
                batch = []
                for stream, payload in frames:
                    data = partial.get(stream, b"") + payload
                    *lines, rest = data.split(b"\n")
                    partial[stream] = rest
                    for line in lines:
                        text = line.decode(errors="replace").rstrip("\r")
                        ts, _, msg = text.partition(" ")
                        batch.append({"s": stream, "t": ts, "m": msg})
                if batch:
                    yield sse(batch)
            tail_lines = [{"s": s, "t": "", "m": b.decode(errors="replace")} for s, b in partial.items() if b]
            if tail_lines:
                yield sse(tail_lines)
        finally:
            resp_engine.close()

    resp = await sse_response(request)
    await _pump_with_heartbeat(resp, items())
    return resp


# ---- stats --------------------------------------------------------------------------

class StatsHub:
    """One engine stats stream per watched container, shared by every watcher."""

    RETRY = 5.0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.latest: dict[str, dict] = {}
        self.version: dict[str, int] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.watchers: dict[str, int] = {}
        self.tried: dict[str, float] = {}

    def watch(self, ids: list[str]) -> None:
        for cid in ids:
            self.watchers[cid] = self.watchers.get(cid, 0) + 1
            self._ensure(cid)

    def unwatch(self, ids: list[str]) -> None:
        for cid in ids:
            n = self.watchers.get(cid, 0) - 1
            if n > 0:
                self.watchers[cid] = n
                continue
            self.watchers.pop(cid, None)
            t = self.tasks.pop(cid, None)
            if t:
                t.cancel()
            self.latest.pop(cid, None)
            self.version.pop(cid, None)
            self.tried.pop(cid, None)

    def _ensure(self, cid: str) -> None:
        t = self.tasks.get(cid)
        if t is not None and not t.done():
            return
        now = time.monotonic()
        if now - self.tried.get(cid, -1e9) < self.RETRY:
            return
        self.tried[cid] = now
        self.tasks[cid] = asyncio.create_task(self._follow(cid))

    async def _follow(self, cid: str) -> None:
        from dockyard.ui.stats import summarize

        try:
            async for sample in self.engine.json_lines("GET", f"/containers/{cid}/stats", {"stream": "1"}):
                if not sample.get("read") or sample.get("read", "").startswith("0001-"):
                    continue
                s = summarize(sample)
                s["ts"] = time.time()
                self.latest[cid] = s
                self.version[cid] = self.version.get(cid, 0) + 1
        except (EngineError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass

    def tick(self, ids: list[str], seen: dict[str, int]) -> dict[str, dict]:
        """The samples of ``ids`` newer than ``seen`` (updated); restarts ended streams."""
        out = {}
        for cid in ids:
            v = self.version.get(cid, 0)
            if v and v != seen.get(cid):
                seen[cid] = v
                out[cid] = self.latest[cid]
            self._ensure(cid)
        return out

    async def close(self) -> None:
        for t in self.tasks.values():
            t.cancel()
        for t in list(self.tasks.values()):
            with contextlib.suppress(BaseException):
                await t
        self.tasks.clear()


HUB = web.AppKey("stats_hub", StatsHub)


async def stats(request: web.Request) -> web.StreamResponse:
    ids = [i for i in request.query.get("ids", "").split(",") if i][:MAX_STATS_IDS]
    if any("/" in i or len(i) > 128 for i in ids):
        return web.json_response({"message": "bad container id"}, status=400)
    hub: StatsHub = request.app[HUB]
    resp = await sse_response(request)
    hub.watch(ids)
    seen: dict[str, int] = {}
    quiet = 0.0
    try:
        while True:
            fresh = hub.tick(ids, seen)
            if fresh:
                await resp.write(sse(fresh))
                quiet = 0.0
            else:
                quiet += 1.0
                if quiet >= HEARTBEAT:
                    await resp.write(b": keep-alive\n\n")
                    quiet = 0.0
            await asyncio.sleep(1.0)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        hub.unwatch(ids)
    return resp


# ---- terminal -----------------------------------------------------------------------

async def terminal(request: web.Request) -> web.StreamResponse:
    eng: Engine = request.app[ENGINE]
    cid = _cid(request)
    q = request.query
    cmd = q.get("cmd") or "sh"
    try:
        cols, rows = max(10, min(int(q.get("cols", 80)), 1000)), max(2, min(int(q.get("rows", 24)), 500))
    except ValueError:
        cols, rows = 80, 24
    # the exec is made before the upgrade: an error is still a status
    ex = await eng.request("POST", f"/containers/{cid}/exec", body={
        "AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Tty": True,
        "Cmd": ["/bin/sh", "-c", cmd] if cmd != "sh" else ["sh"],
        "Env": ["TERM=xterm-256color", f"COLUMNS={cols}", f"LINES={rows}"]})
    eid = ex["Id"]
    reader, writer = await eng.hijack("POST", f"/exec/{eid}/start", {"Detach": False, "Tty": True})
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1 << 20)
    await ws.prepare(request)

    async def resize(c: int, r: int) -> None:
        with contextlib.suppress(EngineError):
            await eng.request("POST", f"/exec/{eid}/resize", {"h": str(r), "w": str(c)})

    async def out_pump():
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await ws.send_bytes(data)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await ws.close(message=b"exited")

    pump = asyncio.create_task(out_pump())
    await resize(cols, rows)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()
            elif msg.type == WSMsgType.TEXT:
                try:
                    ctl = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(ctl, dict) and isinstance(ctl.get("resize"), list) and len(ctl["resize"]) == 2:
                    try:
                        c, r = int(ctl["resize"][0]), int(ctl["resize"][1])
                    except (TypeError, ValueError):
                        continue
                    await resize(max(10, min(c, 1000)), max(2, min(r, 500)))
                elif isinstance(ctl, dict) and isinstance(ctl.get("input"), str):
                    writer.write(ctl["input"].encode())
                    await writer.drain()
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    except ConnectionError:
        pass
    finally:
        # a closed page ends its shell: interrupt what runs, then end of input
        with contextlib.suppress(Exception):
            if not pump.done():
                writer.write(b"\x03\x04")
                await asyncio.wait_for(writer.drain(), 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(pump), 2)
        pump.cancel()
        writer.close()
    return ws


def register(app: web.Application) -> None:
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/containers/{id}/logs", logs)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/containers/{id}/terminal", terminal)

    app[HUB] = StatsHub(app[ENGINE])


async def shutdown(app: web.Application) -> None:
    hub = app.get(HUB)
    if hub is not None:
        await hub.close()
