"""Warm the kernel's cgroup attach path before a container is placed in its cgroup.

Moving a process into a cgroup (a write to `cgroup.procs`) takes the kernel's
global threadgroup rwsem for writing, and the first writer after a quiet spell
waits for an RCU grace period (10-20 ms here); writers that follow within
about one grace period are fast. `create` has to place init in its cgroups,
so we take that wait early, on a thread: it moves this process into the
cgroup it is already in (a no-op move) and repeats every few milliseconds
until told to stop or until its deadline.

- the runtime's `create` calls :func:`start` first thing, so the wait runs
  while the main thread imports modules and reads the bundle, and
  :func:`stop` once init is in its cgroup;
- the daemon calls :func:`warm_for` when a container is about to be created
  or started (the runtime then runs in a fork server that has nothing left
  to import, so there is nothing to hide the wait behind).

Only cheap C modules here: this module is imported on the hot path.
"""

import _thread
import os
import time

_lock = _thread.allocate_lock()
_state = {"stop": False, "deadline": 0.0, "running": None}


def _after_fork_in_child() -> None:
    # Only the forking thread survives a fork: a warming thread of the parent is not
    # ours to wait for, and its lock may have been held at the moment of the fork.
    global _lock
    _lock = _thread.allocate_lock()
    _state.update(stop=False, deadline=0.0, running=None)


os.register_at_fork(after_in_child=_after_fork_in_child)


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


def _run(done) -> None:
    try:
        pid = str(os.getpid()).encode()
        for path in _own_procs_files():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                while not _state["stop"] and time.monotonic() < _state["deadline"]:
                    os.write(fd, pid)
                    time.sleep(0.002)
                return
            except OSError:
                continue
            finally:
                os.close(fd)
    finally:
        with _lock:
            if _state["running"] is done:
                _state["running"] = None
        done.release()


def warm_for(seconds: float) -> None:
    """Keep the attach path warm for ``seconds`` from now (root only; never blocks)."""
    if os.geteuid() != 0:
        return
    with _lock:
        _state["deadline"] = max(_state["deadline"], time.monotonic() + seconds)
        _state["stop"] = False
        if _state["running"] is not None:
            return
        done = _thread.allocate_lock()
        done.acquire()
        _state["running"] = done
    _thread.start_new_thread(_run, (done,))


def start() -> None:
    """Begin warming for this process's `create` (ends at :func:`stop`)."""
    warm_for(2.0)


def stop() -> None:
    """End warming and wait for the thread."""
    with _lock:
        done = _state["running"]
        _state["stop"] = True
    if done is not None:
        done.acquire()
        done.release()
