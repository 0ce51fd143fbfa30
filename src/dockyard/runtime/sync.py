"""The typed protocol between the runtime and the processes it forks.

One SOCK_SEQPACKET socket pair per command: each message is one datagram
holding a small JSON object ``{"type": <Msg>, ...}``, optionally with file
descriptors attached (SCM_RIGHTS). Message boundaries come from the socket
type, so a message is never split or merged. A child reports a failure as an
ERROR message; the parent turns it into the command's error. End-of-file
(every child end closed, e.g. by a successful execve of a close-on-exec
socket) means "done".
"""

from __future__ import annotations

import struct
import _socket as socket  # the C module: `socket` costs ~8 ms of enum setup

from . import fastjson


class Msg:
    """The one list of message types (plain strings: ``enum`` costs startup time)."""

    CGROUP = "cgroup"              # parent -> init: the cgroup dirs exist ({"dirs": {mountpoint: dir}})
    GO = "go"                      # parent -> init (or exec's stage 1): you are in the cgroup
    USERNS = "userns"              # stage 1 -> parent: unshared CLONE_NEWUSER, map me
    USERNS_DONE = "userns-done"    # parent -> stage 1: uid/gid maps written
    CHILD_PID = "child-pid"        # stage 1 -> parent: init's pid (in the parent's pid ns)
    HOOKS = "hooks"                # init -> parent: mounts done, run prestart/createRuntime
    HOOKS_DONE = "hooks-done"      # parent -> init: hooks ran (carries the state for hooks)
    #                                (both only if the spec has hooks: hooks_exchange)
    READY = "ready"                # init -> parent: namespaces and rootfs are set up
    RUN = "run"                    # parent -> init: resources, hooks, state done: finish and
    #                                wait for start (sent without waiting for READY)
    ERROR = "error"                # child -> parent: {"msg": ...}


class SyncError(Exception):
    pass


def hooks_exchange(cfg) -> bool:
    """Whether init and the runtime trade HOOKS/HOOKS_DONE: only when a hook needs
    the parent (prestart, createRuntime) or the state it sends (createContainer,
    startContainer). Both sides decide from the same config."""
    h = cfg.hooks
    return bool(h.get("prestart") or h.get("createRuntime") or h.get("createContainer")
                or h.get("startContainer"))


def _pack_fds(fds: list[int]) -> bytes:
    return struct.pack(f"{len(fds)}i", *fds)


def _unpack_fds(data: bytes) -> list[int]:
    n = len(data) // 4
    return list(struct.unpack(f"{n}i", data[: 4 * n]))


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, kind: str, fds: list[int] | None = None, **payload) -> None:
    data = fastjson.dumps({"type": kind, **payload}).encode()
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _pack_fds(fds))])
    else:
        sock.send(data)


def recv(sock: socket.socket, with_fds: bool = False):
    """The next message as a dict (None at end-of-file); with_fds -> (msg, fds)."""
    fds: list[int] = []
    try:
        data, anc, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
    except ConnectionResetError:
        # The peer exited with messages of ours unread (init failing after RUN was queued):
        # the kernel reports that reset once, ahead of what the peer had already sent us,
        # such as its ERROR. Read on: that message, or end-of-file.
        data, anc, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
    for level, typ, cdata in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.extend(_unpack_fds(cdata))
    msg = fastjson.loads(data) if data else None
    return (msg, fds) if with_fds else msg


def expect(sock: socket.socket, kind: str, what: str) -> dict:
    """Receive a message of type ``kind``; an ERROR or EOF raises SyncError."""
    msg = recv(sock)
    if msg is None:
        raise SyncError(f"{what}: the container's init exited unexpectedly")
    if msg["type"] == Msg.ERROR:
        raise SyncError(msg.get("msg", "unknown error"))
    if msg["type"] != kind:
        raise SyncError(f"{what}: expected {kind!r}, got {msg['type']!r}")
    return msg


def send_fd(sock: socket.socket, fd: int, name: str) -> None:
    """runc's console-socket protocol: one message, the name as data, the fd attached."""
    sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _pack_fds([fd]))])


def recv_fd(sock: socket.socket) -> tuple[int, str]:
    data, anc, _f, _a = sock.recvmsg(4096, socket.CMSG_SPACE(4))
    for level, typ, cdata in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            return _unpack_fds(cdata)[0], data.decode(errors="replace")
    raise SyncError("console socket: no file descriptor received")
