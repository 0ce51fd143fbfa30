"""``docker commit`` of a running container with a health check, side by side with Debian's
dockerd 20.10: the commit pauses the container as ``docker pause`` does (``pause`` and
``unpause`` events around the image's ``tag`` and the container's ``commit``, no image
``commit`` event), so its health shows ``unhealthy`` at once (no event) until the next
probe, one interval after the unpause, brings it back with a ``health_status`` event.
``--pause=false`` touches neither."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

pytestmark = pytest.mark.slow

PROBE = ("exec_create", "exec_start", "exec_die")   # each probe is an exec (timing-dependent)


def _until(fn, timeout: float = 30, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


def scenario(run, name: str) -> dict:
    seen = {}
    run("run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "5s",
        "busybox", "sleep", "300")
    try:
        health = lambda: json.loads(run("inspect", "-f", "{{json .State.Health}}", name))
        assert _until(lambda: health()["Status"] == "healthy"), health()
        # events are asked for by time: whole seconds, so the commit starts in a new one
        time.sleep(1.1)
        since = str(int(time.time()))
        run("commit", name, f"{name}img:one")
        h = health()
        seen["after commit"] = (h["Status"], h["FailingStreak"], len(h["Log"]))
        seen["ps"] = run("ps", "--filter", f"name={name}", "--format", "{{.Status}}"
                         ).split(" (", 1)[-1]
        seen["state"] = run("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", name)
        # the next probe, one interval after the unpause, finds it healthy again
        assert _until(lambda: health()["Status"] == "healthy", timeout=20), health()
        until = str(int(time.time()) + 1)
        time.sleep(1.1)
        ev = run("events", "--since", since, "--until", until, "--format",
                 "{{.Type}} {{.Action}}").splitlines()
        seen["events"] = [e for e in ev if not e.split(" ", 1)[1].startswith(PROBE)]
        # without the pause: nothing of the above
        time.sleep(1.1)
        since = str(int(time.time()))
        run("commit", "--pause=false", name, f"{name}img:two")
        seen["no pause"] = health()["Status"]
        until = str(int(time.time()) + 1)
        time.sleep(1.1)
        ev = run("events", "--since", since, "--until", until, "--format",
                 "{{.Type}} {{.Action}}").splitlines()
        seen["no pause events"] = [e for e in ev if not e.split(" ", 1)[1].startswith(PROBE)]
    finally:
        run("rm", "-f", name, check=False)
        run("rmi", f"{name}img:one", f"{name}img:two", check=False)
    return seen


def test_commit_pauses_health_as_dockerd(daemon, tmp_path):
    from helpers.dockerd import dockerd_available, running_dockerd
    from helpers.rootfs import build_busybox_rootfs

    name = f"hc{uuid.uuid4().hex[:8]}"
    mine = scenario(lambda *a, check=True: daemon.out(*a, check=check), name)
    assert mine["after commit"] == ("unhealthy", 0, 1)
    assert mine["state"] == "running false"
    assert mine["events"] == ["container pause", "image tag", "container commit",
                              "container unpause", "container health_status: healthy"]
    assert mine["no pause"] == "healthy"
    assert mine["no pause events"] == ["image tag", "container commit"]
    if not dockerd_available():
        pytest.skip("dockerd not installed: ours checked alone")
    root = tmp_path / "bb"
    build_busybox_rootfs(root)
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                         check=True).stdout
    with running_dockerd(tmp_path / "dkd") as theirs:
        theirs.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
        ref = scenario(lambda *a, check=True: theirs.docker(*a, check=check, text=True)
                       .stdout.strip(), name)
    assert mine == ref


def test_daemon_killed_during_a_commit_resumes_the_health_checks(tmp_path, monkeypatch):
    """A daemon killed while a commit holds the container paused: at its next start the
    container is resumed, and so are its health probes (they were stopped for the pause)."""
    from acceptance.harness import running
    from acceptance.test_crash_recovery import crashed, restart_with

    with running(tmp_path / "d", extra_args=("--warm-pool", "0")) as d:
        d.docker("run", "-d", "--name", "cx", "--health-cmd", "true", "--health-interval",
                 "300ms", "busybox", "sleep", "300")
        health = lambda: json.loads(d.out("inspect", "-f", "{{json .State.Health}}", "cx"))
        assert _until(lambda: health()["Status"] == "healthy"), health()
        try:
            restart_with(d, monkeypatch, "commit.paused")
            r = d.docker("commit", "cx", "crashimg", check=False, timeout=60)
            crashed(d)
            assert r.returncode != 0
        finally:
            restart_with(d, monkeypatch, None)
        assert d.out("inspect", "-f", "{{.State.Status}}", "cx") == "running"
        last = health()["Log"][-1]["Start"]
        # probing again: new results come in, and it is healthy again
        assert _until(lambda: health()["Log"][-1]["Start"] > last
                      and health()["Status"] == "healthy", timeout=15), health()
        d.docker("rm", "-f", "cx")
