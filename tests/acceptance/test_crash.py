"""Containers outlive a daemon killed with -9; the next daemon finds them intact."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from acceptance.harness import DOCKER, Daemon

pytestmark = pytest.mark.slow


def until(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    return fn()


def test_kill9_daemon_with_ten_running_containers(fresh_daemon):
    d = fresh_daemon
    d.docker("run", "-d", "--name", "logger", "busybox", "sh", "-c",
             "trap 'exit 3' TERM; i=0; while true; do i=$((i+1)); echo seq $i; usleep 2000; done")
    for i in range(7):
        d.docker("run", "-d", "--name", f"idle{i}", "busybox", "sleep", "1000")
    d.docker("run", "-d", "-i", "--name", "talker", "busybox", "sh", "-c",
             "while read l; do [ $l = quit ] && exit 9; echo got:$l; done")
    d.docker("run", "-d", "--name", "dies-always", "--restart", "always", "busybox",
             "sleep", "1000")
    d.docker("run", "-d", "--name", "dies-unless", "--restart", "unless-stopped", "busybox",
             "sleep", "1000")
    d.docker("run", "-d", "--name", "dies-no", "busybox", "sleep", "1000")
    before = {n: json.loads(d.out("inspect", n))[0]["State"]["Pid"]
              for n in ["logger", "talker"] + [f"idle{i}" for i in range(7)]}
    time.sleep(1)
    d.kill9()
    # while the daemon is away: the logger keeps logging, two containers die
    time.sleep(1)
    sup = d.supervisor_pid()
    assert sup  # the supervisor outlived the daemon
    import os
    import signal as sg

    old_pids = {}
    for name in ("dies-unless", "dies-no", "dies-always"):
        cid_pid = old_pids[name] = _pid_of(d, name)
        os.kill(cid_pid, sg.SIGKILL)
    time.sleep(1)
    d.start()
    running = d.out("ps", "--format", "{{.Names}}").split()
    for name in before:
        assert name in running
        assert json.loads(d.out("inspect", name))[0]["State"]["Pid"] == before[name]
    # restart policies applied on boot
    for name in ("dies-always", "dies-unless"):
        assert until(lambda: name in d.out("ps", "--format", "{{.Names}}").split())
        assert json.loads(d.out("inspect", name))[0]["State"]["Pid"] != old_pids[name]
    st = json.loads(d.out("inspect", "dies-no"))[0]["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 137
    # attach works again, and the exit code of the attached run is right
    p = subprocess.Popen([DOCKER, "attach", "talker"], env=d.env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1)
    out, err = p.communicate(b"hello\nquit\n", timeout=30)
    assert out == b"got:hello\n" and p.returncode == 9, (out, err)
    # stop and wait report the right codes; no log line was lost
    d.docker("stop", "logger")
    assert d.out("wait", "logger") == "3"
    seqs = [int(line.split()[1]) for line in d.out("logs", "logger").splitlines()]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 200
    d.docker("stop", "-t", "1", "idle0")
    assert d.out("wait", "idle0") == "137"
    assert json.loads(d.out("inspect", "idle0"))[0]["State"]["ExitCode"] == 137


def _pid_of(d: Daemon, name: str) -> int:
    """Pid of a container's init while the daemon is down: from the runtime's state."""
    import sqlite3

    db = sqlite3.connect(str(d.data / "metadata.db"))
    for (rec,) in db.execute("SELECT record FROM containers"):
        c = json.loads(rec)
        if c["Name"] == "/" + name:
            return c["State"]["Pid"]
    raise AssertionError(f"no record of {name}")


def test_supervisor_killed_daemon_recovers(fresh_daemon):
    import os
    import signal as sg

    d = fresh_daemon
    d.docker("run", "-d", "--name", "victim", "busybox", "sleep", "1000")
    waiter = subprocess.Popen([DOCKER, "wait", "victim"], env=d.env, stdout=subprocess.PIPE, text=True)
    pid = _pid_of(d, "victim")
    os.kill(d.supervisor_pid(), sg.SIGKILL)
    os.kill(pid, sg.SIGKILL)  # the container's init, now an orphan
    out, _ = waiter.communicate(timeout=60)
    assert int(out.strip()) != 0
    assert json.loads(d.out("inspect", "victim"))[0]["State"]["Status"] == "exited"
    # the replaced supervisor runs new containers, and their exits are seen
    r = subprocess.run([DOCKER, "run", "--rm", "busybox", "echo", "after"], env=d.env,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "after\n"), r.stderr


def test_run_right_after_the_supervisor_is_killed(fresh_daemon):
    """The first request after the supervisor died starts a new one; the run's exit is
    seen even if it happened before the daemon's event stream reconnected."""
    import os
    import signal as sg

    d = fresh_daemon
    os.kill(d.supervisor_pid(), sg.SIGKILL)
    for word in ("one", "two"):
        r = subprocess.run([DOCKER, "run", "--rm", "busybox", "echo", word], env=d.env,
                           capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stdout) == (0, word + "\n"), r.stderr
    assert d.out("ps", "-aq").strip() == ""
