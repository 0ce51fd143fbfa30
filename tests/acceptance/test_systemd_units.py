"""contrib/systemd: the daemon's and the supervisor's units pass `systemd-analyze verify`,
the daemon's does not bind the supervisor's (restarting the daemon leaves the supervisor and
its containers running), and the supervisor's command line, run as its unit runs it, is the
supervisor a daemon on that data root uses and leaves running when it stops."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acceptance.harness import Daemon, import_busybox

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
INSTALLED = "/usr/local/bin/dockyard"   # scripts/install's layout, what the units name


def _unit(name: str) -> configparser.ConfigParser:
    c = configparser.ConfigParser(strict=False, interpolation=None)
    c.optionxform = str
    c.read(UNITS / name)
    return c


def _ours() -> str:
    """Our `dockyard` command (this test's environment), for INSTALLED in the units."""
    path = shutil.which("dockyard") or os.path.join(os.path.dirname(sys.executable), "dockyard")
    assert os.access(path, os.X_OK), path
    return path


def test_units_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd "
                    "(scripts/install-deps --test installs it)")
    names = sorted(p.name for p in UNITS.glob("*.service"))
    assert names == ["dockyard-supervisor.service", "dockyard.service"]
    for n in names:
        text = (UNITS / n).read_text()
        assert INSTALLED + " " in text
        # systemd-analyze checks that ExecStart's program exists: point it at ours
        (tmp_path / n).write_text(text.replace(INSTALLED + " ", _ours() + " "))
    r = subprocess.run(["systemd-analyze", "verify", *[str(tmp_path / n) for n in names]],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_daemon_unit_does_not_bind_supervisor():
    d, s = _unit("dockyard.service"), _unit("dockyard-supervisor.service")
    assert "dockyard-supervisor.service" in d["Unit"]["Wants"].split()
    assert "dockyard-supervisor.service" in d["Unit"]["After"].split()
    for key in ("Requires", "BindsTo", "PartOf", "Requisite"):
        assert "dockyard-supervisor.service" not in d["Unit"].get(key, "")
        assert "dockyard.service" not in s["Unit"].get(key, "")
    # the daemon's SIGTERM must not reach a supervisor in its cgroup, nor the supervisor's
    # reach its fork server's workers mid-command
    assert d["Service"]["KillMode"] == "process"
    assert s["Service"]["KillMode"] == "process"
    argv = shlex.split(d["Service"]["ExecStart"])
    assert argv == [INSTALLED, "daemon"]


def test_supervisor_unit_reloads_in_place():
    """`systemctl reload dockyard-supervisor` (an upgrade) asks the unit's holder for a new
    supervisor: the same command line, plus --reload."""
    s = _unit("dockyard-supervisor.service")
    start = shlex.split(s["Service"]["ExecStart"])
    assert shlex.split(s["Service"]["ExecReload"]) == start + ["--reload"]


@pytest.mark.slow
def test_supervisor_unit_command_outlives_daemon(tmp_path):
    s = _unit("dockyard-supervisor.service")
    argv = shlex.split(s["Service"]["ExecStart"])
    assert argv[:2] == [INSTALLED, "supervisor"] and argv[2] == "--root"
    assert argv[3] == "/var/lib/dockyard/supervisor"   # <default data root>/supervisor
    d = Daemon(tmp_path)
    root = d.data / "supervisor"
    sup = subprocess.Popen([_ours(), "supervisor", "--root", str(root), *argv[4:]],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # the unit's main process is the supervisor's holder (its parent), same pid
        deadline = time.monotonic() + 20
        while d.holder_pid() != sup.pid or not d.supervisor_pid():
            assert sup.poll() is None and time.monotonic() < deadline, "supervisor did not start"
            time.sleep(0.05)
        first = d.supervisor_pid()
        d.start()
        import_busybox(d)
        cid = d.out("run", "-d", "busybox", "sleep", "1000")
        assert d.supervisor_pid() == first          # the daemon used the unit's supervisor
        d.stop()                                     # as `systemctl restart dockyard` does
        assert sup.poll() is None
        d.start()
        assert d.out("inspect", "-f", "{{.State.Running}}", cid) == "true"
        assert d.supervisor_pid() == first
        # `systemctl reload`: a new supervisor under the same holder, the container kept
        reload = shlex.split(s["Service"]["ExecReload"])
        assert reload[:4] == argv[:4]
        r = subprocess.run([_ours(), "supervisor", "--root", str(root), *reload[4:]],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        old, first = first, d.supervisor_pid()
        assert first not in (None, old) and d.holder_pid() == sup.pid and sup.poll() is None
        assert d.out("inspect", "-f", "{{.State.Running}}", cid) == "true"
        # SIGTERM to the unit's main process (KillMode=process) ends holder and supervisor;
        # the container stays (its own cgroup)
        sup.send_signal(signal.SIGTERM)
        sup.wait(15)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{first}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{first}")
        assert d.out("inspect", "-f", "{{.State.Running}}", cid) == "true"
    finally:
        d.close()   # removes the containers, stops the daemon, kills the supervisor
        if sup.poll() is None:
            sup.send_signal(signal.SIGKILL)
        sup.wait()
