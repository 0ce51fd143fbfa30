"""Warm the kernel's cgroup attach path while the runtime is still starting.

Moving a process into a cgroup (a write to `cgroup.procs`) takes the kernel's
global threadgroup rwsem for writing, and the first writer after a quiet spell
waits for an RCU grace period (10-20 ms here); writers that follow within
about one grace period are fast. `create` has to place init in its cgroups,
so we take that wait early, on a thread, while the main thread imports
modules and reads the bundle: the thread moves this process into the cgroup
it is already in (a no-op move) and repeats every few milliseconds until
`stop()`, which `create` calls just before it forks the container's process.

Only cheap C modules here: this module is imported on the hot path.
"""

import _thread
import os
import time

_state = {"stop": False, "done": None}


def _own_procs_files() -> list[str]:
    out = []
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, path = parts
        if hid == "0":
            out.append(f"/sys/fs/cgroup/unified{path}/cgroup.procs")
            out.append(f"/sys/fs/cgroup{path}/cgroup.procs")
        elif ctrls.startswith("name="):
            out.append(f"/sys/fs/cgroup/{ctrls[5:]}{path}/cgroup.procs")
        elif ctrls:
            out.append(f"/sys/fs/cgroup/{ctrls}{path}/cgroup.procs")
    return out


def _run(lock) -> None:
    try:
        pid = str(os.getpid()).encode()
        deadline = time.monotonic() + 2.0
        for path in _own_procs_files():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                while not _state["stop"] and time.monotonic() < deadline:
                    os.write(fd, pid)
                    time.sleep(0.002)
                return
            except OSError:
                continue
            finally:
                os.close(fd)
    finally:
        lock.release()


def start() -> None:
    """Begin warming (root only; a no-op if already started)."""
    if _state["done"] is not None or os.geteuid() != 0:
        return
    lock = _thread.allocate_lock()
    lock.acquire()
    _state["done"] = lock
    _thread.start_new_thread(_run, (lock,))


def stop() -> None:
    """End warming and wait for the thread (call before fork)."""
    lock = _state["done"]
    if lock is None:
        return
    _state["stop"] = True
    lock.acquire()
    lock.release()
