"""Run a function inside another network namespace, from a helper thread.

setns(CLONE_NEWNET) changes the namespace of the calling *thread* only, so a
short-lived thread enters the target namespace, runs the function (which may
open netlink or inet sockets: sockets stay bound to the namespace they were
created in, even after they are handed back), and exits. The daemon's other
threads never leave the host namespace and nothing forks.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_in_netns(path: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` inside the network namespace at ``path``.

    ``path`` is /proc/<pid>/ns/net, /proc/<pid>/task/<tid>/ns/net or a
    bind-mounted namespace file (/run/netns/NAME). Exceptions propagate.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            setns(fd)
            result["value"] = fn(*args, **kwargs)
        except BaseException as e:  # handed back to the caller
            result["error"] = e

    try:
        t = threading.Thread(target=target, name="dockyard-netns", daemon=True)
        t.start()
        t.join()
    finally:
        os.close(fd)
    if "error" in result:
        raise result["error"]
    return result["value"]


def same_netns(path: str) -> bool:
    """True if ``path`` is the namespace this thread is in."""
    a, b = os.stat(path), os.stat("/proc/thread-self/ns/net")
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
