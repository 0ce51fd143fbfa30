"""Bad input gets dockerd's errors and exit codes, and leaves nothing behind."""

from __future__ import annotations

import json
import uuid

import pytest

from acceptance.harness import leftovers

pytestmark = pytest.mark.slow


def test_unknown_image(daemon):
    before = leftovers(daemon)
    r = daemon.docker("run", "--rm", "nosuchimage-" + uuid.uuid4().hex[:6], "true", check=False)
    assert r.returncode == 125
    assert "Unable to find image" in r.stderr and "Error response from daemon" in r.stderr
    r = daemon.docker("create", "nosuchimage:v9", check=False)
    assert r.returncode != 0 and "Unable to find image 'nosuchimage:v9' locally" in r.stderr
    assert leftovers(daemon) == before


def test_name_conflict(daemon):
    name = "dup-" + uuid.uuid4().hex[:6]
    cid = daemon.out("create", "--name", name, "busybox")
    before = leftovers(daemon)
    r = daemon.docker("run", "--name", name, "busybox", "true", check=False)
    assert r.returncode == 125
    assert (f'Conflict. The container name "/{name}" is already in use by container "{cid}". You have '
            'to remove (or rename) that container to be able to reuse that name.') in r.stderr
    assert leftovers(daemon) == before
    import docker

    cl = daemon.client()
    with pytest.raises(docker.errors.APIError) as ei:
        cl.containers.create("busybox", name=name)
    assert ei.value.status_code == 409
    daemon.docker("rm", name)


@pytest.mark.parametrize("args, message", [
    (["-m", "1k"], "Minimum memory limit allowed is 6MB"),
    (["--cpus", "99"], "Range of CPUs is from 0.01 to"),
    (["--cpuset-cpus", "99"], "Requested CPUs are not available - requested 99"),
    (["--cpuset-cpus", "1-x"], "Invalid value 1-x for cpuset cpus"),
    (["--cpu-shares", "-5"], "invalid CPU shares"),
    (["--memory-swap", "1m", "-m", "10m"], "Minimum memoryswap limit should be larger than memory limit"),
    (["--stop-signal", "SIGBOGUS"], "invalid signal: SIGBOGUS"),
    (["--cap-add", "NOPE"], 'unknown capability: "CAP_NOPE"'),
    (["-w", "relative"], "the working directory 'relative' is invalid, it needs to be an absolute path"),
    (["--runtime", "nosuch"], "unknown or invalid runtime name: nosuch"),
    (["--name", "bad/name"], "Invalid container name (bad/name)"),
    (["--tmpfs", "relative"], "must be absolute"),
    (["-v", "/tmp:relative"], "must be absolute"),
    (["-u", "nosuchuser"], "unable to find user nosuchuser"),
])
def test_bad_flag_values(daemon, args, message):
    before = leftovers(daemon)
    r = daemon.docker("run", "--rm", *args, "busybox", "true", check=False)
    assert r.returncode == 125, r.stderr
    assert message in r.stderr
    assert leftovers(daemon) == before


def test_bad_restart_policy_via_api(daemon):
    import docker

    cl = daemon.client()
    before = leftovers(daemon)
    with pytest.raises(docker.errors.APIError) as ei:
        cl.containers.create("busybox", restart_policy={"Name": "sometimes"})
    assert ei.value.status_code == 400 and "invalid restart policy" in str(ei.value)
    with pytest.raises(docker.errors.APIError) as ei:
        cl.containers.create("busybox", restart_policy={"Name": "always", "MaximumRetryCount": 3})
    assert ei.value.status_code == 400
    assert leftovers(daemon) == before
    r = daemon.docker("run", "--restart", "on-failure:x", "busybox", check=False)
    assert r.returncode == 125


def test_exec_in_stopped_container(daemon):
    name = "stopped-" + uuid.uuid4().hex[:6]
    cid = daemon.out("create", "--name", name, "busybox")
    r = daemon.docker("exec", name, "true", check=False)
    assert r.returncode == 1 and f"Container {cid} is not running" in r.stderr
    import docker

    cl = daemon.client()
    with pytest.raises(docker.errors.APIError) as ei:
        cl.api.exec_create(name, "true")
    assert ei.value.status_code == 409
    daemon.docker("rm", name)


@pytest.mark.parametrize("change, message", [
    ("RUN echo hi", "run is not a valid change command"),
    ("FROM busybox", "from is not a valid change command"),
    ("WORKDIR ../../etc", ""),  # Docker stores it as-is, relative to the old WorkingDir
    ("VOLUME", ""),
    ("EXPOSE notaport", "Invalid"),
    ("ENV", "ENV"),
])
def test_hostile_commit_changes(daemon, change, message):
    name = "cm-" + uuid.uuid4().hex[:6]
    daemon.docker("run", "--name", name, "busybox", "true")
    images_before = daemon.out("images", "-q", "-a")
    repo = "hostile-" + uuid.uuid4().hex[:6]
    r = daemon.docker("commit", "-c", change, name, repo, check=False)
    if message:
        assert r.returncode == 1, r.stdout
        assert message.lower() in r.stderr.lower()
        assert daemon.out("images", "-q", "-a") == images_before
    elif r.returncode == 0:
        cfg = json.loads(daemon.out("image", "inspect", repo))[0]["Config"]
        if change.startswith("WORKDIR"):
            # stays inside the container's root: a path, never a host location
            assert cfg["WorkingDir"].startswith("/")
            out = daemon.out("run", "--rm", repo, "pwd")
            assert out.startswith("/")
        daemon.docker("rmi", repo)
    daemon.docker("rm", name)
