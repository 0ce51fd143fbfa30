"""`docker exec` against hostile containers: rlimits carried over, and the
container's /etc/passwd and /etc/group read without trusting them."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.slow


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_exec_gets_the_containers_rlimits(daemon):
    name = _name("ulim")
    daemon.docker("run", "-d", "--name", name, "--ulimit", "nofile=64:64",
                  "--ulimit", "nproc=500:600", "busybox", "sleep", "1000")
    try:
        init = daemon.out("exec", name, "sh", "-c", "cat /proc/1/limits")
        assert "Max open files            64                   64" in init
        out = daemon.out("exec", name, "sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -Su; ulimit -Hu")
        assert out.split() == ["64", "64", "500", "600"]
        # a detached exec too (another path through the supervisor)
        daemon.docker("exec", "-d", name, "sh", "-c", "ulimit -n > /tmp/n")
        deadline = time.monotonic() + 10
        while daemon.out("exec", name, "cat", "/tmp/n", check=False) != "64":
            assert time.monotonic() < deadline, "the detached exec did not write 64"
            time.sleep(0.1)
    finally:
        daemon.docker("rm", "-f", name, check=False)


@pytest.mark.parametrize("make", ["ln -s /dev/zero /etc/passwd", "mkfifo /etc/passwd",
                                  "mkdir /etc/passwd"])
def test_exec_home_lookup_survives_a_hostile_passwd(daemon, make):
    """Without HOME in the environment the runtime looks the user's up in the
    container's /etc/passwd: /dev/zero there must not eat memory (the container's
    memory limit would kill the exec), a FIFO must not hang it."""
    name = _name("pw")
    daemon.docker("run", "-d", "--name", name, "-m", "64m", "--memory-swap", "64m", "busybox",
                  "sh", "-c", f"rm -f /etc/passwd; {make}; touch /ready; sleep 1000")
    try:
        deadline = time.monotonic() + 20
        while daemon.docker("exec", name, "test", "-e", "/ready", check=False).returncode:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        t0 = time.monotonic()
        r = daemon.docker("exec", name, "sh", "-c", "echo home=$HOME", check=False, timeout=40)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "home=/"
        assert time.monotonic() - t0 < 20
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_exec_user_lookup_stays_inside_the_container(daemon, tmp_path):
    """`exec -u NAME` resolves NAME in the container's own files: an absolute symlink
    there resolves inside the container, never to the daemon's host file of that path."""
    host_file = tmp_path / f"passwd-{uuid.uuid4().hex[:6]}"
    host_file.write_text("evil:x:4242:4242::/evil:/bin/sh\n")
    host_group = tmp_path / f"group-{uuid.uuid4().hex[:6]}"
    host_group.write_text("evilgrp:x:4343:root\n")
    name = _name("usr")
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  f"mkdir -p {tmp_path}; printf 'inside:x:77:77::/in:/bin/sh\\n' > {host_file}; "
                  f"printf 'ingrp:x:78:inside\\n' > {host_group}; "
                  f"rm /etc/passwd /etc/group; ln -s {host_file} /etc/passwd; "
                  f"ln -s {host_group} /etc/group; touch /ready; sleep 1000")
    try:
        deadline = time.monotonic() + 20
        while daemon.docker("exec", name, "test", "-e", "/ready", check=False).returncode:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = daemon.docker("exec", "-u", "evil", name, "id", check=False)
        assert r.returncode != 0 and "unable to find user evil" in r.stdout + r.stderr
        out = daemon.out("exec", "-u", "inside", name, "sh", "-c", "id -u; id -G; echo $HOME")
        assert out.split() == ["77", "77", "78", "/in"]
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_exec_user_lookup_does_not_hang_on_a_fifo(fresh_daemon):
    """The daemon reads /etc/passwd for `exec -u NAME`: a FIFO there once blocked the
    daemon's event loop for good."""
    d = fresh_daemon
    name = _name("fifo")
    d.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
             "rm /etc/passwd; mkfifo /etc/passwd; touch /ready; sleep 1000")
    deadline = time.monotonic() + 20
    while d.docker("exec", name, "test", "-e", "/ready", check=False).returncode:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = d.docker("exec", "-u", "someone", name, "true", check=False, timeout=30)
    assert r.returncode != 0 and "unable to find user someone" in r.stdout + r.stderr
    # (not `id`: busybox's own id reads /etc/passwd)
    out = d.out("exec", "-u", "1234", name, "sh", "-c", "grep ^Uid /proc/self/status; echo $HOME",
                timeout=30)
    assert out.split() == ["Uid:", "1234", "1234", "1234", "1234", "/"]
