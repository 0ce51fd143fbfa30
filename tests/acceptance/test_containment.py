"""Resource limits enforced, and a non-privileged container stays contained."""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.slow


def test_memory_hog_is_oom_killed(daemon):
    name = "oom-" + uuid.uuid4().hex[:6]
    r = daemon.docker("run", "--name", name, "-m", "16m", "--memory-swap", "16m", "busybox", "sh", "-c",
                      "x=a; while true; do x=$x$x; done", check=False, timeout=60)
    assert r.returncode == 137
    st = json.loads(daemon.out("inspect", name))[0]["State"]
    assert st["OOMKilled"] is True and st["ExitCode"] == 137
    daemon.docker("rm", name)


def test_pids_limit_holds(daemon):
    name = "pids-" + uuid.uuid4().hex[:6]
    cid = daemon.out("run", "-d", "--name", name, "--pids-limit", "5", "busybox", "sleep", "1000")
    daemon.docker("exec", name, "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 100 & done",
                  check=False, timeout=60)
    base = f"/sys/fs/cgroup/pids{daemon.cgroup_parent}/{cid}/"
    with open(base + "pids.current") as f:
        assert int(f.read()) <= 5
    with open(base + "pids.events") as f:
        assert int(f.read().split()[1]) > 0  # forks were refused
    daemon.docker("rm", "-f", name)


def test_unprivileged_containment(daemon):
    script = r"""
    mount -t tmpfs none /mnt 2>/dev/null && echo MOUNT-OK || echo mount-denied
    grep CapEff /proc/self/status
    touch /sys/x 2>/dev/null && echo SYS-RW || echo sys-ro
    for p in /proc/kcore /proc/keys /proc/timer_list /sys/firmware; do
      [ -s $p ] 2>/dev/null && head -c1 $p >/dev/null 2>&1 && echo "READABLE $p"
    done
    echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo PROCSYS-RW || echo procsys-ro
    mknod /tmp/sda b 8 0 2>/dev/null && (head -c1 /tmp/sda >/dev/null 2>&1 && echo DEV-READ || echo dev-denied) || echo mknod-denied
    ls /dev | tr '\n' ' '; echo
    cat /proc/1/cgroup | head -1
    """
    out = daemon.out("run", "--rm", "busybox", "sh", "-c", script)
    assert "mount-denied" in out and "MOUNT-OK" not in out
    assert "00000000a80425fb" in out
    assert "sys-ro" in out and "procsys-ro" in out
    assert "READABLE" not in out
    assert "DEV-READ" not in out
    devs = [ln for ln in out.splitlines() if "null" in ln][0].split()
    assert set(devs) <= {"console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random",
                         "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}
    # the host's pid namespace and hostname are not visible
    # only the container's own: sh, ls and grep (grep may not be forked yet when ls reads /proc)
    assert daemon.out("run", "--rm", "busybox", "sh", "-c", "ls /proc | grep -c '^[0-9]'") in ("2", "3")
