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
        """The entries of :meth:`log_batches` one by one."""
        async for batch in self.log_batches(ref, follow=follow, since_ns=since_ns,
                                            until_ns=until_ns, tail=tail):
            for e in batch:
                yield e

    async def log_batches(self, ref: str, *, follow: bool = False, since_ns: int = 0,
                          until_ns: int = 0, tail: int = -1) -> AsyncIterator[list[jsonlog.LogEntry]]:
        """The log's entries in batches as they are read (a worker thread reads the next
        block while this one is sent: memory stays bounded whatever the log's size);
        ``follow``: then what is appended, until the container stops."""
        c = self.get(ref)
        self.check_logs_readable(c)
        path = c["LogPath"]
        follower = jsonlog.LogFollower(path) if follow else None
        try:
            # the file read stops where the follower starts: nothing twice, nothing missed
            upto = follower.position() if follower is not None else None
            async for batch in _batches_in_thread(
                    jsonlog.iter_entry_batches(path, since_ns, until_ns, tail, upto)):
                yield batch
            if follower is None:
                return
            closing = self._shutting_down()
            while True:
                running = c["State"]["Running"] and c["Id"] in self.containers
                if closing.is_set():
                    running = False   # the daemon stops: what is written so far, then the end
                more = True
                while more:   # a backlog in bounded steps, the loop free between them
                    batch, more = follower.poll_batch()
                    if until_ns:
                        for i, e in enumerate(batch):
                            if e.time_ns > until_ns:
                                if i:
                                    yield batch[:i]
                                return
                    if batch:
                        yield batch
                    if more:
                        await asyncio.sleep(0)
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


_reader = None


def _reader_pool():
    """Log reads' own threads: a slow disk or many readers do not hold up the default
    executor's other work."""
    global _reader
    if _reader is None:
        from concurrent.futures import ThreadPoolExecutor

        _reader = ThreadPoolExecutor(max_workers=4, thread_name_prefix="logs-read")
    return _reader


async def _batches_in_thread(gen):
    """The items of the blocking generator ``gen``, each produced in a worker thread,
    the next one read while this one is used. Ends (and closes ``gen``, once no thread
    runs it) when the consumer stops early too."""
    pool = _reader_pool()
    fut = pool.submit(next, gen, None)
    try:
        while True:
            batch = await asyncio.wrap_future(fut)
            if batch is None:
                return
            fut = pool.submit(next, gen, None)
            yield batch
    finally:
        # closed by whichever thread sees the last read done (never while it runs)
        fut.add_done_callback(lambda _f: gen.close())


async def _untrack_when_closed(streams: set, writer: asyncio.StreamWriter) -> None:
    try:
        await writer.wait_closed()
    except Exception:  # noqa: BLE001 - closed either way
        pass
    streams.discard(writer)
