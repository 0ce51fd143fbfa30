"""Talking to the supervisor: start it if needed, send requests, attach to streams."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import time

from dockyard import errors, statefiles
from dockyard.supervisor import protocol

_KINDS = {"NotFound": errors.NotFound, "Conflict": errors.Conflict,
          "InvalidParameter": errors.InvalidParameter}


def _raise(reply: dict) -> None:
    cls = _KINDS.get(reply.get("kind", ""), errors.DockyardError)
    raise cls(reply.get("error", "supervisor error"))


def socket_path(root: str) -> str:
    return os.path.join(root, "supervisor.sock")


def ensure_running(root: str, timeout: float = 10.0) -> str:
    """Start a supervisor for ``root`` unless one answers already; return its socket path.

    The supervisor is started in its own session, detached from the caller, so it
    outlives a daemon that stops or crashes, under its holder (supervisor/holder.py).
    """
    path = socket_path(root)
    if _answers(path):
        return path
    # owner-only, like everything of the daemon's (daemon/dataroot.py)
    statefiles.makedirs(root)
    statefiles.restrict(root)
    log_path = os.path.join(root, "supervisor.log")
    logf = open(statefiles.create(log_path, os.O_WRONLY | os.O_APPEND), "ab")
    statefiles.restrict(log_path)
    # the holder (supervisor/holder.py), which starts the supervisor as its child; if
    # one runs already (restarting a killed supervisor), the new one asks it to hurry
    from dockyard.supervisor.holder import argv

    subprocess.Popen(argv(os.path.abspath(root)), stdin=subprocess.DEVNULL, stdout=logf,
                     stderr=logf, start_new_session=True, close_fds=True)
    logf.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(path):
            return path
        time.sleep(0.02)
    raise errors.Unavailable(f"supervisor did not start (see {root}/supervisor.log)")


def _answers(path: str) -> bool:
    try:
        SyncClient(path).request("ping")
        return True
    except (OSError, errors.DockyardError):
        return False


class SyncClient:
    """One request per connection; for tools and tests."""

    def __init__(self, path: str) -> None:
        self.path = path

    def request(self, op: str, **fields) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.path)
            s.sendall(protocol.encode_message({"op": op, "seq": 1, **fields}))
            dec = protocol.LineDecoder()
            while True:
                data = s.recv(65536)
                if not data:
                    raise errors.Unavailable("supervisor closed the connection")
                msgs = dec.feed(data)
                if msgs:
                    reply = msgs[0]
                    if not reply.get("ok"):
                        _raise(reply)
                    return reply


class AsyncClient:
    """A multiplexed control connection for the daemon, plus stream connections."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seq = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        # Called when the supervisor's socket refuses us (it was killed): the owner starts
        # a new one (and reconciles); the request is then tried once more.
        self.replace_dead = None
        self._replacing = False

    async def _connect(self) -> asyncio.StreamWriter:
        try:
            return await self._connect_once()
        except (ConnectionRefusedError, FileNotFoundError) as e:
            if self.replace_dead is None or self._replacing:
                raise errors.Unavailable(f"the supervisor is not running: {e}") from None
        self._replacing = True
        try:
            await self.replace_dead()
        finally:
            self._replacing = False
        try:
            return await self._connect_once()
        except OSError as e:
            raise errors.Unavailable(f"the supervisor is not running: {e}") from None

    async def _connect_once(self) -> asyncio.StreamWriter:
        async with self._lock:
            if self._writer is None or self._writer.is_closing():
                reader, writer = await asyncio.open_unix_connection(self.path)
                self._writer = writer
                self._reader_task = asyncio.ensure_future(self._read_loop(reader))
            return self._writer

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        dec = protocol.LineDecoder()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for msg in dec.feed(data):
                    fut = self._pending.pop(msg.get("seq"), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        finally:
            # The connection is dead: the next request opens a new one (a restarted
            # supervisor), instead of writing into this one and waiting forever.
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(errors.Unavailable("lost connection to the supervisor"))
            self._pending.clear()

    async def request(self, op: str, **fields) -> dict:
        writer = await self._connect()
        seq = next(self._seq)
        fut = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        try:
            writer.write(protocol.encode_message({"op": op, "seq": seq, **fields}))
            reply = await fut
        finally:
            # a caller that stopped waiting (wait_for's timeout) leaves nothing behind
            self._pending.pop(seq, None)
        if not reply.get("ok"):
            _raise(reply)
        return reply

    async def subscribe(self):
        """Yield exit events as they happen (a dedicated connection)."""
        reader, writer = await asyncio.open_unix_connection(self.path)
        writer.write(protocol.encode_message({"op": "subscribe", "seq": 0}))
        dec = protocol.LineDecoder()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for msg in dec.feed(data):
                    if "event" in msg:
                        yield msg
                    elif msg.get("ok"):
                        # the subscription is in place: what exited before it must be
                        # asked for (``list``), everything after it arrives here
                        yield {"subscribed": True}
        finally:
            writer.close()

    async def open_stream(self, op: str, **fields):
        """Send an ``attach`` (or attached ``exec``); return (reply, reader, writer)."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.path)
        except OSError as e:
            raise errors.Unavailable(f"the supervisor is not running: {e}") from None
        try:
            writer.write(protocol.encode_message({"op": op, **fields}))
            line = await reader.readline()
            if not line:
                raise errors.Unavailable("supervisor closed the connection")
            import json

            reply = json.loads(line)
            if not reply.get("ok"):
                _raise(reply)
        except BaseException:   # an error, or a caller that stopped waiting: nothing left open
            writer.close()
            raise
        return reply, reader, writer

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
