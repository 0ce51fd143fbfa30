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
  :func:`stop` once init is in its cgroup. :func:`start` waits until the
  thread is about to write (the thread needs the GIL to get there, and the
  main thread, busy importing, would otherwise hold it for a whole switch
  interval, 5 ms, or more), and shortens the switch interval while warming
  so that the thread's later writes are not held up by the main thread
  either;
- the daemon calls :func:`warm_for` when a container is about to be created
  or started (the runtime then runs in a fork server that has nothing left
  to import, so there is nothing to hide the wait behind).

Only cheap C modules here: this module is imported on the hot path.
"""

import _thread
from dockyard.runtime import fastos as os
import sys
import time

_lock = _thread.allocate_lock()
_state = {"stop": False, "deadline": 0.0, "running": None, "writing": None,
          "switch": None}


def _after_fork_in_child() -> None:
    # Only the forking thread survives a fork: a warming thread of the parent is not
    # ours to wait for, and its lock may have been held at the moment of the fork.
    global _lock
    _lock = _thread.allocate_lock()
    if _state["switch"] is not None:
        sys.setswitchinterval(_state["switch"])
    _state.update(stop=False, deadline=0.0, running=None, writing=None, switch=None)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _own_procs_files() -> list[str]:
    out = []
    try:
        fd = os.open("/proc/self/cgroup", os.O_RDONLY | os.O_CLOEXEC)
        try:
            lines = os.read(fd, 65536).decode().splitlines()
        finally:
            os.close(fd)
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


def _signal_writing() -> None:
    writing = _state["writing"]
    if writing is not None:
        _state["writing"] = None
        writing.release()


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
                    _signal_writing()
                    os.write(fd, pid)
                    time.sleep(0.002)
                return
            except OSError:
                continue
            finally:
                os.close(fd)
    finally:
        _signal_writing()
        with _lock:
            if _state["running"] is done:
                _state["running"] = None
        done.release()


def warm_for(seconds: float, _wait_first_write: bool = False) -> None:
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
        writing = None
        if _wait_first_write:
            writing = _thread.allocate_lock()
            writing.acquire()
            _state["writing"] = writing
    _thread.start_new_thread(_run, (done,))
    if writing is not None:
        writing.acquire()    # releases the GIL: the thread runs up to its first write


def start() -> None:
    """Begin warming for this process's `create` (ends at :func:`stop`).

    Returns once the thread is about to make its first write, with a short
    GIL switch interval (restored by :func:`stop`)."""
    if _state["switch"] is None:
        _state["switch"] = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
    warm_for(2.0, _wait_first_write=True)


def stop(wait: bool = True) -> None:
    """End warming; with ``wait``, also wait for the thread, which notices
    within its 2 ms sleep (without: it ends on its own, having written at most
    once more, a no-op move of this process into its own cgroup)."""
    with _lock:
        done = _state["running"]
        _state["stop"] = True
    if done is not None and wait:
        done.acquire()
        done.release()
    if _state["switch"] is not None:
        sys.setswitchinterval(_state["switch"])
        _state["switch"] = None
