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
        """Open the live stream; returns (tty, reader, writer) to the supervisor.

        Clients attach before they start a container (``docker run``). Such an
        attach waits until the next start has created the task, connects, and
        only then lets the start release the process, so no output is lost.
        """
        c = self.get(ref)
        cid = c["Id"]
        self.emit("container", "attach", cid, self._attrs(c))
        if c["State"]["Running"]:
            reply, reader, writer = await self.sup.open_stream(
                "attach", id=cid, stdin=stdin, stdout=stdout, stderr=stderr)
            return bool(c["Config"].get("Tty")), reader, writer
        loop = asyncio.get_running_loop()
        go, done = loop.create_future(), loop.create_future()
        self._pending_attach.setdefault(cid, []).append((go, done))
        try:
            await go
            reply, reader, writer = await self.sup.open_stream(
                "attach", id=cid, stdin=stdin, stdout=stdout, stderr=stderr)
        except BaseException as e:
            if not done.done():
                done.set_exception(e) if isinstance(e, Exception) else done.cancel()
            raise
        done.set_result(None)
        return bool(c["Config"].get("Tty")), reader, writer

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
        follower = jsonlog.LogFollower(path) if follow else None
        try:
            for e in await asyncio.to_thread(jsonlog.read_entries, path, since_ns, until_ns, tail):
                yield e
            if follower is None:
                return
            ev = self.exits.get(c["Id"])
            while True:
                running = c["State"]["Running"] and c["Id"] in self.containers
                for e in follower.poll():
                    if until_ns and e.time_ns > until_ns:
                        return
                    yield e
                if not running:
                    return
                if until_ns and time.time_ns() > until_ns:
                    return
                try:
                    await asyncio.wait_for(asyncio.shield(ev.wait()), 0.1)
                except asyncio.TimeoutError:
                    pass
        finally:
            if follower:
                follower.close()
