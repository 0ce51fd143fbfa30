"""`dockyard daemon stop [--all]`: stop the daemon alone, or everything.

The daemon alone (its pid from the pidfile gets SIGTERM, as `kill $(cat
/run/dockyard.pid)` would): containers keep running under the supervisor and a
daemon started later finds them again. ``--all``: first every running or
paused container is stopped through the API (SIGTERM, then SIGKILL after the
timeout, as `docker stop`), then the daemon (with nothing left running, it takes
its bridges and iptables rules off the host), then the supervisor and its
runtime fork server. The same files the daemon would use (``--data-root``,
``--pidfile``, ``-H``, ``--config-file``) say which daemon.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from dockyard.daemon.config import DEFAULT_CONFIG_FILE, ConfigError, load_file, merge

S = argparse.SUPPRESS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dockyard daemon stop", argument_default=S,
        description="Stop the Dockyard daemon (containers keep running), or with --all "
                    "the containers, the daemon and its supervisor.")
    p.add_argument("--all", dest="all", action="store_true",
                   help="also stop every container and the supervisor")
    p.add_argument("-t", "--timeout", dest="timeout", type=int, metavar="SECONDS",
                   help="seconds a container has to stop before it is killed, and the "
                        "daemon and supervisor to exit (default 10)")
    p.add_argument("-H", "--host", dest="hosts", action="append", metavar="ADDR",
                   help="the daemon's API address (for --all; default: its configuration's)")
    p.add_argument("--data-root", dest="data_root", metavar="DIR")
    p.add_argument("-p", "--pidfile", dest="pidfile", metavar="FILE")
    p.add_argument("--config-file", dest="config_file", metavar="FILE")
    return p


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie has exited
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _daemon_pid(pidfile: str) -> int | None:
    try:
        pid = int(open(pidfile).read().strip() or 0)
    except (OSError, ValueError):
        return None
    if not pid or not _alive(pid):
        return None
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return None
    return pid if b"dockyard" in cmdline else None   # a stale pidfile naming another process


def _stop_containers(host: str, timeout: int) -> list[str]:
    """Stop every running or paused container; their ids (short)."""
    from concurrent.futures import ThreadPoolExecutor

    from dockyard.client import Client

    with Client(host) as c:
        running = [x["Id"] for x in c.get_json("/containers/json")]

    def stop(cid: str) -> None:
        with Client(host) as c:
            c.request("POST", f"/containers/{cid}/stop", {"t": str(timeout)}).read()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(stop, running))
    return [cid[:12] for cid in running]


def _supervisor_pid(root: str) -> int | None:
    return _supervisor_pids(root)[0]


def _supervisor_pids(root: str) -> tuple[int | None, int | None]:
    """(the supervisor's pid, its holder's) as the supervisor answers, else Nones."""
    from dockyard.supervisor import client as supclient

    try:
        reply = supclient.SyncClient(supclient.socket_path(root)).request("ping")
        return int(reply["pid"]), int(reply.get("holder") or 0) or None
    except Exception:   # noqa: BLE001 - none answers: none runs
        pass
    # a holder may run while no supervisor answers (restarting a killed one)
    from dockyard.supervisor.holder import running_holder

    return None, running_holder(root)


def main(argv: list[str]) -> int:
    args = vars(build_parser().parse_args(argv))
    stop_all = args.pop("all", False)
    timeout = args.pop("timeout", 10)
    config_file = args.pop("config_file", None)
    path = config_file or DEFAULT_CONFIG_FILE
    try:
        file_data = load_file(path) if config_file or os.path.exists(path) else {}
        cfg = merge({k: v for k, v in args.items()}, {k: v for k, v in file_data.items()
                                                      if k in ("hosts", "data-root", "pidfile")},
                    path)
    except ConfigError as e:
        sys.stderr.write(f"dockyard daemon stop: {e}\n")
        return 1
    pidfile = cfg.effective_pidfile
    pid = _daemon_pid(pidfile)
    sup_root = os.path.join(os.path.abspath(cfg.data_root), "supervisor")
    if stop_all:
        if pid is None:
            sup = _supervisor_pid(sup_root)
            if sup is not None:
                sys.stderr.write(
                    f"dockyard daemon stop: the daemon of {cfg.data_root} is not running but "
                    "its supervisor is: start the daemon so that its containers can be "
                    "stopped, then run this again\n")
                return 1
            print(f"dockyard daemon ({cfg.data_root}) is not running")
            return 0
        unix = [h for h in cfg.effective_hosts if h.startswith("unix://")]
        host = (unix or cfg.effective_hosts)[0]
        try:
            stopped = _stop_containers(host, timeout)
        except Exception as e:   # noqa: BLE001 - reported, nothing else is stopped
            sys.stderr.write(f"dockyard daemon stop: stopping the containers through {host} "
                             f"failed: {e}\n")
            return 1
        for cid in stopped:
            print(f"stopped container {cid}")
    if pid is None:
        print(f"dockyard daemon ({cfg.data_root}) is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, max(timeout, 10) + 5):
        sys.stderr.write(f"dockyard daemon stop: the daemon (pid {pid}) did not exit within "
                         f"{max(timeout, 10) + 5} s\n")
        return 1
    print(f"stopped dockyard daemon (pid {pid})")
    if stop_all:
        sup, holder = _supervisor_pids(sup_root)
        if sup is not None or holder is not None:
            # its holder (supervisor/holder.py) passes SIGTERM on and ends after it
            os.kill(holder or sup, signal.SIGTERM)
            for pid, what in ((sup, "supervisor"), (holder, "supervisor's holder")):
                if pid and not _wait_gone(pid, timeout + 5):
                    sys.stderr.write(f"dockyard daemon stop: the {what} (pid {pid}) did not "
                                     f"exit within {timeout + 5} s\n")
                    return 1
            print(f"stopped dockyard supervisor (pid {sup or holder})")
    return 0
