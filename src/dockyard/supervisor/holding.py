"""The supervisor's end of its holder's socket (the protocol is in holder.py).

The supervisor gives the holder a duplicate of each task's descriptors as soon as
the task has a pid (``hold``), closes them there when it closes its own
(``drop``, ``release``), and at start takes what the holder kept from the
supervisor before it (``receive``), with the exits the holder reaped meanwhile;
later exits of those tasks arrive as ``exit`` messages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from dockyard.supervisor import holder as proto

log = logging.getLogger("dockyard.supervisor")


@dataclass
class HeldTask:
    pid: int
    exit_code: int | None
    finished_ns: int | None
    fds: dict = field(default_factory=dict)   # name -> fd (ours now)

    def close(self) -> None:
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()


class HolderLink:
    def __init__(self, fd: int) -> None:
        os.set_inheritable(fd, False)
        self.sock = socket.socket(fileno=fd)
        self.pid = os.getppid()
        self.alive = True
        self._queue: list = []   # (words, dup'd fds) not sent yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_exit = None      # callable(task id, code, finished ns)

    def receive(self, timeout: float = 10.0) -> dict:
        """What the holder kept: {task id: HeldTask}, up to its ``ready``."""
        held: dict = {}
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                words, fds = proto.recv(self.sock)
                if not words:
                    raise ConnectionError("the holder closed our connection")
                if words[0] == "ready":
                    for fd in fds:
                        os.close(fd)
                    break
                if words[0] != "held" or len(words) < 5 or len(words) - 5 != len(fds):
                    log.warning("unexpected message from the holder: %s", " ".join(words)[:200])
                    for fd in fds:
                        os.close(fd)
                    continue
                task, pid, code, ns = words[1], int(words[2]), words[3], words[4]
                held[task] = HeldTask(pid, None if code == "-" else int(code),
                                      None if ns == "-" else int(ns), dict(zip(words[5:], fds)))
        except (OSError, ValueError) as e:
            log.warning("no word from the holder (%s): what it keeps is not taken over", e)
            self.alive = False
        self.sock.setblocking(False)
        return held

    def start(self, on_exit) -> None:
        self.on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        if self.alive:
            self._loop.add_reader(self.sock.fileno(), self._readable)
            if self._queue:
                self._loop.add_writer(self.sock.fileno(), self._flush)

    def _readable(self) -> None:
        while True:
            try:
                words, fds = proto.recv(self.sock)
            except BlockingIOError:
                return
            except OSError as e:
                words, fds = [], []
                log.warning("holder connection: %s", e)
            for fd in fds:
                os.close(fd)
            if not words:
                self._gone()
                return
            if words[0] == "exit" and len(words) == 4:
                try:
                    code, ns = int(words[2]), int(words[3])
                except ValueError:
                    continue
                if self.on_exit is not None:
                    self.on_exit(words[1], code, ns)
            else:
                log.warning("unexpected message from the holder: %s", " ".join(words)[:200])

    def _gone(self) -> None:
        if not self.alive:
            return
        self.alive = False
        log.warning("the holder (pid %d) is gone: a supervisor killed from now on loses what "
                    "it holds", self.pid)
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
        for _words, fds in self._queue:
            for fd in fds:
                os.close(fd)
        self._queue.clear()

    # ---- requests --------------------------------------------------------------------
    def hold(self, task: str, pid: int, fds: dict) -> None:
        if fds:
            self._send(["hold", task, pid, *fds], list(fds.values()))

    def drop(self, task: str, *names: str) -> None:
        self._send(["drop", task, *names], [])

    def release(self, task: str) -> None:
        self._send(["release", task], [])

    def _send(self, words: list, fds: list) -> None:
        if not self.alive:
            return
        if not self._queue:
            try:
                proto.send(self.sock, words, fds)
                return
            except BlockingIOError:
                pass
            except OSError as e:
                log.warning("holder connection: %s", e)
                self._gone()
                return
            if self._loop is not None:
                self._loop.add_writer(self.sock.fileno(), self._flush)
        # queued: our fds may be closed before it is sent, so it keeps duplicates
        self._queue.append((words, [os.dup(fd) for fd in fds]))

    def flush(self, timeout: float = 5.0) -> None:
        """Send what is still queued, waiting up to ``timeout``: before a clean exit, for
        the holder hands it to the next supervisor (a reload)."""
        if not self.alive or not self._queue:
            return
        if self._loop is not None:
            self._loop.remove_writer(self.sock.fileno())
        deadline = time.monotonic() + timeout
        try:
            while self._queue:
                words, fds = self._queue[0]
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                proto.send(self.sock, words, fds)
                self._queue.pop(0)
                for fd in fds:
                    os.close(fd)
        except OSError as e:   # TimeoutError included
            log.warning("holder connection: %s; %d messages not sent", e, len(self._queue))
            self._gone()
        finally:
            if self.alive:
                self.sock.setblocking(False)

    def _flush(self) -> None:
        while self._queue:
            words, fds = self._queue[0]
            try:
                proto.send(self.sock, words, fds)
            except BlockingIOError:
                return
            except OSError as e:
                log.warning("holder connection: %s", e)
                self._gone()
                return
            self._queue.pop(0)
            for fd in fds:
                os.close(fd)
        if self._loop is not None:
            self._loop.remove_writer(self.sock.fileno())
