"""Operating Dockyard: `dockyard daemon stop` stops the daemon alone (containers keep
running under the supervisor, a restarted daemon finds them) or, with --all, the
containers, the daemon, the supervisor and its fork server."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from acceptance.harness import running

pytestmark = pytest.mark.slow


def _dockyard(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockyard", *args], capture_output=True,
                          text=True, timeout=timeout)


def _procs_of(data_root) -> list[tuple[int, str]]:
    """Processes whose command line names the data root (daemon, supervisor, fork server)."""
    out = []
    needle = str(data_root).encode()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read()
            state = open(f"/proc/{p}/stat").read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if needle in cmd and state != "Z":
            out.append((int(p), cmd.replace(b"\0", b" ").decode(errors="replace")))
    return out


def _children(pid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if int(open(f"/proc/{p}/stat").read().rpartition(")")[2].split()[1]) == pid:
                    out.append(int(p))
            except (OSError, ValueError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_daemon_stop_alone_then_all(tmp_path):
    with running(tmp_path) as d:
        cid = d.out("run", "-d", "busybox", "sleep", "1000")
        cpid = int(d.out("inspect", "-f", "{{.State.Pid}}", cid))
        daemon_pid = d.proc.pid
        sup = d.supervisor_pid()
        assert sup
        helpers = _children(sup)                        # the runtime's fork server
        assert helpers, "the supervisor has no fork server"

        r = _dockyard("daemon", "stop", "--data-root", str(d.data))
        assert r.returncode == 0, r.stderr
        assert f"stopped dockyard daemon (pid {daemon_pid})" in r.stdout
        assert not _alive(daemon_pid)
        assert _alive(cpid) and _alive(sup)            # the daemon alone
        r = _dockyard("daemon", "stop", "--data-root", str(d.data))
        assert r.returncode == 0 and "is not running" in r.stdout

        d.start()                                       # finds its container again
        assert d.out("inspect", "-f", "{{.State.Running}}", cid) == "true"

        r = _dockyard("daemon", "stop", "--all", "-t", "1", "--data-root", str(d.data),
                      "-H", d.host)
        assert r.returncode == 0, r.stderr
        assert f"stopped container {cid[:12]}" in r.stdout
        assert "stopped dockyard supervisor" in r.stdout
        deadline = time.monotonic() + 10
        while _procs_of(d.data) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(cpid)
        assert _procs_of(d.data) == []                  # daemon, supervisor
        assert [p for p in helpers if _alive(p)] == []  # fork server
        assert not (d.data / "supervisor" / "supervisor.sock").exists() or \
            d.supervisor_pid() is None

        d.start()                                       # and everything comes back
        # busybox sleep as PID 1 ignores SIGTERM: killed after the 1 s timeout
        assert d.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid) == "exited 137"


def test_daemon_stop_all_refuses_without_daemon(tmp_path):
    with running(tmp_path) as d:
        d.out("run", "-d", "busybox", "sleep", "1000")
        d.stop()
        r = _dockyard("daemon", "stop", "--all", "--data-root", str(d.data))
        assert r.returncode == 1
        assert "is not running but its supervisor is" in r.stderr
        assert d.supervisor_pid()                       # nothing was stopped
        d.start()


@pytest.mark.parametrize("level,seen,unseen", [
    ("debug", ["level=debug", "level=info"], ["level=INFO", "level=DEBUG"]),
    ("warn", [], ["level=info", "level=debug", "level=INFO"]),
])
def test_log_level_as_dockerd(tmp_path, level, seen, unseen):
    """--log-level takes dockerd's words and the lines carry logrus' level words."""
    from acceptance.harness import Daemon

    d = Daemon(tmp_path, extra_args=("--log-level", level))
    try:
        d.start()
        d.out("version")
        d.stop()
        log = d.log_text()
    finally:
        d.close()
    for w in seen:
        assert w in log, log[-2000:]
    for w in unseen:
        assert w not in log, log[-2000:]
    if level == "warn":
        assert "Daemon has completed initialization" not in log
