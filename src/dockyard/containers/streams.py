"""Attach, resize and logs."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from dockyard import errors
from dockyard.supervisor import jsonlog


class Streams:
    """Part of ContainerService (containers/service.py): see the module's docstring."""

    # ---- streams -------------------------------------------------------------------------
    async def attach(self, ref: str, stdin: bool, stdout: bool, stderr: bool):
        """Open the live stream; returns (tty, reader, writer) to the supervisor (one
        containers/reattach.ReattachingStream, which outlives a supervisor's restart).

        Clients attach before they start a container (``docker run``). Such an
        attach waits until the next start has created the task, connects, and
        only then lets the start release the process, so no output is lost.
        """
        c = self.get(ref)
        cid = c["Id"]
        self.emit("container", "attach", cid, self._attrs(c))
        self._check_open()
        streams = dict(stdin=stdin, stdout=stdout, stderr=stderr)
        if c["State"]["Running"]:
            reply, reader, writer = await self.sup.open_stream("attach", id=cid, **streams)
            stream = self._reattaching(c, cid, streams, reply, reader, writer)
            return bool(c["Config"].get("Tty")), stream, stream
        loop = asyncio.get_running_loop()
        go, done = loop.create_future(), loop.create_future()
        self._pending_attach.setdefault(cid, []).append((go, done))
        try:
            await go
            reply, reader, writer = await self.sup.open_stream("attach", id=cid, **streams)
        except BaseException as e:
            if not done.done():
                if isinstance(e, Exception):
                    done.set_exception(e)
                    done.exception()   # retrieved: the start may have stopped waiting for it
                else:
                    done.cancel()
            raise
        done.set_result(None)
        stream = self._reattaching(c, cid, streams, reply, reader, writer)
        return bool(c["Config"].get("Tty")), stream, stream

    def _reattaching(self, c: dict, task_id: str, streams: dict, reply: dict, reader, writer,
                     exited=None):
        """The stream, re-attached while the task runs when its supervisor is replaced:
        a container's while its record says running, an exec's until it is done."""
        from dockyard.containers.reattach import ReattachingStream

        cid = c["Id"]

        def running() -> bool:
            cur = self.containers.get(cid)
            if cur is None or not cur["State"]["Running"]:
                return False
            if task_id != cid:   # an exec
                ex = self.execs.get(task_id)
                return ex is not None and not ex["_done"].is_set()
            return True

        stream = ReattachingStream(self.sup, task_id, streams, reply, reader, writer,
                                   running=running, closing=self._shutting_down(),
                                   exited=exited)
        self._track_stream(stream)
        return stream

    # ---- shutdown: followers end at once, with a clean end of stream ----------------------
    def _check_open(self) -> None:
        if self._shutting_down().is_set():
            raise errors.Unavailable("the daemon is shutting down")

    def _shutting_down(self) -> asyncio.Event:
        ev = getattr(self, "_closing", None)
        if ev is None:
            ev = self._closing = asyncio.Event()
            self._streams = set()
        return ev

    def _track_stream(self, writer) -> None:
        """An attach's connection to the supervisor: closed at shutdown (the client's
        stream then ends as when the container exits)."""
        self._shutting_down()
        self._streams.add(writer)
        asyncio.ensure_future(_untrack_when_closed(self._streams, writer))

    def end_streams(self) -> None:
        """At shutdown: attached clients' streams closed, log followers ended (their
        generators return at their next poll, within 0.1 s), pending attaches failed."""
        self._shutting_down().set()
        for w in list(self._streams):
            w.close()
        self._streams.clear()
        for cid in list(self._pending_attach):
            for go, _ in self._pending_attach.pop(cid, []):
                if not go.done():
                    go.set_exception(errors.Unavailable("the daemon is shutting down"))

    async def _connect_pending_attaches(self, cid: str) -> None:
        waiting = self._pending_attach.pop(cid, [])
        for go, _ in waiting:
            if not go.done():
                go.set_result(None)
        if waiting:
            await asyncio.wait([d for _, d in waiting], timeout=10)

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if not c["State"]["Running"]:
            raise errors.Conflict(f"Container {c['Id']} is not running")
        await self.sup.request("resize", id=c["Id"], height=height, width=width)

    def check_logs_readable(self, c: dict) -> None:
        if (c["HostConfig"].get("LogConfig") or {}).get("Type") == "none":
            raise errors.InvalidParameter("configured logging driver does not support reading")

    async def logs(self, ref: str, *, follow: bool = False, since_ns: int = 0, until_ns: int = 0,
                   tail: int = -1) -> AsyncIterator[jsonlog.LogEntry]:
        c = self.get(ref)
        self.check_logs_readable(c)
        path = c["LogPath"]
        opened_ns = time.time_ns()
        follower = jsonlog.LogFollower(path) if follow else None
        try:
            entries = await asyncio.to_thread(jsonlog.read_entries, path, since_ns, until_ns, tail)
            # what was appended between the follower's start and the read's end is in both:
            # the follower skips those (entries are stamped when written: a second's margin)
            seen: dict = {}
            if follower is not None:
                for e in entries:
                    if e.time_ns >= opened_ns - 1_000_000_000:
                        seen[e] = seen.get(e, 0) + 1
            seen_last = max((e.time_ns for e in seen), default=0)
            for e in entries:
                yield e
            del entries
            if follower is None:
                return
            closing = self._shutting_down()
            while True:
                running = c["State"]["Running"] and c["Id"] in self.containers
                if closing.is_set():
                    running = False   # the daemon stops: what is written so far, then the end
                for e in follower.poll():
                    if seen:
                        n = seen.get(e, 0)
                        if n:
                            seen[e] = n - 1   # already sent from the file
                            continue
                        if e.time_ns > seen_last:
                            seen = {}
                    if until_ns and e.time_ns > until_ns:
                        return
                    yield e
                if not running:
                    return
                if until_ns and time.time_ns() > until_ns:
                    return
                ev = self.exits.get(c["Id"])
                try:
                    if ev is None:
                        await asyncio.sleep(0.1)
                    else:
                        await asyncio.wait_for(asyncio.shield(ev.wait()), 0.1)
                except asyncio.TimeoutError:
                    pass
        finally:
            if follower:
                follower.close()


async def _untrack_when_closed(streams: set, writer: asyncio.StreamWriter) -> None:
    try:
        await writer.wait_closed()
    except Exception:  # noqa: BLE001 - closed either way
        pass
    streams.discard(writer)
