"""The supervisor's side of the runtime fork server (see dockyard.runtime.forkserver).

`ForkServer.run(argv, stdio)` runs ``dockyard-runc`` with those arguments in a
worker forked from a process that has the runtime already imported, and
returns the worker's wait status, as if the supervisor had spawned the
command itself. The server is our child (started on first use, restarted if
it dies); its own children are its business, so the supervisor's reaper
only ever sees the server's pid, registered here as `pid`.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import logging
import os
import socket

log = logging.getLogger("dockyard.supervisor")


class ForkServerDown(Exception):
    """The fork server is not available; nothing ran: run the command directly instead."""


class ForkServerLost(Exception):
    """The fork server went away while a request was in flight: its outcome is unknown."""


class ForkServer:
    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.pid = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._failures = 0
        self._ready: asyncio.Future | None = None

    # ---- lifecycle ------------------------------------------------------------------
    def _start(self) -> None:
        from dockyard.runtime.forkserver import server_argv
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            argv = server_argv()
            actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                       (os.POSIX_SPAWN_DUP2, theirs.fileno(), 3)]
            env = {k: v for k, v in os.environ.items() if k != "DOCKYARD_FORKSERVER_FD"}
            self.pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
        finally:
            os.close(devnull)
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self._ready = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(ours.fileno(), self._readable)
        log.info("runtime fork server started (pid %d)", self.pid)

    def exited(self) -> None:
        """The reaper saw our server's pid exit."""
        self.pid = 0
        self._down("the runtime fork server exited")

    def _down(self, why: str) -> None:
        if self.sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            except (RuntimeError, ValueError):
                pass
            self.sock.close()
            self.sock = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ForkServerLost(why))
        self._pending.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ForkServerDown(why))
            self._ready.exception()   # retrieved: no "never retrieved" warning if nobody waits

    def close(self) -> None:
        self._down("the supervisor is stopping")

    # ---- requests -------------------------------------------------------------------
    def _readable(self) -> None:
        from dockyard.runtime.forkserver import decode
        while self.sock is not None:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                self._down(f"fork server socket: {e}")
                return
            if not data:
                self._failures += 1
                self._down("the runtime fork server closed its socket")
                return
            try:
                msg = decode(data)
            except ValueError:
                continue
            if msg["id"] == 0:
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(True)
                continue
            fut = self._pending.pop(msg["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(int(msg.get("status", 255 << 8)))

    async def run(self, argv: list[str], stdio: tuple[int, int, int], cwd: str = "/") -> int:
        """Wait status of ``argv`` run by a worker. ForkServerDown: nothing ran (run it
        directly instead); ForkServerLost: the server died while it ran."""
        from dockyard.runtime.forkserver import encode_request
        if self.sock is None:
            if self._failures >= 3:
                raise ForkServerDown("the runtime fork server keeps failing")
            try:
                self._start()
            except (OSError, ImportError) as e:
                self._failures += 1
                raise ForkServerDown(f"cannot start the runtime fork server: {e}") from None
        if not self._ready.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._ready), 20)
            except (asyncio.TimeoutError, ForkServerDown) as e:
                self._failures += 1
                self._down(f"the runtime fork server did not get ready: {e or 'timeout'}")
                raise ForkServerDown("the runtime fork server did not get ready") from None
        if self.sock is None:
            raise ForkServerDown("the runtime fork server went away")
        req = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[req] = fut
        data = encode_request(req, argv, cwd)
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", stdio))]
        try:
            while True:
                try:
                    self.sock.sendmsg([data], fds)
                    break
                except BlockingIOError:   # many requests at once: the server catches up
                    await asyncio.sleep(0.001)
                    if self.sock is None:
                        raise OSError("fork server went away") from None
        except OSError as e:
            self._pending.pop(req, None)
            self._down(f"fork server socket: {e}")
            raise ForkServerDown(str(e)) from None
        return await fut
