"""``dockyard supervisor --root DIR --reload``: a new supervisor in place of the running one.

It sends SIGHUP to the holder that runs for DIR (supervisor/holder.py: it stops its
supervisor and starts a new one at once, keeping the containers' descriptors and exits
meanwhile) and waits until a supervisor other than the one that answered before answers
on the socket. For upgrades: the new supervisor runs the code now on disk. Light on
imports (a command line tool, run by ``systemctl reload``).
"""

import json
import os
import signal
import socket
import sys
import time

TIMEOUT = 30.0


def _error(msg: str) -> int:
    sys.stderr.write(f"dockyard supervisor: {msg}\n")
    return 1


def _where_logged(root: str) -> str:
    return (f"the holder's log says why: {os.path.join(root, 'supervisor.log')}, or "
            "`journalctl -u dockyard-supervisor` under systemd")


def ping(sock_path: str, timeout: float = 2.0) -> int | None:
    """The pid of the supervisor that answers on ``sock_path``, else None."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(b'{"op":"ping","seq":1}\n')
            buf = b""
            while b"\n" not in buf:
                data = s.recv(4096)
                if not data:
                    return None
                buf += data
    except OSError:
        return None
    try:
        reply = json.loads(buf.split(b"\n", 1)[0])
        pid = reply.get("pid") if reply.get("ok") else None
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) and pid > 0 else None


def reload(root: str, sock_path: str | None = None, timeout: float = TIMEOUT) -> int:
    from dockyard.supervisor.holder import running_holder

    root = os.path.abspath(root)
    sock_path = sock_path or os.path.join(root, "supervisor.sock")
    lock = os.path.join(root, "holder.lock")
    if os.path.exists(lock) and not os.access(lock, os.R_OK):
        return _error(f"cannot read {lock}: permission denied (run as the supervisor's user)")
    holder = running_holder(root)
    if holder is None:
        return _error(f"no supervisor holder runs for {root}: nothing to reload "
                      f"(`dockyard supervisor --root {root}` starts one)")
    before = ping(sock_path)
    try:
        os.kill(holder, signal.SIGHUP)
    except ProcessLookupError:
        return _error(f"the holder of {root} (pid {holder}) has just ended: nothing to reload")
    except PermissionError:
        return _error(f"cannot signal the holder of {root} (pid {holder}): permission denied")
    deadline = time.monotonic() + timeout
    while True:
        pid = ping(sock_path)
        if pid is not None and pid != before:
            sys.stdout.write(f"supervisor reloaded: pid {pid} (holder pid {holder})\n")
            return 0
        if running_holder(root) != holder:
            return _error(f"the holder of {root} (pid {holder}) ended during the reload "
                          f"({_where_logged(root)})")
        if time.monotonic() >= deadline:
            return _error(f"no new supervisor answered on {sock_path} within {timeout:.0f} s "
                          f"of the reload ({_where_logged(root)})")
        time.sleep(0.05)
