"""Pull, push and login through a real `dockyard daemon`, driven by the real docker
CLI and ours, against our registry with basic auth; `run` of an image that is not
here pulls it first."""

from __future__ import annotations

import json
import os

import pytest

from distribution_helpers import running_registry, write_htpasswd
from helpers.daemon import DOCKER, running_daemon

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")]


def test_daemon_login_push_pull_run(tmp_path, busybox_tar_bytes):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw"})
    (tmp_path / "bb.tar").write_bytes(busybox_tar_bytes)
    with running_registry(tmp_path / "reg", "--htpasswd", str(htpasswd), "--auth", "basic") as reg, \
            running_daemon(tmp_path) as d:
        ref = f"{reg.addr}/am/busybox:v1"
        p = d.dockyard("import", "-c", "CMD [\"/bin/busybox\", \"echo\", \"hi\"]",
                       str(tmp_path / "bb.tar"), ref)
        assert p.returncode == 0, p.stderr
        iid = p.stdout.strip()
        p = d.docker("push", ref)
        assert p.returncode != 0 and "unauthorized" in p.stderr.lower(), p.stderr
        p = d.docker("login", "-u", "alice", "--password-stdin", reg.addr, input="alicepw\n")
        assert p.returncode == 0 and "Login Succeeded" in p.stdout, p.stderr
        p = d.docker("push", ref)
        assert p.returncode == 0, p.stderr
        assert "Pushed" in p.stdout and "v1: digest: sha256:" in p.stdout
        digest = p.stdout.split("v1: digest: ")[1].split()[0]
        assert d.dockyard("rmi", ref).returncode == 0
        p = d.docker("pull", ref)
        assert p.returncode == 0, p.stderr
        assert f"Digest: {digest}" in p.stdout
        assert f"Status: Downloaded newer image for {ref}" in p.stdout
        info = json.loads(d.dockyard("image", "inspect", ref).stdout)[0]
        assert info["Id"] == iid and info["RepoDigests"] == [f"{reg.addr}/am/busybox@{digest}"]
        p = d.dockyard("pull", ref)
        assert p.returncode == 0 and f"Status: Image is up to date for {ref}" in p.stdout
        # run pulls what is missing (credentials from the shared config.json)
        assert d.dockyard("rmi", ref).returncode == 0
        p = d.dockyard("run", "--rm", ref)
        assert p.returncode == 0, p.stderr
        assert f"Unable to find image '{ref}' locally" in p.stderr
        assert p.stdout == "hi\n"
        p = d.docker("search", f"{reg.addr}/busybox")
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[1].startswith("am/busybox")
        p = d.docker("logout", reg.addr)
        assert f"Removing login credentials for {reg.addr}" in p.stdout
